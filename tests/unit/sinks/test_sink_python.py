"""`python:package.module:attribute` sinks: what they may name, the errors when they cannot load."""

from __future__ import annotations

import itertools
import pathlib
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence

import pytest

from relay import ConfigError, OutboxEvent
from relay.ports import CallableSink
from relay.sinks import load_python_sink, open_sink

USER_MODULE = """
    from relay.sinks import StdoutSink

    received = []

    async def handler(events):
        received.extend(event.id for event in events)

    class Sink:
        def __init__(self):
            self.received = []

        async def deliver(self, events):
            self.received.extend(event.id for event in events)

    sink = Sink()

    class AsyncCallable:
        async def __call__(self, events):
            received.extend(event.id for event in events)

    handler_object = AsyncCallable()

    def make_handler():
        return handler

    def make_sink():
        return sink

    def make_nothing():
        return None

    def broken_factory():
        raise RuntimeError("no credentials")

    def handler_with_arguments(events):
        return None

    class namespace:
        handler = handler

    not_callable = 3
"""

_numbers = itertools.count()


@pytest.fixture
def user_module(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a fresh importable module holding USER_MODULE's definitions."""
    name = f"relay_test_user_sinks_{next(_numbers)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def one_event(id: int = 1) -> list[OutboxEvent]:
    return [OutboxEvent.create(id, "t", {})]


async def test_an_async_function_is_a_handler(user_module: str) -> None:
    sink = open_sink(f"python:{user_module}:handler")
    assert isinstance(sink, CallableSink)
    await sink.deliver(one_event(5))
    assert sys.modules[user_module].received == [5]


async def test_an_object_with_deliver_is_the_sink_itself(user_module: str) -> None:
    sink = open_sink(f"python:{user_module}:sink")
    assert sink is sys.modules[user_module].sink


async def test_an_object_with_an_async_call_is_a_handler(user_module: str) -> None:
    sink = open_sink(f"python:{user_module}:handler_object")
    assert isinstance(sink, CallableSink)
    await sink.deliver(one_event(6))
    assert sys.modules[user_module].received == [6]


async def test_a_class_is_a_factory(user_module: str) -> None:
    sink = open_sink(f"python:{user_module}:Sink")
    assert isinstance(sink, sys.modules[user_module].Sink)
    await sink.deliver(one_event(7))
    assert sink.received == [7]


@pytest.mark.parametrize(
    ("factory", "expected"),
    [("make_sink", lambda module: module.sink), ("make_handler", lambda module: module.handler)],
)
def test_a_plain_function_is_a_zero_argument_factory(
    user_module: str, factory: str, expected: Callable[[object], object]
) -> None:
    sink = open_sink(f"python:{user_module}:{factory}")
    found = sink.handler if isinstance(sink, CallableSink) else sink
    assert found is expected(sys.modules[user_module])


def test_a_dotted_attribute_is_followed(user_module: str) -> None:
    sink = load_python_sink(f"{user_module}:namespace.handler")
    assert isinstance(sink, CallableSink)
    assert sink.handler is sys.modules[user_module].handler


@pytest.mark.parametrize(
    ("attribute", "reason"),
    [
        ("missing", "has no attribute 'missing'"),
        ("namespace.missing", "has no attribute 'namespace.missing'"),
        ("not_callable", "is not callable: an object of type int"),
        ("make_nothing", "is not a sink"),
        ("broken_factory", "raised RuntimeError: no credentials"),
        # A sync function taking the events is called as a factory, with no arguments.
        ("handler_with_arguments", "raised TypeError"),
    ],
)
def test_what_is_not_a_sink_is_a_config_error(
    user_module: str, attribute: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        open_sink(f"python:{user_module}:{attribute}")
    assert caught.value.field == "sink"
    assert reason in caught.value.reason


def test_an_object_that_is_no_sink_is_named_by_its_type_never_its_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: `python:os:environ` printed the whole environment, secrets included."""
    monkeypatch.setenv("RELAY_TEST_SECRET_VALUE", "hunter2-in-the-environment")
    with pytest.raises(ConfigError) as caught:
        open_sink("python:os:environ")
    assert "hunter2" not in str(caught.value)
    assert str(caught.value).endswith("is not callable: an object of type os._Environ")


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("no_such_module_for_relay_tests:handler", "cannot import module"),
        ("module_only", "expected python:package.module:callable"),
        (":handler", "expected python:package.module:callable"),
        ("module:", "expected python:package.module:callable"),
    ],
)
def test_a_target_that_cannot_be_found_is_a_config_error(target: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_python_sink(target)
    assert reason in caught.value.reason


def test_a_module_that_fails_to_import_is_a_config_error(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"relay_test_broken_module_{next(_numbers)}"
    (tmp_path / f"{name}.py").write_text("raise ImportError('needs extra')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        load_python_sink(f"{name}:handler")
    assert caught.value.reason == f"cannot import module {name!r}: ImportError: needs extra"


async def test_the_loaded_sink_receives_the_batch_unchanged(user_module: str) -> None:
    sink = open_sink(f"python:{user_module}:sink")
    events: Sequence[OutboxEvent] = [OutboxEvent.create(i, "t", {}) for i in (3, 1, 2)]
    await sink.deliver(events)
    assert sys.modules[user_module].sink.received == [3, 1, 2]
