"""The per-module score of `mutmut run` (`just mutate`), with message-text mutants left out.

The rule: a mutant is message text, and left out of the score, when its function is the same as
the original once every `logger.*(...)` call is removed and every string given to an exception's
constructor (a class deriving from `BaseException`, e.g. `ListenerLost("...")`) is blanked (a
mutant's `None` for such a string too), and an `if` left holding nothing but logging goes. What
a log line or an error message says is not behaviour the unit tests pin; what is raised, and when,
is. Timeouts count as killed (the mutant never finished: the tests noticed).

Run from the project's root after `mutmut run`: `python -m tests.mutation_score`.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import json
import sys
from pathlib import Path

import libcst as cst
from mutmut.mutation.diff_apply import (
    get_diff_for_mutant,
    read_mutant_function,
    read_mutants_module,
    read_original_function,
)
from mutmut.stats import status_by_exit_code

MODULES = ["wakeups", "backoff", "supervisor", "ticker", "listener", "drainer"]
TARGET = 0.95

# Survivors examined and found to change no behaviour, by mutmut's name (a name changes when its
# function does: then it shows up unexplained, to be looked at again).
EXPLAINED = {
    "relay.supervisor.xǁStartedOnceǁ__init____mutmut_2": "`called = None`: as falsy as False",
    "relay.supervisor.xǁStartedOnceǁstarted__mutmut_5": "`cast()` does nothing at run time",
    "relay.supervisor.xǁSupervisorǁrun__mutmut_7": (
        "`_nursery = ''` after the run: read only while a run is going on"
    ),
    "relay.drainer.xǁDrainerǁ_claim_and_deliver__mutmut_2": (
        "`delivered = None`: read only when the claim had events, which assigns it"
    ),
    "relay.drainer.xǁDrainerǁ_deliver__mutmut_2": (
        "`failures = None`: settle_plan treats None like {} (`if not failures`)"
    ),
    "relay.drainer.xǁDrainerǁ_drain__mutmut_1": (
        "`found_fresh = None`: `None or any(...)` is any(...); a drain claims at least once"
    ),
}


class _Blank(ast.NodeTransformer):
    """Removes what the rule says is message text from a function's syntax tree."""

    def __init__(self, module: object) -> None:
        self.module = module

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = "_"  # mutmut names the original and each mutant apart
        return self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        call = node.value
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "logger"
        ):
            return ast.Pass()
        return self.generic_visit(node)

    def visit_If(self, node: ast.If) -> ast.AST:
        self.generic_visit(node)
        if all(isinstance(statement, ast.Pass) for statement in [*node.body, *node.orelse]):
            return ast.Pass()  # a condition that only chose what to log
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        # a global of the module, else a builtin (`ValueError("...")` is message text too)
        callee = getattr(self.module, name, getattr(builtins, name, None)) if name else None
        if isinstance(callee, type) and issubclass(callee, BaseException):
            node.args = [_blank(arg) for arg in node.args]
        return self.generic_visit(node)


def _blank(arg: ast.expr) -> ast.expr:
    if isinstance(arg, ast.JoinedStr) or (
        isinstance(arg, ast.Constant) and (arg.value is None or isinstance(arg.value, str))
    ):
        return ast.Constant("")
    return arg


def _normalized(function: cst.FunctionDef, module: object) -> str:
    tree = ast.parse(cst.Module([function]).code)
    return ast.dump(_Blank(module).visit(tree))


def main() -> int:
    failing = False
    for name in MODULES:
        path = Path("relay") / f"{name}.py"
        meta = json.loads((Path("mutants") / f"{path}.meta").read_text())
        statuses = {
            key: status_by_exit_code[code] for key, code in meta["exit_code_by_key"].items()
        }
        module = importlib.import_module(f"relay.{name}")
        mutants = read_mutants_module(path)
        killed, survived, message_text = 0, [], 0
        for key, status in sorted(statuses.items()):
            original = read_original_function(mutants, key)
            mutant = read_mutant_function(mutants, key)
            if _normalized(original, module) == _normalized(mutant, module):
                message_text += 1
            elif status in ("killed", "timeout"):
                killed += 1
            else:
                survived.append((key, status))
        counted = killed + len(survived)
        score = killed / counted if counted else 1.0
        failing |= score < TARGET
        print(
            f"{name:<11} {score:6.1%}  killed {killed}/{counted}"
            f"  (message text left out: {message_text}; all mutants: {len(statuses)})"
        )
        for key, status in survived:
            print(f"    {status}: {key}: {EXPLAINED.get(key, 'UNEXPLAINED')}")
            for line in get_diff_for_mutant(key, path=path).splitlines()[2:]:
                if line.startswith(("+", "-")):
                    print(f"        {line}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
