"""A tar reader that never does I/O: feed it bytes, get member events back.

Like h11 for HTTP, the caller owns the bytes: a browser fetch loop, a file, a
Range response resumed after a dropped connection. Member data is handed out
as views of the fed chunks, so nothing is buffered beyond one 512-byte header
(or a PAX/GNU long-name record, bounded). Headers are decoded by `tarfile`.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass

from .errors import TarError

BLOCK = 512
MAX_EXTENDED_HEADER = 1024 * 1024

_KINDS = {
    tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.CONTTYPE: "file",
    tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "link",
    tarfile.CHRTYPE: "device", tarfile.BLKTYPE: "device", tarfile.FIFOTYPE: "fifo",
}


@dataclass(frozen=True)
class MemberStart:
    name: str
    size: int
    kind: str          # "file", "dir", "symlink", "link", "device", "fifo" or "other"
    offset: int        # where the member's data starts in the tar
    linkname: str = ""


@dataclass(frozen=True)
class MemberData:
    data: memoryview   # valid until the next feed(): copy what must be kept


@dataclass(frozen=True)
class MemberEnd:
    name: str


@dataclass(frozen=True)
class ArchiveEnd:
    offset: int


Event = MemberStart | MemberData | MemberEnd | ArchiveEnd

_HEADER, _EXTENDED, _DATA, _PADDING, _END = range(5)


class TarReader:
    """Incremental ustar/PAX/GNU reader.

    `offset` counts the bytes consumed, so a caller that lost its connection
    can ask for `Range: bytes=<offset>-` and keep feeding the same reader.
    """

    def __init__(self) -> None:
        self.offset = 0
        self._state = _HEADER
        self._buf = bytearray()
        self._need = BLOCK
        self._remaining = 0
        self._padding = 0
        self._member: MemberStart | None = None
        self._ext_type = b""
        self._ext_size = 0
        self._pax: dict[str, str] = {}
        self._pax_global: dict[str, str] = {}
        self._long_name: str | None = None
        self._long_link: str | None = None

    @property
    def at_end(self) -> bool:
        return self._state == _END

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        events: list[Event] = []
        view = memoryview(data).cast("B")
        pos, n = 0, len(view)
        while pos < n:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, n - pos)
                events.append(MemberData(view[pos:pos + take]))
                pos += take
                self._remaining -= take
                self.offset += take
                if self._remaining == 0:
                    self._finish_member(events)
            elif state == _PADDING:
                take = min(self._padding, n - pos)
                pos += take
                self._padding -= take
                self.offset += take
                if self._padding == 0:
                    self._state = _HEADER
                    self._need = BLOCK
            elif state == _END:
                # Trailing zero blocks and record padding: count, never interpret.
                self.offset += n - pos
                pos = n
            else:
                take = min(self._need - len(self._buf), n - pos)
                self._buf += view[pos:pos + take]
                pos += take
                self.offset += take
                if len(self._buf) == self._need:
                    block, self._buf = bytes(self._buf), bytearray()
                    if state == _HEADER:
                        self._header(block, events)
                    else:
                        self._extended(block)
        return events

    def finish(self) -> list[Event]:
        """Declare end of input; raise if the tar stopped inside a member or header."""
        if self._state == _END:
            return []
        if self._state == _HEADER and not self._buf and self._member is None and not self._pax \
                and self._long_name is None:
            # No end-of-archive marker, but every member was whole: tarfile accepts this too.
            self._state = _END
            return [ArchiveEnd(self.offset)]
        where = f" inside member {self._member.name!r}" if self._member else ""
        raise TarError(f"tar is truncated at byte {self.offset}{where}")

    # -- internals ---------------------------------------------------------
    def _header(self, block: bytes, events: list[Event]) -> None:
        if block == bytes(BLOCK):
            self._state = _END
            events.append(ArchiveEnd(self.offset - BLOCK))
            return
        info = _plain_header(block)
        if info is None:   # anything unusual: tarfile decides (and names what is wrong)
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as e:
                raise TarError(f"tar header at byte {self.offset - BLOCK} is corrupt: {e}") from None
        t = info.type
        if t in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                 tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
            if info.size > MAX_EXTENDED_HEADER:
                raise TarError(f"tar extended header at byte {self.offset - BLOCK} claims {info.size} bytes: refused")
            self._ext_type = t
            self._ext_size = info.size
            if info.size:
                self._state, self._need = _EXTENDED, _padded(info.size)
            return

        pax = {**self._pax_global, **self._pax}
        name = self._long_name if self._long_name is not None else info.name
        name = pax.get("path", name)
        linkname = pax.get("linkpath", self._long_link if self._long_link is not None else info.linkname)
        size = info.size
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                raise TarError(f"tar PAX size {pax['size']!r} of {name!r} is not a number") from None
        self._pax, self._long_name, self._long_link = {}, None, None
        kind = _KINDS.get(t, "other")
        member = MemberStart(name, size, kind, self.offset, linkname)
        self._member = member
        events.append(member)
        self._remaining = size
        self._padding = _padded(size) - size
        if size:
            self._state = _DATA
        else:
            self._finish_member(events)

    def _finish_member(self, events: list[Event]) -> None:
        assert self._member is not None
        events.append(MemberEnd(self._member.name))
        self._member = None
        if self._padding:
            self._state = _PADDING
        else:
            self._state = _HEADER
            self._need = BLOCK

    def _extended(self, block: bytes) -> None:
        payload = block[: self._ext_size]
        t = self._ext_type
        if t in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
            value = payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            if t == tarfile.GNUTYPE_LONGNAME:
                self._long_name = value
            else:
                self._long_link = value
        else:
            records = _parse_pax(payload, self.offset)
            if t == tarfile.XGLTYPE:
                self._pax_global.update(records)
            else:
                self._pax.update(records)
        self._state = _HEADER
        self._need = BLOCK


class _Header:
    __slots__ = ("name", "size", "type", "linkname")

    def __init__(self, name: str, size: int, type_: bytes, linkname: str) -> None:
        self.name, self.size, self.type, self.linkname = name, size, type_, linkname


def _plain_header(block: bytes) -> _Header | None:
    """The common case of a header, decoded the way tarfile decodes it.

    `TarInfo.frombuf` decodes every field (owner, times, devices...) and costs
    about 0.3 ms in the browser; COD tars carry three headers per instance.
    Base-256 numbers, sparse files and checksum trouble return None, and
    tarfile handles them.
    """
    size_field = block[124:136]
    if size_field[0] & 0x80:
        return None
    try:
        chksum = int(block[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
        size = int(size_field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return None
    if chksum != sum(block) - sum(block[148:156]) + 256:
        return None
    type_ = block[156:157]
    if type_ == tarfile.GNUTYPE_SPARSE:
        return None
    name = block[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    linkname = block[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    if type_ == tarfile.AREGTYPE and name.endswith("/"):
        type_ = tarfile.DIRTYPE
    if type_ == tarfile.DIRTYPE:
        name = name.rstrip("/")
    prefix = block[345:500].split(b"\0", 1)[0]
    if prefix and type_ not in tarfile.GNU_TYPES:
        name = prefix.decode("utf-8", "surrogateescape") + "/" + name
    return _Header(name, size, type_, linkname)


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _parse_pax(payload: bytes, offset: int) -> dict[str, str]:
    """PAX records: '<len> <key>=<value>\\n', len counting the whole record."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(payload) and payload[pos] != 0:
        space = payload.find(b" ", pos)
        try:
            length = int(payload[pos:space])
        except ValueError:
            raise TarError(f"tar PAX header before byte {offset} is malformed") from None
        record = payload[space + 1: pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise TarError(f"tar PAX header before byte {offset} is malformed")
        key, value = record[:-1].split(b"=", 1)
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


_CONTROL = re.compile(r"[\x00-\x1f]")


def member_name_problem(name: str) -> str | None:
    """Why a tar member name is not a plain relative path, or None when it is.

    Files are always named from validated UIDs, never from members; but a
    member that tries to climb out (`..`), start at the root, hide a Windows
    path (`\\`, `C:`) or cut a name short (NUL) is refused outright, even when
    the metadata lists it: whoever wrote it meant harm or is broken."""
    if not name:
        return "is empty"
    if "\0" in name:
        return "holds a NUL byte"
    if "\\" in name:
        return "holds a backslash"
    if name.startswith("/"):
        return "is an absolute path"
    parts = name.split("/")
    if len(parts[0]) >= 2 and parts[0][1] == ":" and parts[0][0].isalpha():
        return "starts with a drive letter"
    if any(p == ".." for p in parts):
        return "climbs out of the archive (..)"
    if any(p in ("", ".") for p in parts):
        return "has an empty or '.' path segment"
    if _CONTROL.search(name):
        return "holds a control character"
    return None
