"""`relay.sinks.redis_resp.pack` sends exactly the bytes redis-py's own packing would."""

from __future__ import annotations

from typing import Any

import pytest
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection

from relay.sinks.redis_resp import FastConnection, FastSSLConnection, pack, use_fast_packing

ARGUMENT_FAMILIES: dict[str, tuple[Any, ...]] = {
    "empty": ("SET", "", b""),
    "delimiters": ("XADD", "s\r\n*", b"\r\n$3\r\n", " spaced  words ", b"\x00\xff"),
    "non-ASCII": ("SET", "é ✓ 键", "\U0001f600"),
    "integers": ("SET", 0, -1, 2**63, -(2**70), 10**30),
    "several words in the command": ("SCRIPT LOAD", "return 1"),
    "several words as bytes": (b"CONFIG GET", "proto-max-bulk-len"),
    "large values": ("SET", "k", b"x" * 100_000, "y" * 7_000),
    "many arguments": ("EVALSHA", "f" * 40, 2_000, *(f"k{n}" for n in range(2_000))),
    "a float": ("INCRBYFLOAT", "k", 1.5),
    "a memoryview": ("SET", "k", memoryview(b"view")),
}


def redis_py_packing(*args: Any) -> bytes:
    return b"".join(bytes(part) for part in Connection().pack_command(*args))


@pytest.mark.parametrize("args", ARGUMENT_FAMILIES.values(), ids=ARGUMENT_FAMILIES.keys())
def test_the_connection_packs_what_redis_py_packs(args: tuple[Any, ...]) -> None:
    packed = FastConnection().pack_command(*args)
    assert b"".join(bytes(part) for part in packed) == redis_py_packing(*args)


def test_pack_refuses_what_it_does_not_know_so_that_redis_py_packs_it() -> None:
    with pytest.raises(TypeError):
        pack(("INCRBYFLOAT", "k", 1.5))


def test_a_bool_is_refused_as_redis_py_refuses_it() -> None:
    with pytest.raises(redis.exceptions.DataError):
        FastConnection().pack_command("SET", "k", True)


@pytest.mark.parametrize(
    ("ssl", "expected"), [(False, FastConnection), (True, FastSSLConnection)], ids=["tcp", "tls"]
)
def test_a_client_opens_fast_connections_of_its_own_kind(ssl: bool, expected: type) -> None:
    client = Redis(ssl=ssl)
    use_fast_packing(client)
    assert client.connection_pool.connection_class is expected
    assert issubclass(expected, SSLConnection) == ssl
