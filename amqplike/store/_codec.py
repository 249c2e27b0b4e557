"""How records are turned into column values and back.

Properties are stored as the CBOR array of their values in
:data:`~amqplike.properties.PROPERTY_NAMES` order, trailing unset ones left
out, and ``NULL`` when none is set (the same shape as the wire's content
header, re-implemented here because the store does not import the wire).
Argument tables are canonical CBOR, so equal tables give equal bytes and a
binding's arguments can be part of its key.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, Final

import cbor2

from amqplike.properties import EMPTY_PROPERTIES, BasicProperties, property_values

_EMPTY_TABLE: Final = cbor2.dumps({}, canonical=True)
#: Most distinct header-less property sets :class:`PropertiesEncoder` remembers.
_CACHE_ENTRIES: Final = 512


def _plain(value: Any) -> Any:
    """Turn mappings into dicts and tuples into lists, recursively, for cbor2."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _encode_values(values: tuple[Any, ...]) -> bytes | None:
    items = list(values)
    while items and items[-1] is None:
        items.pop()
    if not items:
        return None
    if len(items) > 2 and items[2] is not None:
        items[2] = _plain(items[2])
    return cbor2.dumps(items)


def encode_properties(properties: BasicProperties) -> bytes | None:
    """Return the stored form of ``properties``; None when none is set."""
    if properties is EMPTY_PROPERTIES:
        return None
    return _encode_values(property_values(properties))


class PropertiesEncoder:
    """:func:`encode_properties` with a small cache for header-less property sets.

    Most publishers send the same few property sets (``delivery_mode=2`` and
    a content type), each as a new object; the cache skips their CBOR
    encoding.  Not thread-safe: one per writer thread.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], bytes | None] = {}

    def __call__(self, properties: BasicProperties) -> bytes | None:
        if properties is EMPTY_PROPERTIES:
            return None
        values = property_values(properties)
        if values[2] is not None:  # headers: not hashable, rarely repeated
            return _encode_values(values)
        cache = self._cache
        try:
            return cache[values]
        except KeyError:
            pass
        if len(cache) >= _CACHE_ENTRIES:
            cache.clear()
        blob = cache[values] = _encode_values(values)
        return blob


def decode_properties(blob: bytes | None) -> BasicProperties:
    """Inverse of :func:`encode_properties`."""
    if blob is None:
        return EMPTY_PROPERTIES
    values = cbor2.loads(blob)
    return BasicProperties(*values)


def encode_table(table: Mapping[str, Any] | None) -> bytes:
    """Return the canonical CBOR of an argument table (``{}`` for None)."""
    if not table:
        return _EMPTY_TABLE
    return cbor2.dumps(_plain(table), canonical=True)


def decode_table(blob: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_table`."""
    table = cbor2.loads(blob)
    if not isinstance(table, dict):
        raise ValueError(f"argument table is a {type(table).__name__}, not a map")
    return table


def message_checksum(
    exchange: str, routing_key: str, properties: bytes | None, body: bytes
) -> int:
    """CRC-32 over everything a delivery shows, so a damaged row is never delivered.

    SQLite checks the structure of its b-trees but not the bytes in them;
    this catches a flipped bit inside a stored message.
    """
    crc = zlib.crc32(f"{exchange}\0{routing_key}\0".encode())
    if properties is not None:
        crc = zlib.crc32(properties, crc)
    return zlib.crc32(body, crc)
