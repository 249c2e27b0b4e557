"""Noticing a torn write-ahead-log tail, so that recovery can say so once.

SQLite discards a WAL's torn or uncommitted tail by itself: each frame
carries a running checksum and the salts of its WAL generation, and recovery
keeps frames up to the last valid commit frame.  It says nothing about it,
though.  The store keeps ``journal_size_limit = 0``, so the WAL file is cut
back when it restarts and never holds stale frames of an older generation;
any byte past the frames SQLite kept is a tail it discarded (a write cut
short by a crash, a transaction that never committed, or garbage).

The check is cheap: read the WAL size and header before opening, ask SQLite
how many frames it kept (``PRAGMA wal_checkpoint`` reports it), compare.
"""

from __future__ import annotations

import os
import struct
from typing import Final

from attrs import frozen

WAL_HEADER_BYTES: Final = 32
WAL_FRAME_HEADER_BYTES: Final = 24
_WAL_MAGICS: Final = (0x377F0682, 0x377F0683)


@frozen(slots=True)
class WalFile:
    """What the WAL file looked like before SQLite opened it."""

    path: str
    size: int
    page_size: int
    header_valid: bool


def inspect_wal(db_path: str) -> WalFile | None:
    """Read the WAL file's size and header; None when there is no WAL (a clean stop)."""
    path = db_path + "-wal"
    try:
        with open(path, "rb") as f:
            header = f.read(WAL_HEADER_BYTES)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    if len(header) < WAL_HEADER_BYTES:
        return WalFile(path, size, 0, False)
    magic, _version, page_size = struct.unpack(">III", header[:12])
    valid = magic in _WAL_MAGICS and _wal_header_checksum_ok(header, magic)
    return WalFile(path, size, page_size if valid else 0, valid)


def _wal_header_checksum_ok(header: bytes, magic: int) -> bool:
    """Check the header's own checksum (SQLite's Fletcher-like sum over 24 bytes)."""
    fmt = ">6I" if magic & 1 else "<6I"
    words = struct.unpack(fmt, header[:24])
    s0 = s1 = 0
    for i in range(0, 6, 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return (s0, s1) == struct.unpack(">II", header[24:32])


def discarded_tail(wal: WalFile | None, kept_frames: int) -> str | None:
    """Describe the tail SQLite discarded, or None when it kept the whole WAL.

    ``kept_frames`` is the frame count SQLite recovered (the second value of
    ``PRAGMA wal_checkpoint``).
    """
    if wal is None:
        return None
    if not wal.header_valid:
        return (
            f"write-ahead log {wal.path} has a torn or invalid header; "
            f"its {wal.size} bytes were discarded"
        )
    kept = WAL_HEADER_BYTES + kept_frames * (WAL_FRAME_HEADER_BYTES + wal.page_size)
    if wal.size <= kept:
        return None
    return (
        f"write-ahead log {wal.path} had a torn or uncommitted tail: "
        f"{wal.size - kept} bytes after byte {kept} were discarded "
        f"({kept_frames} committed frames kept)"
    )
