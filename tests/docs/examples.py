"""The examples of the docs pages and the README, read as the test suite runs them.

The convention (docs/contributing.md, "Examples are tests") in short: a ```python block is a
script; a ```console block is `$ ` commands, each followed by the output it shows (checked, `...`
matching anything); a block whose first line is `# NAME.EXT` is that file, written for the blocks
after it, one of which must use it. An HTML comment right above a block, `<!-- docs-test: ... -->`,
says how to run it (`stop-after=S`, `timeout=S`, `needs=...`) or why it is not run
(`skip REASON`); `<!-- docs-test-page: empty-database -->` anywhere on a page gives it a database
with no relay schema. A block that cannot be run and says nothing is an error, so an example is
never left unrun by accident.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

PYTHON = frozenset({"python", "py"})
SHELL = frozenset({"console", "shell", "sh", "bash"})
# Shown, never run: data, configuration and grammars. A language outside these sets is an error.
NOT_RUN = frozenset({"", "text", "sql", "toml", "yaml", "json", "ini", "systemd"})
SERVICES = frozenset({"nats", "redis", "rabbitmq", "kafka"})
PAGE_OPTIONS = frozenset({"empty-database"})
DEFAULT_TIMEOUT = 60.0

_FENCE = re.compile(r"^(?P<indent> *)```(?P<language>[\w+-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:(?P<body>.*?)-->\s*$")
_PAGE_MARKER = re.compile(r"^\s*<!--\s*docs-test-page:(?P<body>.*?)-->\s*$")
_FILE_NAME = re.compile(r"^# (?P<name>[\w.-]+\.\w+)$")
_HEREDOC = re.compile(r"<<-?\s*(?P<quote>['\"]?)(?P<word>\w+)(?P=quote)")


class ExampleError(Exception):
    """A docs example the collector cannot run as written: the message names the file and line."""


@attrs.frozen
class Directives:
    """How to run one block, from the `<!-- docs-test: ... -->` comment above it."""

    skip: str | None = None
    stop_after: float | None = None
    timeout: float = DEFAULT_TIMEOUT
    needs: tuple[str, ...] = ()


@attrs.frozen
class Command:
    """One `$ ` command of a console block and the output shown under it ("" = not shown)."""

    line: int
    text: str
    shown: str


@attrs.frozen
class Block:
    """One fenced code block of a page."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    directives: Directives

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def file_name(self) -> str | None:
        """NAME.EXT when the block's first line is `# NAME.EXT`: it is that file's content."""
        first = self.text.partition("\n")[0]
        match = _FILE_NAME.match(first)
        return match["name"] if match else None

    @property
    def runs(self) -> bool:
        return self.directives.skip is None and self.language in PYTHON | SHELL


@attrs.frozen
class Page:
    path: Path
    blocks: tuple[Block, ...]
    options: frozenset[str] = frozenset()

    @property
    def needs(self) -> tuple[str, ...]:
        found = {need for block in self.blocks if block.runs for need in block.directives.needs}
        return tuple(sorted(found))


def parse_directives(body: str, where: str) -> Directives:
    """The directives of one marker's body, e.g. `stop-after=5 needs=nats`."""
    body = body.strip()
    if body == "skip" or body.startswith(("skip ", "skip:")):
        reason = body.removeprefix("skip").strip(" :-")
        if len(reason.split()) < 3:
            raise ExampleError(f"{where}: `docs-test: skip` needs a reason of a few words")
        return Directives(skip=reason)
    values: dict[str, object] = {}
    for token in body.split():
        name, equals, value = token.partition("=")
        if not equals or not value:
            raise ExampleError(f"{where}: docs-test directive {token!r} is not NAME=VALUE")
        if name in ("stop-after", "timeout"):
            try:
                seconds = float(value)
            except ValueError:
                raise ExampleError(
                    f"{where}: {name}={value!r} is not a number of seconds"
                ) from None
            if not 0 < seconds <= 600:
                raise ExampleError(f"{where}: {name}={value} must be between 0 and 600 seconds")
            values[name.replace("-", "_")] = seconds
        elif name == "needs":
            needs = tuple(value.split(","))
            unknown = [n for n in needs if n not in SERVICES and not n.startswith("cmd:")]
            if unknown:
                known = ", ".join(sorted(SERVICES))
                raise ExampleError(f"{where}: needs {unknown[0]!r}: known are {known}, cmd:PROGRAM")
            values["needs"] = needs
        else:
            raise ExampleError(f"{where}: unknown docs-test directive {name!r}")
    return Directives(**values)  # type: ignore[arg-type]


def parse_page(path: Path, text: str | None = None) -> Page:
    """Every fenced block of a Markdown file with its directives; raises ExampleError on a
    marker that is malformed or leads to no block, and on a block no rule can run unmarked."""
    lines = (path.read_text() if text is None else text).splitlines()
    blocks: list[Block] = []
    options: set[str] = set()
    pending: tuple[int, Directives] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        where = f"{path.name}:{index + 1}"
        if page := _PAGE_MARKER.match(line):
            for option in page["body"].split():
                if option not in PAGE_OPTIONS:
                    raise ExampleError(f"{where}: unknown docs-test-page option {option!r}")
                options.add(option)
        elif marker := _MARKER.match(line):
            if pending is not None:
                raise ExampleError(f"{path.name}:{pending[0]}: docs-test marker with no block")
            pending = (index + 1, parse_directives(marker["body"], where))
        elif fence := _FENCE.match(line):
            indent, language = fence["indent"], fence["language"].lower()
            end = index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            if end == len(lines):
                raise ExampleError(f"{where}: the ``` block is never closed")
            body = "\n".join(row.removeprefix(indent) for row in lines[index + 1 : end]) + "\n"
            directives = pending[1] if pending else Directives()
            blocks.append(check_block(Block(path, index + 1, language, body, directives)))
            pending = None
            index = end
        elif line.strip() and pending is not None:
            raise ExampleError(f"{path.name}:{pending[0]}: docs-test marker with no block under it")
        index += 1
    if pending is not None:
        raise ExampleError(f"{path.name}:{pending[0]}: docs-test marker with no block under it")
    check_files_are_used(blocks)
    return Page(path, tuple(blocks), frozenset(options))


def check_files_are_used(blocks: list[Block]) -> None:
    """A `# NAME.EXT` block is only written, so a later `$ ` command must use it (by name, or as
    `python:MODULE:` for a Python module), or it would never run."""
    for index, block in enumerate(blocks):
        name = block.file_name
        if name is None or block.directives.skip is not None:
            continue
        uses = [name]
        if name.endswith(".py"):
            uses.append(f"python:{name.removesuffix('.py')}:")
        later = [
            command.text
            for other in blocks[index + 1 :]
            if other.language in SHELL and other.directives.skip is None
            for command in commands(other)
        ]
        if not any(use in text for use in uses for text in later):
            raise ExampleError(
                f"{block.where}: {name} is written, but no later `$ ` command uses it"
            )


def check_block(block: Block) -> Block:
    """The block itself, once it is known how to run it (or why it is not run)."""
    if block.directives.skip is not None:
        return block
    if block.language in SHELL:
        commands(block)  # raises when there is nothing to run
    elif block.language not in PYTHON | NOT_RUN:
        raise ExampleError(
            f"{block.where}: no rule runs ```{block.language} blocks: use ```python or ```console,"
            " or mark it <!-- docs-test: skip REASON -->"
        )
    if block.directives.stop_after is not None and block.language not in SHELL:
        raise ExampleError(f"{block.where}: stop-after applies to ```console blocks only")
    return block


def commands(block: Block) -> list[Command]:
    """The `$ ` commands of a shell block, each with its continuation lines (a trailing `\\`, a
    heredoc) and the output shown under it."""
    lines = block.text.splitlines()
    found: list[Command] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("$ "):
            if not found:
                raise ExampleError(
                    f"{block.where}: a ```{block.language} block starts with `$ ` command lines"
                    f" (found {line!r}); or mark it <!-- docs-test: skip REASON -->"
                )
            index += 1
            continue
        start, command = index, [line[2:]]
        index += 1
        while command[-1].endswith("\\") and index < len(lines):
            command.append(lines[index])
            index += 1
        if heredoc := _HEREDOC.search(" ".join(command)):
            while index < len(lines) and lines[index] != heredoc["word"]:
                command.append(lines[index])
                index += 1
            if index == len(lines):
                raise ExampleError(f"{block.where}: heredoc {heredoc['word']} is never closed")
            command.append(lines[index])
            index += 1
        shown_start = index
        while index < len(lines) and not lines[index].startswith("$ "):
            index += 1
        shown = "\n".join(lines[shown_start:index]).strip("\n")
        found.append(Command(block.line + 1 + start, "\n".join(command), shown))
    if not found:
        raise ExampleError(f"{block.where}: an empty ```{block.language} block")
    return found
