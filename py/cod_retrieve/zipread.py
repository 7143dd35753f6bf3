"""A zip reader that never does I/O: feed it bytes front to back, get entry events back.

A zip's table of contents (the central directory) sits at its end, but an
archive fetched over HTTP should stream to disk as it arrives, so this reader
works from the local file headers alone, the way `unzip -` reads a pipe.
Like `tarstream`, the caller owns the bytes. STORED entries are handed out as
views of the fed chunks; DEFLATE entries as the bytes `zlib` produces, in
steps of at most `INFLATE_STEP`, so a bomb is refused before it is built.

Supported: methods STORED (0) and DEFLATE (8); sizes in the local header or
in a data descriptor after the data (general-purpose flag bit 3), with or
without the descriptor's signature, 32-bit or ZIP64 sizes; the ZIP64 extra
field (0x0001) in local headers; UTF-8 names (flag bit 11), the Info-ZIP
Unicode Path extra field (0x7075), cp437 otherwise.

How an entry with a data descriptor is known to end:
  * DEFLATE: the deflate stream marks its own end (`decompressobj.eof`).
  * STORED with sizes in the local header (`zip -0 -` to a pipe): those sizes.
  * STORED without sizes (Python's `zipfile` writing to an unseekable stream):
    the data is scanned for the descriptor signature `PK\\x07\\x08`, and a hit
    counts only if the CRC-32 and sizes it carries match the bytes before it
    and a zip signature follows; a descriptor without its signature cannot be
    found this way, and such an entry is reported as truncated.
The descriptor itself is told apart (signature or not, 32- or 64-bit sizes)
by the values it must hold and by the signature that must follow it.

Refused, with an `ArchiveError` naming the entry: other compression methods
(no entry is skipped silently, since a skipped DICOM file is a lost one),
encryption, CRC-32 or size mismatches, names that are not plain relative
paths (`archive_policy.name_problem`), and inflating past `Limits`.

Not seen, so not refused: symbolic links. A zip tells a symlink only by the
Unix mode in the central directory's external attributes, which comes after
all the data; a symlink entry is read here as a small file whose content is
the link target. Files are named from UIDs, never from entries, so no link is
ever created from it.

The reader stops at the first central directory (or end-of-central-directory)
record: `ArchiveEnd`. Entries that only the central directory knows about
(an archive edited in place, a self-extracting stub in front) are not seen.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from .archive_policy import ArchiveError, Budget, Limits, check_name

LOCAL_SIG = b"PK\x03\x04"
CENTRAL_SIG = b"PK\x01\x02"
END_SIG = b"PK\x05\x06"
ZIP64_END_SIG = b"PK\x06\x06"
ARCHIVE_EXTRA_SIG = b"PK\x06\x08"
DESCRIPTOR_SIG = b"PK\x07\x08"
SPLIT_MARKERS = (b"PK00", DESCRIPTOR_SIG)   # may open a (single-segment) split archive
_AFTER_ENTRY = (LOCAL_SIG, CENTRAL_SIG, END_SIG, ZIP64_END_SIG, ARCHIVE_EXTRA_SIG)
_DIRECTORY = (CENTRAL_SIG, END_SIG, ZIP64_END_SIG, ARCHIVE_EXTRA_SIG)

STORED, DEFLATED = 0, 8
INFLATE_STEP = 256 * 1024     # most bytes one decompress() call may produce
_INPUT_STEP = 64 * 1024       # compressed bytes given to one decompress() call
_LOOKAHEAD = 28               # longest descriptor (24) + the signature after it
_MAX32 = 0xFFFFFFFF

_METHOD_NAMES = {1: "Shrink", 6: "Implode", 9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard",
                 95: "xz", 96: "JPEG", 97: "WavPack", 98: "PPMd", 99: "AES encryption"}

_LOCAL = struct.Struct("<4sHHHHHIIIHH")


@dataclass(frozen=True)
class EntryStart:
    name: str
    size: int | None             # decompressed size, None until a data descriptor tells it
    compressed_size: int | None
    method: int                  # 0 stored, 8 deflate
    is_dir: bool
    offset: int = 0              # where the entry's local header starts


@dataclass(frozen=True)
class EntryData:
    data: memoryview             # decompressed; valid until the next feed(): copy what must be kept


@dataclass(frozen=True)
class EntryEnd:
    name: str
    crc32: int
    size: int


@dataclass(frozen=True)
class ArchiveEnd:
    offset: int                  # where the central directory starts


Event = EntryStart | EntryData | EntryEnd | ArchiveEnd

_SIG, _LOCAL_HEADER, _NAMES, _STORED, _INFLATE, _SCAN, _DESCRIPTOR, _END = range(8)
_BUFFERED = (_SIG, _LOCAL_HEADER, _NAMES, _DESCRIPTOR)
_find_descriptor = re.compile(re.escape(DESCRIPTOR_SIG)).search


class ZipReader:
    """Incremental reader of a zip, front to back. `offset` counts the bytes consumed."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.offset = 0
        self._budget = Budget(limits, "zip entry")
        self._state = _SIG
        self._buf = bytearray()
        self._need = 4
        self._held = b""            # STORED scan: bytes that may start a descriptor
        self._entry: EntryStart | None = None
        self._flags = 0
        self._zip64 = False
        self._header_crc = 0
        self._header_size = 0
        self._remaining: int | None = 0
        self._inflater = None
        self._crc = 0
        self._size = 0
        self._consumed = 0           # compressed bytes of the current entry
        self._entries = 0
        self._last_name = ""

    @property
    def at_end(self) -> bool:
        return self._state == _END

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        events: list[Event] = []
        view = memoryview(data).cast("B")
        pos, n = 0, len(view)
        while pos < n:
            state = self._state
            before = pos
            if state == _STORED:
                take = min(self._remaining, n - pos)
                self._emit(view[pos:pos + take], take, events)
                pos += take
                self._remaining -= take
                self.offset += take
                if self._remaining == 0:
                    self._data_done(events)
            elif state == _INFLATE:
                pos = self._inflate(view, pos, events)
            elif state == _SCAN:
                pos = self._scan(view, pos, events)
            elif state == _END:     # the central directory and what follows: counted only
                pos = n
                self.offset += n - before
            else:
                take = min(self._need - len(self._buf), n - pos)
                self._buf += view[pos:pos + take]
                pos += take
                self.offset += take
                self._buffered(events)
        return events

    def end(self) -> list[Event]:
        """Declare end of input; raise unless the central directory was reached."""
        if self._state == _END:
            return []
        if self._state == _DESCRIPTOR and self._match_descriptor(bytes(self._buf), False, need_next=False):
            where = f"after zip entry {self._entry.name!r}, in the header that follows it"
        elif self._entry is not None:
            where = f"inside zip entry {self._entry.name!r}"
            if self._state == _DESCRIPTOR:
                where += " (in its data descriptor)"
            elif self._state == _SCAN:
                where += " (no data descriptor found after its data)"
        elif self._state in (_LOCAL_HEADER, _NAMES):
            where = f"inside the local header at byte {self.offset - len(self._buf)}"
        elif self._entries:
            where = f"after {self._entries} entries, before the central directory"
        else:
            where = "before any entry"
        raise ArchiveError(f"zip is truncated: it ended at byte {self.offset} {where}")

    # -- headers -----------------------------------------------------------
    def _buffered(self, events: list[Event]) -> None:
        while self._state in _BUFFERED and len(self._buf) >= self._need:
            state = self._state
            if state == _SIG:
                self._signature(events)
            elif state == _LOCAL_HEADER:
                nlen, xlen = struct.unpack_from("<HH", self._buf, 26)
                self._state, self._need = _NAMES, 30 + nlen + xlen
            elif state == _NAMES:
                self._start_entry(events)
            else:
                self._descriptor(events)

    def _signature(self, events: list[Event]) -> None:
        sig = bytes(self._buf[:4])
        at = self.offset - len(self._buf)
        if sig == LOCAL_SIG:
            self._state, self._need = _LOCAL_HEADER, 30
        elif sig in _DIRECTORY:
            self._state = _END
            self._buf = bytearray()
            events.append(ArchiveEnd(at))
        elif at == 0 and sig in SPLIT_MARKERS:
            del self._buf[:4]
        else:
            what = "is not a zip (no local file header at its start)" if at == 0 else \
                f"has {sig!r} at byte {at} where a local file header or the central directory belongs"
            after = f" (after zip entry {self._last_name!r})" if self._entries else ""
            raise ArchiveError(f"zip {what}{after}")

    def _start_entry(self, events: list[Event]) -> None:
        head = bytes(self._buf)
        assert len(head) == self._need, "descriptor lookahead never reaches past a signature"
        self._buf = bytearray()
        at = self.offset - len(head)
        (_, _version, flags, method, _time, _date, crc, csize, usize, nlen, xlen) = _LOCAL.unpack_from(head)
        raw_name = head[30:30 + nlen]
        extras = _extra_fields(head[30 + nlen:30 + nlen + xlen])
        name = _decode_name(raw_name, flags, extras.get(0x7075), at)
        self._last_name = name
        check_name(name, "zip entry")
        if flags & 0x41:
            raise ArchiveError(f"zip entry {name!r} is encrypted: not supported")
        if method not in (STORED, DEFLATED):
            label = _METHOD_NAMES.get(method, "unknown")
            raise ArchiveError(f"zip entry {name!r} uses compression method {method} ({label}); "
                               "only stored (0) and deflate (8) are supported")
        zip64 = extras.get(0x0001)
        self._zip64 = zip64 is not None
        if zip64 is not None:
            usize, csize = _zip64_sizes(zip64, usize, csize, name)
        descriptor = bool(flags & 0x08)
        if descriptor and method == STORED and 0 < csize < _MAX32:
            known = True          # `zip -0 -` to a pipe: sizes up front and a descriptor after
        else:
            known = not descriptor
        if known and (usize == _MAX32 or csize == _MAX32) and zip64 is None:
            raise ArchiveError(f"zip entry {name!r} has ZIP64 size markers but no ZIP64 extra field")
        if known and method == STORED and usize != csize:
            raise ArchiveError(f"zip entry {name!r} is stored but its sizes differ "
                               f"({csize} stored, {usize} announced)")
        entry = EntryStart(name, usize if known else None, csize if known else None, method,
                           name.endswith("/"), at)
        self._budget.start(name, entry.size)
        self._entry = entry
        self._flags = flags
        self._header_crc, self._header_size = crc, usize
        self._crc = self._size = self._consumed = 0
        self._entries += 1
        events.append(entry)
        if method == DEFLATED:
            self._inflater = zlib.decompressobj(-15)
            self._remaining = csize if known else None
            self._state = _INFLATE
            if known and csize == 0:
                raise ArchiveError(f"zip entry {name!r} is deflated but its compressed size is 0")
        elif known:
            self._remaining = csize
            self._state = _STORED
            if csize == 0:
                self._data_done(events)
        else:
            self._held = b""
            self._state = _SCAN

    # -- data --------------------------------------------------------------
    def _emit(self, data: memoryview, consumed: int, events: list[Event]) -> None:
        self._consumed += consumed
        if not len(data) and not consumed:
            return
        self._budget.add(len(data), consumed)
        if len(data):
            self._crc = zlib.crc32(data, self._crc)
            self._size += len(data)
            events.append(EntryData(data))

    def _inflate(self, view: memoryview, pos: int, events: list[Event]) -> int:
        d = self._inflater
        n = len(view)
        end = n if self._remaining is None else pos + min(self._remaining, n - pos)
        start = pos
        while pos < end and not d.eof:
            piece = view[pos:min(end, pos + _INPUT_STEP)]
            inp: bytes | memoryview = piece
            while True:
                try:
                    out = d.decompress(inp, INFLATE_STEP)
                except zlib.error as e:
                    raise ArchiveError(f"zip entry {self._entry.name!r}: its deflate data is corrupt "
                                       f"({e})") from None
                left = d.unused_data if d.eof else d.unconsumed_tail
                self._emit(memoryview(out), len(inp) - len(left), events)
                if d.eof:
                    break
                inp = d.unconsumed_tail
                if not inp and len(out) < INFLATE_STEP:
                    break
            pos += len(piece) - (len(d.unused_data) if d.eof else 0)
        self.offset += pos - start
        if self._remaining is not None:
            self._remaining -= pos - start
        name = self._entry.name
        if d.eof:
            if self._remaining:
                raise ArchiveError(f"zip entry {name!r}: its deflate data ends {self._remaining} bytes "
                                   "before its compressed size")
            self._inflater = None
            self._data_done(events)
        elif self._remaining == 0:
            raise ArchiveError(f"zip entry {name!r}: its deflate data is incomplete (the stream does "
                               f"not end within its compressed size of {self._consumed} bytes)")
        return pos

    def _scan(self, view: memoryview, pos: int, events: list[Event]) -> int:
        """STORED data of unknown size: up to a descriptor that matches what came before it."""
        n = len(view)
        if self._held:
            # Bytes held back from the last chunk, seen together with enough of this one
            # to judge any descriptor that starts in them.
            k = len(self._held)
            whole = n - pos <= _LOOKAHEAD + 4
            probe = memoryview(self._held + bytes(view[pos:pos + _LOOKAHEAD + 4]))
            self._held = b""
            at, found = self._scan_buffer(probe, 0, len(probe) if whole else k, events)
            if found:
                used = max(0, at - k)
                self.offset += used
                self._entry_done(events)
                if at < k:      # the descriptor and the next signature were both held back
                    self._buf = bytearray(probe[at:k])
                    self._buffered(events)
                return pos + used
            if whole:
                self._held = bytes(probe[at:])
                self.offset += n - pos
                return n
        at, found = self._scan_buffer(view, pos, n, events)
        if found:
            self.offset += at - pos
            self._entry_done(events)
            return at
        self._held = bytes(view[at:])
        self.offset += n - pos
        return n

    def _scan_buffer(self, buf: memoryview, s: int, stop: int, events: list[Event]) -> tuple[int, bool]:
        """Emit buf[s:] up to a matching descriptor starting before `stop`.

        Returns (index after the descriptor, True), or (index of the first byte
        not emitted, False): bytes from there on may begin a descriptor."""
        n = len(buf)
        while True:
            m = _find_descriptor(buf, s)
            if m is None or m.start() >= stop:
                keep = stop if stop < n else max(s, _partial_sig_at_end(buf, s))
                self._emit(buf[s:keep], keep - s, events)
                return keep, False
            p = m.start()
            self._emit(buf[s:p], p - s, events)
            if n - p < _LOOKAHEAD:
                return p, False
            length = self._match_descriptor(buf[p:p + _LOOKAHEAD], sig_only=True)
            if length:
                return p + length, True
            self._emit(buf[p:p + 1], 1, events)
            s = p + 1

    def _data_done(self, events: list[Event]) -> None:
        if self._flags & 0x08:
            self._state, self._need, self._buf = _DESCRIPTOR, _LOOKAHEAD, bytearray()
            return
        name = self._entry.name
        if self._size != self._header_size:
            raise ArchiveError(f"zip entry {name!r} holds {self._size} bytes but its header says "
                               f"{self._header_size}")
        if self._crc != self._header_crc:
            raise ArchiveError(f"zip entry {name!r} fails its CRC-32 check (data {self._crc:08x}, "
                               f"header {self._header_crc:08x})")
        self._entry_done(events)

    def _entry_done(self, events: list[Event]) -> None:
        entry = self._entry
        events.append(EntryEnd(entry.name, self._crc, self._size))
        self._entry = None
        self._state, self._need = _SIG, 4

    def _descriptor(self, events: list[Event]) -> None:
        block = bytes(self._buf)
        length = self._match_descriptor(block, sig_only=False)
        if not length:
            raise ArchiveError(self._descriptor_mismatch(block))
        self._buf = bytearray(block[length:])
        self._entry_done(events)

    def _match_descriptor(self, block: bytes | memoryview, sig_only: bool, need_next: bool = True) -> int:
        """Length of the data descriptor at the start of `block` that matches the entry, or 0.

        With `need_next`, a zip signature must follow it (this tells apart the forms
        whose fields can read alike, such as 32- and 64-bit sizes of an empty entry)."""
        block = bytes(block)
        forms = [(True, True), (True, False), (False, True), (False, False)]
        if not self._zip64:
            forms = [(True, False), (True, True), (False, False), (False, True)]
        for signed, wide in forms:
            if sig_only and not signed:
                continue
            if signed and not block.startswith(DESCRIPTOR_SIG):
                continue
            start = 4 if signed else 0
            length = start + (20 if wide else 12)
            if len(block) < length:
                continue
            crc, csize, usize = struct.unpack_from("<IQQ" if wide else "<III", block, start)
            if (crc, csize, usize) == (self._crc, self._consumed, self._size) \
                    and (not need_next or block[length:length + 4] in _AFTER_ENTRY):
                return length
        return 0

    def _descriptor_mismatch(self, block: bytes) -> str:
        signed = block.startswith(DESCRIPTOR_SIG)
        start = 4 if signed else 0
        crc, csize, usize = struct.unpack_from("<IQQ" if self._zip64 else "<III", block, start)
        name = self._entry.name
        if crc != self._crc:
            return (f"zip entry {name!r} fails its CRC-32 check (data {self._crc:08x}, "
                    f"data descriptor {crc:08x})")
        return (f"zip entry {name!r} does not match its data descriptor (data: {self._consumed} bytes "
                f"compressed, {self._size} bytes; descriptor: {csize} and {usize})")


def _extra_fields(extra: bytes) -> dict[int, bytes]:
    """Extra field records by id; a malformed tail (some aligners pad with zeros) is ignored."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos + 4 <= len(extra):
        fid, size = struct.unpack_from("<HH", extra, pos)
        if pos + 4 + size > len(extra):
            break
        out.setdefault(fid, extra[pos + 4:pos + 4 + size])
        pos += 4 + size
    return out


def _zip64_sizes(field: bytes, usize: int, csize: int, name: str) -> tuple[int, int]:
    """Sizes from a local header's ZIP64 extra field.

    The format requires both sizes in a local header's field; older writers
    put in only those marked 0xFFFFFFFF, in order, and that is read too."""
    if len(field) >= 16:
        big_u, big_c = struct.unpack_from("<QQ", field)
        return (big_u if usize == _MAX32 else usize), (big_c if csize == _MAX32 else csize)
    values = [v for (v,) in struct.iter_unpack("<Q", field[:len(field) // 8 * 8])]
    if usize == _MAX32:
        if not values:
            raise ArchiveError(f"zip entry {name!r} has a ZIP64 extra field without its size")
        usize = values.pop(0)
    if csize == _MAX32:
        if not values:
            raise ArchiveError(f"zip entry {name!r} has a ZIP64 extra field without its compressed size")
        csize = values.pop(0)
    return usize, csize


def _decode_name(raw: bytes, flags: int, unicode_extra: bytes | None, at: int) -> str:
    if flags & 0x800:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ArchiveError(f"zip entry name {raw!r} at byte {at} is flagged UTF-8 but is not") from None
    if unicode_extra is not None and len(unicode_extra) >= 5 and unicode_extra[0] == 1 \
            and struct.unpack_from("<I", unicode_extra, 1)[0] == zlib.crc32(raw):
        try:
            return unicode_extra[5:].decode("utf-8")
        except UnicodeDecodeError:
            pass    # a broken Unicode Path field: the header's own name stands
    return raw.decode("cp437")


def _partial_sig_at_end(buf: bytes | memoryview, start: int) -> int:
    """Where a suffix of buf[start:] that could begin the descriptor signature starts (len if none)."""
    n = len(buf)
    for i in range(max(start, n - 3), n):
        if DESCRIPTOR_SIG.startswith(bytes(buf[i:])):
            return i
    return n
