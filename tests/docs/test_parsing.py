"""How the collector reads a page: what it runs, what it refuses to leave unrun (no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.examples import Directives, ExampleError, commands, parse_page

PAGE = Path("page.md")


def parse(text: str) -> list[tuple[str, Directives]]:
    return [(block.language, block.directives) for block in parse_page(PAGE, text).blocks]


def test_python_and_console_blocks_run_and_data_blocks_are_shown() -> None:
    text = "```python\nprint(1)\n```\n\n```console\n$ relay --version\n```\n\n```toml\na = 1\n```\n"
    page = parse_page(PAGE, text)
    assert [(block.language, block.runs) for block in page.blocks] == [
        ("python", True),
        ("console", True),
        ("toml", False),
    ]


def test_a_shell_block_without_dollar_lines_is_refused_unless_marked() -> None:
    with pytest.raises(ExampleError, match=r"page.md:1: a ```sh block starts with `\$ `"):
        parse("```sh\nrelay run\n```\n")
    reason = "it runs forever without a stop"
    assert parse(f"<!-- docs-test: skip {reason} -->\n```sh\nrelay run\n```\n") == [
        ("sh", Directives(skip=reason))
    ]


@pytest.mark.parametrize("language", ["javascript", "zsh", "pycon"])
def test_a_language_no_rule_runs_is_refused(language: str) -> None:
    with pytest.raises(ExampleError, match=f"no rule runs ```{language} blocks"):
        parse(f"```{language}\nx\n```\n")


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("skip", "needs a reason"),
        ("skip: too short", "needs a reason"),
        ("stop-after", "is not NAME=VALUE"),
        ("stop-after=soon", "is not a number of seconds"),
        ("stop-after=0", "between 0 and 600"),
        ("timeout=1e9", "between 0 and 600"),
        ("stop-after=nan", "between 0 and 600"),
        ("needs=postgres", "needs 'postgres'"),
        ("retries=3", "unknown docs-test directive 'retries'"),
    ],
)
def test_a_malformed_marker_is_refused_with_its_line(marker: str, message: str) -> None:
    text = f"\n<!-- docs-test: {marker} -->\n```console\n$ true\n```\n"
    with pytest.raises(ExampleError, match=f"page.md:2: .*{message}"):
        parse(text)


def test_directives_apply_to_the_block_right_under_them() -> None:
    marker = "<!-- docs-test: stop-after=5 timeout=90 needs=nats,cmd:psql -->"
    text = f"{marker}\n```console\n$ relay run\n```\n"
    assert parse(text) == [
        ("console", Directives(stop_after=5.0, timeout=90.0, needs=("nats", "cmd:psql")))
    ]


@pytest.mark.parametrize(
    "text",
    [
        "<!-- docs-test: timeout=5 -->\n",
        "<!-- docs-test: timeout=5 -->\nSome prose.\n```console\n$ true\n```\n",
        "<!-- docs-test: timeout=5 -->\n<!-- docs-test: timeout=6 -->\n```console\n$ true\n```\n",
    ],
)
def test_a_marker_with_no_block_under_it_is_refused(text: str) -> None:
    with pytest.raises(ExampleError, match="marker with no block"):
        parse(text)


def test_stop_after_is_for_console_blocks_only() -> None:
    with pytest.raises(ExampleError, match="stop-after applies to ```console blocks only"):
        parse("<!-- docs-test: stop-after=3 -->\n```python\nprint(1)\n```\n")


def test_an_unclosed_block_is_refused() -> None:
    with pytest.raises(ExampleError, match=r"page\.md:3: the ``` block is never closed"):
        parse("text\n\n```python\nprint(1)\n")


def test_commands_carry_their_shown_output_continuations_and_heredocs() -> None:
    text = (
        "```console\n"
        "$ relay status\n"
        "pending 0\n"
        "dead 0\n"
        "$ relay run \\\n"
        "  --sink stdout\n"
        "$ python - <<'EOF'\n"
        "print('$ not a command')\n"
        "EOF\n"
        "$ not a command\n"
        "```\n"
    )
    [block] = parse_page(PAGE, text).blocks
    assert [(c.line, c.text, c.shown) for c in commands(block)] == [
        (2, "relay status", "pending 0\ndead 0"),
        (5, "relay run \\\n  --sink stdout", ""),
        (7, "python - <<'EOF'\nprint('$ not a command')\nEOF", ""),
        (10, "not a command", ""),
    ]


def test_an_unclosed_heredoc_is_refused() -> None:
    with pytest.raises(ExampleError, match="heredoc EOF is never closed"):
        parse("```console\n$ python - <<EOF\nprint(1)\n```\n")


def test_a_named_file_must_be_used_by_a_later_command() -> None:
    toml = "```toml\n# relay.toml\nbatch_size = 1\n```\n"
    used = toml + "```console\n$ relay run --config relay.toml\n```\n"
    assert [block.file_name for block in parse_page(PAGE, used).blocks] == ["relay.toml", None]
    sink = "```python\n# my_sinks.py\nasync def s(e): pass\n```\n"
    module = sink + "```console\n$ relay run --sink python:my_sinks:s\n```\n"
    assert len(parse_page(PAGE, module).blocks) == 2
    with pytest.raises(ExampleError, match=r"page\.md:1: relay\.toml is written, but no later"):
        parse(toml + "```console\n$ relay run\n```\n")
    with pytest.raises(ExampleError, match="no later"):  # used only before it is written
        parse("```console\n$ cat relay.toml\n```\n```toml\n# relay.toml\na = 1\n```\n")


def test_page_options_are_read_anywhere_and_checked() -> None:
    page = parse_page(PAGE, "# Title\n<!-- docs-test-page: empty-database -->\n")
    assert page.options == {"empty-database"}
    with pytest.raises(ExampleError, match="unknown docs-test-page option 'fresh'"):
        parse_page(PAGE, "<!-- docs-test-page: fresh -->\n")


def test_a_page_needs_what_its_run_blocks_need() -> None:
    text = (
        "<!-- docs-test: needs=redis -->\n```console\n$ redis-cli PING\n```\n"
        "<!-- docs-test: skip it needs a real Kafka cluster -->\n```console\n$ kcat -L\n```\n"
    )
    assert parse_page(PAGE, text).needs == ("redis",)


def test_indented_blocks_in_lists_are_read_without_their_indent() -> None:
    text = "- item:\n\n  ```console\n  $ relay --version\n  relay ...\n  ```\n"
    [block] = parse_page(PAGE, text).blocks
    assert [(c.text, c.shown) for c in commands(block)] == [("relay --version", "relay ...")]
