"""Validation of decoded CBOR values against the protocol's field kinds.

cbor2 decodes far more than the protocol allows (semantic tags become
datetimes, decimals, sets ...).  Every decoded value passes through these
checks, so only the plain types below ever reach the broker: ``None``,
``bool``, 64-bit ``int``, ``float``, ``str``, ``bytes``, ``list`` and
``dict`` with ``str`` keys.
"""

from __future__ import annotations

import threading
from io import BytesIO
from typing import Any, Final

import cbor2

from amqplike.errors import FRAME_ERROR, SYNTAX_ERROR, HardError

#: Field kinds of the method schemas (see ``docs/protocol.md``).
SHORTSTR: Final = "shortstr"
LONGSTR: Final = "longstr"
BOOL: Final = "bool"
OCTET: Final = "octet"
SHORT: Final = "short"
LONG: Final = "long"
LONGLONG: Final = "longlong"
TABLE: Final = "table"
BYTES: Final = "bytes"

#: Longest shortstr, in UTF-8 bytes (AMQP's limit for names and routing keys).
MAX_SHORTSTR_BYTES: Final = 255
#: Deepest nesting a CBOR payload may have; tables nest a few levels at most.
MAX_CBOR_DEPTH: Final = 16

_INT_RANGES: Final = {
    OCTET: (0, 0xFF),
    SHORT: (0, 0xFFFF),
    LONG: (0, 0xFFFFFFFF),
    LONGLONG: (0, 0xFFFFFFFFFFFFFFFF),
}
_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1


class _Decoders(threading.local):
    """One strict decoder per thread, reused: building one costs more than decoding."""

    def __init__(self) -> None:
        self.decoder = cbor2.CBORDecoder(
            BytesIO(),
            max_depth=MAX_CBOR_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )


_decoders = _Decoders()
_DECODE_ERRORS: Final = (
    cbor2.CBORError,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
    MemoryError,
)


def loads(payload: bytes) -> Any:
    """Decode exactly one CBOR item filling ``payload``.

    Indefinite lengths, nesting deeper than :data:`MAX_CBOR_DEPTH`, duplicate
    or non-text map keys and trailing bytes are refused.  Any decoding
    problem is ``HardError(501)``: the frame was well delimited but its
    content is not what the protocol allows.
    """
    decoder = _decoders.decoder
    fp = BytesIO(payload)
    decoder.fp = fp
    try:
        value = decoder.decode()
    except _DECODE_ERRORS as e:
        raise HardError(FRAME_ERROR, f"invalid CBOR payload: {e}") from None
    if fp.tell() != len(payload):
        raise HardError(FRAME_ERROR, "invalid CBOR payload: trailing bytes after the item")
    return value


dumps = cbor2.dumps


def check_plain(value: Any, depth: int = 0) -> bool:
    """Return True when ``value`` holds only the plain types a table may carry."""
    t = type(value)
    if t is str or t is bool or t is bytes or t is float or value is None:
        return True
    if t is int:
        return bool(_INT64_MIN <= value <= _UINT64_MAX)
    if depth >= MAX_CBOR_DEPTH:
        return False
    if t is list:
        return all(check_plain(v, depth + 1) for v in value)
    if t is dict:
        return all(
            type(k) is str and check_plain(v, depth + 1) for k, v in value.items()
        )
    return False


def check_field(kind: str, value: Any) -> bool:
    """Return True when ``value`` is a valid value of field ``kind``."""
    t = type(value)
    if kind == SHORTSTR:
        return t is str and (
            len(value) <= 63 or len(value.encode("utf-8")) <= MAX_SHORTSTR_BYTES
        )
    if kind == BOOL:
        return t is bool
    if kind in _INT_RANGES:
        lo, hi = _INT_RANGES[kind]
        return t is int and lo <= value <= hi
    if kind == LONGSTR:
        return t is str
    if kind == TABLE:
        return t is dict and check_plain(value)
    if kind == BYTES:
        return t is bytes
    raise AssertionError(f"unknown field kind {kind!r}")


def syntax_error(text: str) -> HardError:
    """The error for a well-formed payload whose fields are wrong (502, hard)."""
    return HardError(SYNTAX_ERROR, text)
