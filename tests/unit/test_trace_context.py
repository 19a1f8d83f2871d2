"""W3C trace context in an event's headers: what counts, what is ignored, and never an error."""

from __future__ import annotations

from typing import Any

import pytest

from relay.ports import JsonObject
from relay.trace_context import (
    TraceContext,
    check_traceparent,
    check_tracestate,
    find_trace_context,
    replace_trace_headers,
    trace_headers_of,
)

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
STATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"


def test_a_valid_traceparent_and_tracestate_are_found_with_their_parts() -> None:
    context = find_trace_context({"traceparent": PARENT, "tracestate": STATE, "other": 1})
    assert context == TraceContext(PARENT, STATE)
    assert context.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert context.parent_id == "b7ad6b7169203331"
    assert (context.flags, context.sampled) == (1, True)
    assert context.headers() == {"traceparent": PARENT, "tracestate": STATE}


def test_names_match_in_any_case_and_come_out_lowercase() -> None:
    headers = {"TraceParent": PARENT, "TRACESTATE": STATE}
    assert trace_headers_of(headers) == {"traceparent": PARENT, "tracestate": STATE}


def test_spaces_and_tabs_around_a_value_are_dropped_and_nothing_else_changes() -> None:
    headers = {"traceparent": f" \t{PARENT} ", "tracestate": f" {STATE}\t"}
    assert trace_headers_of(headers) == {"traceparent": PARENT, "tracestate": STATE}


def test_without_a_tracestate_only_the_traceparent_is_carried() -> None:
    assert trace_headers_of({"traceparent": PARENT}) == {"traceparent": PARENT}


def test_an_unsampled_context_is_carried_too() -> None:
    unsampled = PARENT[:-2] + "00"
    context = find_trace_context({"traceparent": unsampled})
    assert context is not None and not context.sampled


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        PARENT[:-1],  # too short
        PARENT + "0",  # too long for version 00
        PARENT + "-extra",  # version 00 has nothing after the flags
        PARENT.upper(),  # hex is lowercase
        "ff" + PARENT[2:],  # version ff is invalid
        "0g" + PARENT[2:],
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero parent id
        "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
        PARENT.replace("-01", "-0x"),
        PARENT + "\n",
        PARENT + "\r\nX-Injected: yes",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333é-01",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",  # no `-` after the flags
        "01" + PARENT[2:] + "-\x00",
        "x" * 1_000_000,
        PARENT + " " * 5000,
        None,
        1,
        ["00", PARENT],
        {"traceparent": PARENT},
        PARENT.encode(),
    ],
)
def test_an_invalid_traceparent_is_ignored(value: Any) -> None:
    assert check_traceparent(value) is None
    assert find_trace_context({"traceparent": value, "tracestate": STATE}) is None
    assert trace_headers_of({"traceparent": value}) == {}


def test_a_later_version_may_carry_more_after_a_dash_passed_on_as_it_is() -> None:
    later = "cc" + PARENT[2:] + "-what-the-future-holds"
    assert trace_headers_of({"traceparent": later}) == {"traceparent": later}
    bare = "cc" + PARENT[2:]
    assert trace_headers_of({"traceparent": bare}) == {"traceparent": bare}


@pytest.mark.parametrize(
    "value",
    [
        "",
        " , ,",
        "Rojo=1",  # keys are lowercase
        "rojo",
        "rojo=",
        "rojo=a\tb",  # a tab is no value character
        "rojo=a=b",
        "=1",
        "rojo=1,rojo=2",  # keys are unique
        ",".join(f"k{n}=v" for n in range(33)),  # at most 32 members
        "a" * 257 + "=1",
        "rojo=" + "v" * 257,
        "t@" + "s" * 15 + "=1",  # a system id has at most 14 characters
        "rojo=1\n",
        "rojo=é",
        "rojo=1;congo=2",
        "x" * 1_000_000,
        None,
        7,
        ["rojo=1"],
    ],
)
def test_an_invalid_tracestate_is_dropped_and_the_traceparent_still_counts(value: Any) -> None:
    assert check_tracestate(value) is None
    assert trace_headers_of({"traceparent": PARENT, "tracestate": value}) == {"traceparent": PARENT}


@pytest.mark.parametrize(
    "value",
    [
        "rojo=1",
        "rojo=1,,congo=2",
        "rojo=1 , congo=2",
        "tenant1@vendor=x",
        "0tenant@v-1/*_=y",
        "a-b_c*d/e=!~ value with spaces~",
        ",".join(f"k{n}=v" for n in range(32)),
        "a" + "b" * 255 + "=" + "v" * 256,
    ],
)
def test_a_valid_tracestate_is_carried_verbatim(value: str) -> None:
    assert check_tracestate(value) == value
    assert trace_headers_of({"traceparent": PARENT, "tracestate": value})["tracestate"] == value


def test_a_tracestate_without_a_traceparent_is_ignored() -> None:
    assert find_trace_context({"tracestate": STATE}) is None


def test_the_same_name_twice_in_different_cases_is_ambiguous_and_ignored() -> None:
    assert find_trace_context({"traceparent": PARENT, "Traceparent": PARENT}) is None
    context = find_trace_context({"traceparent": PARENT, "tracestate": STATE, "TraceState": "a=1"})
    assert context == TraceContext(PARENT, None)


@pytest.mark.parametrize(
    "headers",
    [
        JsonObject(b"[1, 2]"),  # no JSON object: the sinks report it, this ignores it
        JsonObject(b'{"traceparent": '),
        JsonObject(b"\xff\xfe traceparent"),
        JsonObject(b"[" * 100_000 + b'"traceparent"' + b"]" * 100_000),
        {1: PARENT, None: "x"},
        {},
    ],
)
def test_headers_that_cannot_be_read_hold_no_context_and_raise_nothing(headers: Any) -> None:
    assert find_trace_context(headers) is None


def test_headers_from_postgresql_are_read_without_decoding_when_they_mention_no_trace() -> None:
    headers = JsonObject(b'{"tenant": "a", "n": 1}')
    assert find_trace_context(headers) is None
    assert headers._decoded is None
    mentioned = JsonObject(b'{"TraceParent": "%s"}' % PARENT.encode())
    assert find_trace_context(mentioned) == TraceContext(PARENT)


def test_replacing_puts_the_checked_context_in_place_of_the_writers_and_keeps_the_rest() -> None:
    headers = {"Traceparent": f" {PARENT}", "TRACESTATE": STATE, "tenant": "a", "n": 1}
    assert replace_trace_headers(headers) == {
        "tenant": "a",
        "n": 1,
        "traceparent": PARENT,
        "tracestate": STATE,
    }


def test_replacing_drops_an_invalid_context_and_keeps_the_rest() -> None:
    headers = {"traceparent": "garbage", "tracestate": STATE, "tenant": "a"}
    assert replace_trace_headers(headers) == {"tenant": "a"}


def test_replacing_raises_what_reading_unreadable_headers_raises() -> None:
    with pytest.raises(TypeError, match="not a JSON object"):
        replace_trace_headers(JsonObject(b"[1]"))
