"""A streaming zip writer that never holds the archive.

The stdlib `zipfile.ZipFile` writes into an unseekable `_Spout` that only
collects what it is given; every call here returns the pieces to emit, in
order (h11 style), and the caller writes them wherever the archive goes.
Because the spout cannot seek, `zipfile` follows each entry with a data
descriptor (CRC-32 and sizes are known only at the end of the entry).

Entries are STORED (no compression). ZIP64 appears exactly when needed: an
entry whose announced size is near or above 4 GiB gets ZIP64 sizes in its
local header and data descriptor; the central directory and end records go
ZIP64 by themselves when an offset, a size or the entry count demands it.
Small archives carry no ZIP64 record at all.

Memory: only `zipfile`'s central-directory records (one small `ZipInfo`
per entry) stay in memory; entry data passes through untouched.
"""

from __future__ import annotations

import time
import zipfile
from typing import Union

Buffer = Union[bytes, bytearray, memoryview]

ZIP64_LIMIT = (1 << 32) - 1
# Entries at least this big announce ZIP64 sizes in their local header.
# (zipfile itself does so from about 3.8 GiB; the margin keeps the two in step.)
FORCE_ZIP64_AT = ZIP64_LIMIT - (256 << 20)


class _Spout:
    """Unseekable file object: remembers what was written until drained."""

    def __init__(self) -> None:
        self.pieces: list[Buffer] = []
        self.position = 0

    def write(self, data: Buffer) -> int:
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        if n:
            self.pieces.append(data)
            self.position += n
        return n

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        return None

    def drain(self) -> list[Buffer]:
        out, self.pieces = self.pieces, []
        return out


class ZipStream:
    """Build one zip archive as a stream of byte pieces.

    Whole entries: `add(name, data)`. Streamed entries: `start(name, size)`,
    `write(chunk)` ..., then `finish()` (or `discard()` to leave the entry out
    of the archive's directory). At the end `close()`. Each call returns the
    list of buffers to append to the archive, which must be written before
    the buffers passed in are changed.
    """

    def __init__(self, date_time: tuple[int, int, int, int, int, int] | None = None) -> None:
        self._spout = _Spout()
        self._zf = zipfile.ZipFile(self._spout, mode="w", compression=zipfile.ZIP_STORED,
                                   allowZip64=True)
        self._date_time = date_time or _dos_now()
        self._entry = None          # the open zipfile write handle
        self._entry_name: str | None = None
        self.closed = False

    # -- figures ---------------------------------------------------------
    @property
    def position(self) -> int:
        """Bytes emitted so far (the archive's size once closed)."""
        return self._spout.position

    @property
    def count(self) -> int:
        return len(self._zf.filelist)

    @property
    def names(self) -> list[str]:
        return [z.filename for z in self._zf.filelist]

    # -- entries ---------------------------------------------------------
    def _info(self, name: str, size: int) -> zipfile.ZipInfo:
        if not name or name.startswith("/") or "\\" in name or "\0" in name or \
                any(p in ("", ".", "..") for p in name.split("/")):
            raise ValueError(f"refusing zip entry name {name!r}")
        zi = zipfile.ZipInfo(name, self._date_time)
        zi.compress_type = zipfile.ZIP_STORED
        zi.external_attr = 0o644 << 16
        zi.file_size = size
        return zi

    def add(self, name: str, data: Buffer) -> list[Buffer]:
        """A whole entry: header, data, data descriptor."""
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        out = self.start(name, size)
        out += self.write(data)
        out += self.finish()
        return out

    def start(self, name: str, size: int) -> list[Buffer]:
        """Open an entry of (announced) `size` bytes; its local header."""
        self._check_open()
        if self._entry is not None:
            raise ValueError(f"entry {self._entry_name!r} is still open")
        zi = self._info(name, size)
        self._entry = self._zf.open(zi, "w", force_zip64=size >= FORCE_ZIP64_AT)
        self._entry_name = name
        return self._spout.drain()

    def write(self, data: Buffer) -> list[Buffer]:
        if self._entry is None:
            raise ValueError("no entry is open")
        self._entry.write(data)
        return self._spout.drain()

    def finish(self) -> list[Buffer]:
        """Close the open entry: its data descriptor."""
        if self._entry is None:
            raise ValueError("no entry is open")
        entry, self._entry, self._entry_name = self._entry, None, None
        entry.close()
        return self._spout.drain()

    def discard(self) -> list[Buffer]:
        """Abandon the open entry. Its bytes already emitted stay in the
        archive as unreferenced space (the stream cannot take them back), but
        the central directory does not list it, so readers never see it."""
        if self._entry is None:
            return []
        name = self._entry_name
        out = self.finish()
        zi = self._zf.filelist.pop()
        if zi.filename == name and self._zf.NameToInfo.get(name) is zi:
            del self._zf.NameToInfo[name]
        return out

    def close(self) -> list[Buffer]:
        """The central directory and end records."""
        self._check_open()
        if self._entry is not None:
            raise ValueError(f"entry {self._entry_name!r} is still open")
        self._zf.close()
        self.closed = True
        return self._spout.drain()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("the zip stream is closed")


def _dos_now() -> tuple[int, int, int, int, int, int]:
    t = time.localtime()
    return (max(1980, t.tm_year), t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec - t.tm_sec % 2)


__all__ = ["ZipStream", "ZIP64_LIMIT", "FORCE_ZIP64_AT"]
