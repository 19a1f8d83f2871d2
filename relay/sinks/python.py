"""The `python:package.module:attribute` sink: user code found by import."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..errors import ConfigError
from ..ports import CallableSink, Sink


def _is_async_callable(obj: Any) -> bool:
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(
        getattr(obj, "__call__", None)  # noqa: B004 - an async __call__, not callable()
    )


def load_python_sink(target: str) -> Sink:
    """The sink named by `target`, `package.module:attribute` (the part after `python:`).

    The module is imported (it must be on `sys.path`, e.g. through `PYTHONPATH`) and the attribute,
    which may be dotted (`module:obj.attr`), is read. Then, by this rule:

    1. an object with a `deliver` method (not a class) is the sink itself;
    2. an async function, or an object with an async `__call__`, is a handler `handler(events)`;
    3. any other callable, a class included, is a factory: it is called once, with no arguments,
       and must return one of the two above.

    Raises:
        ConfigError: `target` is malformed, the module cannot be imported, the attribute is
            missing, the factory raised, or what was found is not a sink.
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError("sink", f"expected python:package.module:callable, got python:{target}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            "sink", f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigError(
                "sink", f"module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if isinstance(found, type) or not (isinstance(found, Sink) or _is_async_callable(found)):
        if not callable(found):
            raise ConfigError("sink", f"python:{target} is not callable: {_kind(found)}")
        try:
            found = found()
        except Exception as exc:
            raise ConfigError(
                "sink", f"the factory python:{target}() raised {type(exc).__name__}: {exc}"
            ) from exc
    if isinstance(found, Sink) and not isinstance(found, type):
        return found
    if _is_async_callable(found):
        return CallableSink(found)
    raise ConfigError(
        "sink",
        f"python:{target} is not a sink: expected an object with async deliver(events), an async "
        f"handler(events), or a zero-argument factory of either; got {_kind(found)}",
    )


def _kind(found: object) -> str:
    """What `found` is, by its type only: its repr may be anything (`os.environ` prints every
    variable, secrets included)."""
    kind = type(found)
    module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
    return f"an object of type {module}{kind.__qualname__}"
