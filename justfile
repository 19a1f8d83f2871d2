# relay's everyday commands. `just` itself comes from the dev extra (rust-just).

venv := justfile_directory() / ".venv"
python := venv / "bin" / "python"

# List the recipes.
default:
    @just --list

# Run the demo: an embedded PostgreSQL, a producer and the relay, events on stdout.
demo *args:
    {{venv}}/bin/relay demo {{args}}

# The newest releases the version ranges allow go into a fresh venv; the lock is written only if
# the whole suite passes there.
# Refresh constraints.txt, the versions the README's commands and CI install.
lock:
    rm -rf .venv-lock
    python3 -m venv .venv-lock
    .venv-lock/bin/pip install -q -e '.[dev]'
    .venv-lock/bin/python -m pytest -q -p no:cacheprovider
    (echo "# The exact versions the whole suite last passed with ($(.venv-lock/bin/python -V), $(date -u +%Y-%m-%d))."; \
     echo "# Made by \`just lock\`; installed by the README's commands and CI: pip install -c constraints.txt ..."; \
     .venv-lock/bin/pip freeze --exclude-editable) > constraints.txt.new
    mv constraints.txt.new constraints.txt
    rm -rf .venv-lock

# The whole test suite (unit, integration, chaos), with coverage.
test *args:
    {{python}} -m pytest --cov --cov-report=term-missing:skip-covered {{args}}

# Mutation testing of the core (wakeups, backoff, supervisor, ticker, listener, drainer) against
# tests/unit, then the score per module and every survivor (tests/mutation_score.py states which
# log and message-text mutants it leaves out). About 4 minutes on 2 cores; fails below 95%.
mutate children="2":
    rm -rf mutants
    {{venv}}/bin/mutmut run --max-children {{children}}
    {{python}} -m tests.mutation_score

# Static checks: ruff, mypy --strict, the import contracts.
lint:
    {{python}} -m ruff check relay tests benchmarks examples docs/hooks
    {{python}} -m ruff format --check relay tests benchmarks examples docs/hooks
    {{python}} -m mypy --strict relay
    {{venv}}/bin/lint-imports

# Format and autofix.
fmt:
    {{python}} -m ruff format relay tests benchmarks examples docs/hooks
    {{python}} -m ruff check --fix relay tests benchmarks examples docs/hooks

# The docs site into site/, offline; --strict: a broken link or anchor, or a page missing from the
# nav, fails it (mkdocs.yml's validation). The examples in it are tests: pytest tests/docs.
docs:
    {{python}} -m mkdocs build --strict

# The docs site on http://127.0.0.1:8000, rebuilt as you edit.
docs-serve:
    {{python}} -m mkdocs serve --strict

# Benchmarks: figures printed side by side, never asserted (installs the peers first).
bench *args:
    {{venv}}/bin/pip install -q -e '.[bench]'
    {{python}} -m benchmarks {{args}}
