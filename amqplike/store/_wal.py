"""Noticing a torn write-ahead-log tail, so that recovery can say so once.

SQLite discards a WAL's torn or uncommitted tail by itself: each frame
carries a running checksum and the salts of its WAL generation, and recovery
keeps frames up to the last valid commit frame.  It says nothing about it,
though.

The WAL file is not cut back to zero when it restarts (growing it again on
every generation cost a file-system metadata commit per fsync; see
``journal_size_limit`` in ``_sqlite.py``), so frames of an older generation
may follow the ones SQLite kept.  They are told apart by their salts: a
restart increments the header's salt-1 (and draws a new salt-2), so a stale
frame carries a salt-1 a little below the current one.  What follows the
kept frames is a discarded write when it is a frame of the current
generation (written but never committed, or torn), or anything that is no
frame of an older generation (zeros, garbage).  A partial frame of an older
generation (the file was cut back at ``journal_size_limit``) is stale too.

The check is cheap: read the WAL header before opening, ask SQLite how many
frames it kept (``PRAGMA wal_checkpoint`` reports it), read the frame header
after them.
"""

from __future__ import annotations

import os
import struct
from typing import Final

from attrs import frozen

WAL_HEADER_BYTES: Final = 32
WAL_FRAME_HEADER_BYTES: Final = 24
_WAL_MAGICS: Final = (0x377F0682, 0x377F0683)
#: A frame whose salt-1 is at most this many generations behind the header's is stale.
_STALE_GENERATIONS: Final = 1 << 16


@frozen(slots=True)
class WalFile:
    """What the WAL file looked like before SQLite opened it."""

    path: str
    size: int
    page_size: int
    header_valid: bool
    #: The header's salt-1 and salt-2 (the current generation's).
    salts: tuple[int, int] = (0, 0)


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
    salts: tuple[int, int] = struct.unpack(">II", header[16:24])
    return WalFile(path, size, page_size if valid else 0, valid, salts)


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
    """Describe the tail SQLite discarded, or None when nothing of this generation was lost.

    ``kept_frames`` is the frame count SQLite recovered (the second value of
    ``PRAGMA wal_checkpoint``).  Call it before anything writes to the store
    again: the WAL still holds what the crash left.
    """
    if wal is None:
        return None
    if not wal.header_valid:
        return (
            f"write-ahead log {wal.path} has a torn or invalid header; "
            f"its {wal.size} bytes were discarded"
        )
    frame_bytes = WAL_FRAME_HEADER_BYTES + wal.page_size
    kept = WAL_HEADER_BYTES + kept_frames * frame_bytes
    if wal.size <= kept:
        return None
    if wal.size - kept >= WAL_FRAME_HEADER_BYTES and _is_stale_frame(wal, kept):
        return None
    return (
        f"write-ahead log {wal.path} had a torn or uncommitted tail: "
        f"{wal.size - kept} bytes after byte {kept} were discarded "
        f"({kept_frames} committed frames kept)"
    )


def _is_stale_frame(wal: WalFile, offset: int) -> bool:
    """Whether the frame at ``offset`` belongs to an older generation of the WAL."""
    try:
        with open(wal.path, "rb") as f:
            f.seek(offset)
            header = f.read(WAL_FRAME_HEADER_BYTES)
    except OSError:
        return False
    if len(header) < WAL_FRAME_HEADER_BYTES:
        return False
    salt1: int
    salt2: int
    salt1, salt2 = struct.unpack(">II", header[8:16])
    current1, current2 = wal.salts
    behind = (current1 - salt1) & 0xFFFFFFFF
    return 0 < behind <= _STALE_GENERATIONS and salt2 != current2
