"""One reader for the archives people hand out: zip, tar or tar.gz, told apart by
their first bytes (an XNAT URL ends in `?format=zip`, not `.zip`). Never does
I/O: fed bytes, it returns file events, like the readers it wraps
(`zipread.ZipReader`, `tarstream.TarReader`), with the archive policy applied
to every entry (names that climb out or start at the root, links, devices,
bombs) before a byte of it is handed out.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from . import tarstream, zipread
from .archive_policy import ArchiveError, Budget, Limits, check_name, check_tar_member

SNIFF = 512                  # a tar header; a zip or gzip is told by its first bytes


@dataclass(frozen=True)
class FileStart:
    name: str
    size: int | None         # None: a zip entry whose size comes after its data


@dataclass(frozen=True)
class FileData:
    data: memoryview         # valid until the next feed(): copy what must be kept


@dataclass(frozen=True)
class FileEnd:
    name: str


Event = FileStart | FileData | FileEnd


def plain_name(name: str) -> str:
    """`./a/b` as `a/b`: tar run in a folder (`tar -C dir -cf x.tar .`) writes
    names so; anything else a name holds is judged by the policy."""
    while name.startswith("./"):
        name = name[2:]
    return name


class Unpacker:
    """zip, tar or tar.gz in; `FileStart`/`FileData`/`FileEnd` of each regular
    file out (directories pass silently). `kind` is known after the first bytes."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self.kind: str | None = None          # "zip", "tar" or "tar.gz"
        self._sniff = bytearray()
        self._zip: zipread.ZipReader | None = None
        self._tar: tarstream.TarReader | None = None
        self._gunzip = None
        self._budget: Budget | None = None
        self._skip = False                     # inside a directory or a "." member

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        if self.kind is None:
            self._sniff += data
            if len(self._sniff) < SNIFF and not self._decided():
                return []
            self._choose()
            data, self._sniff = bytes(self._sniff), bytearray()
        return self._events(data)

    def end(self) -> list[Event]:
        out: list[Event] = []
        if self.kind is None:
            if not self._sniff:
                raise ArchiveError("the archive is empty")
            self._choose()
            out += self._events(bytes(self._sniff))
        if self._zip is not None:
            out += self._from_zip(self._zip.end())
            return out
        if self._gunzip is not None:
            rest = self._gunzip.flush()
            if not self._gunzip.eof:
                raise ArchiveError("the tar.gz ends before its gzip stream does: truncated")
            out += self._from_tar(self._tar.feed(rest))
        out += self._from_tar(self._tar.finish())
        return out

    # -- inside ------------------------------------------------------------
    def _decided(self) -> bool:
        return self._sniff[:4] == b"PK\x03\x04" or self._sniff[:2] == b"\x1f\x8b"

    def _choose(self) -> None:
        head = bytes(self._sniff[:SNIFF])
        if head[:4] == b"PK\x03\x04":
            self.kind, self._zip = "zip", zipread.ZipReader(self.limits)
        elif head[:2] == b"\x1f\x8b":
            self.kind, self._tar = "tar.gz", tarstream.TarReader()
            self._gunzip = zlib.decompressobj(wbits=31)
            self._budget = Budget(self.limits, "tar.gz")
            self._budget.start("(the whole archive)")
        elif head[257:262] == b"ustar" or (len(head) >= 512 and _tar_checksum_ok(head)):
            self.kind, self._tar = "tar", tarstream.TarReader()
        elif head[:4] == b"PK\x05\x06":
            raise ArchiveError("the zip holds no files (it is only an end record)")
        else:
            raise ArchiveError(f"not a zip, tar or tar.gz (it starts with {head[:8]!r})")

    def _events(self, data) -> list[Event]:
        if self._zip is not None:
            return self._from_zip(self._zip.feed(data))
        if self._gunzip is not None:
            out = self._gunzip.decompress(data)
            self._budget.add(len(out), len(data))
            return self._from_tar(self._tar.feed(out))
        return self._from_tar(self._tar.feed(data))

    def _from_zip(self, events) -> list[Event]:
        out: list[Event] = []
        for ev in events:
            if isinstance(ev, zipread.EntryStart):
                name = plain_name(ev.name)
                check_name(name)
                self._skip = ev.is_dir or name in ("", ".")
                if not self._skip:
                    out.append(FileStart(name, ev.size))
            elif isinstance(ev, zipread.EntryData):
                if not self._skip:
                    out.append(FileData(ev.data))
            elif isinstance(ev, zipread.EntryEnd):
                if not self._skip:
                    out.append(FileEnd(plain_name(ev.name)))
                self._skip = False
        return out

    def _from_tar(self, events) -> list[Event]:
        out: list[Event] = []
        for ev in events:
            if isinstance(ev, tarstream.MemberStart):
                name = plain_name(ev.name.rstrip("/") if ev.kind == "dir" else ev.name)
                self._skip = ev.kind == "dir" or name in ("", ".")
                if name not in ("", "."):
                    check_tar_member(tarstream.MemberStart(name, ev.size, ev.kind, ev.offset, ev.linkname))
                if not self._skip:
                    out.append(FileStart(name, ev.size))
            elif isinstance(ev, tarstream.MemberData):
                if not self._skip:
                    out.append(FileData(ev.data))
            elif isinstance(ev, tarstream.MemberEnd):
                if not self._skip:
                    out.append(FileEnd(plain_name(ev.name)))
                self._skip = False
        return out


def _tar_checksum_ok(block: bytes) -> bool:
    """A pre-POSIX tar header (no "ustar" magic) still carries its checksum."""
    try:
        stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(block[:148]) + 8 * 32 + sum(block[156:512])


__all__ = ["Unpacker", "FileStart", "FileData", "FileEnd", "plain_name", "ArchiveError", "Limits"]
