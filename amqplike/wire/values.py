"""Validation of decoded CBOR values against the protocol's field kinds.

cbor2 decodes far more than the protocol allows (semantic tags become
datetimes, decimals, sets ...).  Every decoded value passes through these
checks, so only the plain types below ever reach the broker: ``None``,
``bool``, 64-bit ``int``, ``float``, ``str``, ``bytes``, ``list`` and
``dict`` with ``str`` keys.
"""

from __future__ import annotations

from collections.abc import Callable
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


_DECODE_ERRORS: Final = (
    cbor2.CBORError,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
    MemoryError,
)

# cbor2.loads ignores bytes after the first item.  Rather than decode through
# a file object to learn where the item ended (three times slower), the
# payload is decoded as the first of a two-item array whose second item is
# this sentinel: trailing bytes then become (part of) the second item and
# the result is no longer ``[item, sentinel]``.
_SENTINEL: Final = b"amqplike\x00"
_ARRAY2: Final = b"\x82"
_SENTINEL_ITEM: Final = bytes([0x40 | len(_SENTINEL)]) + _SENTINEL
_loads = cbor2.loads


def loads(payload: bytes) -> Any:
    """Decode exactly one CBOR item filling ``payload``.

    Indefinite lengths, nesting deeper than :data:`MAX_CBOR_DEPTH`, duplicate
    or non-text map keys and trailing bytes are refused.  Any decoding
    problem is ``HardError(501)``: the frame was well delimited but its
    content is not what the protocol allows.
    """
    try:
        pair = _loads(
            _ARRAY2 + payload + _SENTINEL_ITEM,
            max_depth=MAX_CBOR_DEPTH + 1,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )
    except _DECODE_ERRORS as e:
        raise HardError(FRAME_ERROR, f"invalid CBOR payload: {e}") from None
    if pair[1] != _SENTINEL or not payload:
        raise HardError(FRAME_ERROR, "invalid CBOR payload: not exactly one item")
    return pair[0]


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
        return all(type(k) is str and check_plain(v, depth + 1) for k, v in value.items())
    return False


def _is_shortstr(value: Any) -> bool:
    # 63 characters of UTF-8 are at most 252 bytes: only longer text is encoded to measure.
    return type(value) is str and (
        len(value) <= 63 or len(value.encode("utf-8")) <= MAX_SHORTSTR_BYTES
    )


def _is_bool(value: Any) -> bool:
    return type(value) is bool


def _is_str(value: Any) -> bool:
    return type(value) is str


def _is_table(value: Any) -> bool:
    return type(value) is dict and check_plain(value)


def _is_bytes(value: Any) -> bool:
    return type(value) is bytes


def _int_checker(lo: int, hi: int) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return type(value) is int and lo <= value <= hi

    return check


#: One checking function per field kind; method classes keep a tuple of them.
CHECKERS: Final[dict[str, Callable[[Any], bool]]] = {
    SHORTSTR: _is_shortstr,
    LONGSTR: _is_str,
    BOOL: _is_bool,
    TABLE: _is_table,
    BYTES: _is_bytes,
    **{kind: _int_checker(lo, hi) for kind, (lo, hi) in _INT_RANGES.items()},
}


def check_field(kind: str, value: Any) -> bool:
    """Return True when ``value`` is a valid value of field ``kind``."""
    return CHECKERS[kind](value)


def syntax_error(text: str) -> HardError:
    """The error for a well-formed payload whose fields are wrong (502, hard)."""
    return HardError(SYNTAX_ERROR, text)
