"""Finding which pages of a damaged SQLite file are broken, to say where.

When SQLite meets a broken b-tree page it often just raises "database disk
image is malformed" (``quick_check`` included), without a page number.  To
report a position, this walks every b-tree from its root page as the file
format describes it (https://www.sqlite.org/fileformat2.html, "B-tree
Pages") and checks each page's header, cell pointers and child pointers.
It reads the main file only, and only runs on the error path.
"""

from __future__ import annotations

import mmap
import sqlite3
import struct
from typing import Final

_TABLE_TYPES: Final = {5: "interior", 13: "leaf"}
_INDEX_TYPES: Final = {2: "interior", 10: "leaf"}
_DB_HEADER_BYTES: Final = 100
_MAGIC: Final = b"SQLite format 3\x00"


def page_size_from_header(header: bytes) -> int | None:
    """The page size a database header (its first 18 bytes or more) declares.

    Bytes 16-17, big-endian; 1 stands for 65536, which does not fit in two
    bytes.  None when the bytes are not a database header or the size is invalid.
    """
    if len(header) < 18 or header[:16] != _MAGIC:
        return None
    size = int.from_bytes(header[16:18], "big")
    if size == 1:
        size = 65536
    if size < 512 or size & (size - 1):
        return None
    return size


def file_page_size(path: str) -> int | None:
    """The page size in the header of the database file at ``path``; None if unreadable."""
    try:
        with open(path, "rb") as f:
            return page_size_from_header(f.read(18))
    except OSError:
        return None


def find_damaged_pages(path: str, limit: int = 20) -> list[tuple[int, str]]:
    """Return up to ``limit`` ``(page number, what is wrong)`` pairs, 1-based pages."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size < _DB_HEADER_BYTES:
                return [(1, f"file is {size} bytes, shorter than a database header")]
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _walk(path, data, size, limit)
    except OSError as exc:
        return [(1, f"cannot read the file: {exc}")]


def _roots(path: str) -> list[tuple[str, int]] | None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        rows = conn.execute(
            "SELECT name, rootpage FROM sqlite_master WHERE rootpage > 0"
        ).fetchall()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return [(str(name), int(root)) for name, root in rows]


def _walk(path: str, data: mmap.mmap, size: int, limit: int) -> list[tuple[int, str]]:
    if data[:16] != _MAGIC:
        return [(1, "not an SQLite database header")]
    page_size = page_size_from_header(data[:18])
    if page_size is None:
        return [(1, "invalid page size in the database header")]
    reserved = data[20]
    usable = page_size - reserved
    pages = size // page_size
    damaged: list[tuple[int, str]] = []
    seen: set[int] = set()
    roots = _roots(path)
    if roots is None:
        return [(1, "the schema table cannot be read")]
    todo: list[tuple[int, str, dict[int, str]]] = [(1, "sqlite_master", _TABLE_TYPES)]
    for name, root in roots:
        kinds = _TABLE_TYPES
        if 0 < root <= pages:
            base = 0 if root != 1 else _DB_HEADER_BYTES
            if data[(root - 1) * page_size + base] in _INDEX_TYPES:
                kinds = _INDEX_TYPES
        todo.append((root, name, kinds))
    while todo and len(damaged) < limit:
        page, name, kinds = todo.pop()
        if not 1 <= page <= pages:
            damaged.append((page, f"{name}: page number out of the file's {pages} pages"))
            continue
        if page in seen:
            damaged.append((page, f"{name}: page referenced twice"))
            continue
        seen.add(page)
        start = (page - 1) * page_size
        header = start + (_DB_HEADER_BYTES if page == 1 else 0)
        kind = data[header]
        if kind not in kinds:
            damaged.append((page, f"{name}: invalid b-tree page type {kind}"))
            continue
        interior = kinds[kind] == "interior"
        header_end = header + (12 if interior else 8)
        (cells, content) = struct.unpack(">HH", data[header + 3 : header + 7])
        content = content or 65536
        pointers_end = header_end + 2 * cells
        if pointers_end > start + usable or (cells and start + content < pointers_end):
            damaged.append((page, f"{name}: {cells} cells do not fit the page"))
            continue
        offsets = struct.unpack(f">{cells}H", data[header_end:pointers_end])
        if any(not pointers_end - start <= o < usable for o in offsets):
            damaged.append((page, f"{name}: cell pointer outside the page"))
            continue
        if interior:
            for o in offsets:
                (child,) = struct.unpack(">I", data[start + o : start + o + 4])
                todo.append((child, name, kinds))
            (right,) = struct.unpack(">I", data[header + 8 : header + 12])
            todo.append((right, name, kinds))
    return damaged
