"""A multipart/related reader that never does I/O: feed it bytes, get part events back.

DICOMweb WADO-RS answers a series or study request with one HTTP body,
`multipart/related; type="application/dicom"; boundary=...`, holding one DICOM
instance per part (RFC 2046 section 5.1, RFC 2387). Like `tarstream`, the
caller owns the bytes: part data is handed out as views of the fed chunks, so
a whole study streams through without being held. Only a part's header block
(bounded) and fewer than `len(boundary) + 4` bytes that might begin the next
delimiter are ever kept back; those few held-back bytes are handed out as
views of a small copy once they turn out to be data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import CodError

# Part headers are a few short lines (Content-Type, Content-Location, maybe
# Content-Length); anything near this is not a DICOMweb server talking.
MAX_PART_HEADER = 16 * 1024
# Whitespace allowed between a boundary and its CRLF ("transport padding").
MAX_PADDING = 1024
MAX_BOUNDARY = 200


class MultipartError(CodError):
    """A multipart body is truncated, malformed, or disagrees with its own headers."""


@dataclass(frozen=True)
class PartStart:
    headers: dict[str, str]       # names lower-cased, values stripped
    content_length: int | None    # from the part's Content-Length header, if any
    number: int = 1               # 1 for the first part, as error messages count


@dataclass(frozen=True)
class PartData:
    data: memoryview              # valid until the next feed(): copy what must be kept


@dataclass(frozen=True)
class PartEnd:
    pass


@dataclass(frozen=True)
class BodyEnd:
    pass


Event = PartStart | PartData | PartEnd | BodyEnd

# Tokens and quoted strings of RFC 9110 section 5.6, enough for media type parameters.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# Unquoted values are read up to ';' or white space: servers send `type=application/dicom`
# although '/' is not a token character.
_PARAM = re.compile(r"\s*;\s*(" + _TOKEN + r")\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^\s;\"]+)\s*")
_MEDIA = re.compile(r"\s*(" + _TOKEN + r")/(" + _TOKEN + r")\s*")
_QUOTED_PAIR = re.compile(r"\\(.)")


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """`type/subtype` (lower-cased) and its parameters (names lower-cased, values unquoted).

    Written out rather than taken from `email` so that every refusal says
    which part of the header is wrong."""
    m = _MEDIA.match(value)
    if not m:
        raise MultipartError(f"Content-Type {value!r} does not start with a type/subtype")
    media = f"{m.group(1)}/{m.group(2)}".lower()
    params: dict[str, str] = {}
    pos = m.end()
    while pos < len(value):
        p = _PARAM.match(value, pos)
        if not p:
            if not value[pos:].strip(" \t;"):   # a trailing ';' is harmless
                break
            raise MultipartError(f"Content-Type {value!r} has a malformed parameter at {value[pos:]!r}")
        raw = p.group(2)
        if raw.startswith('"'):
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1])
        params[p.group(1).lower()] = raw
        pos = p.end()
    return media, params


def boundary_from_content_type(value: str) -> str:
    """The boundary of a `multipart/...` Content-Type, quoted or not.

    Raises when the body is not multipart or names no usable boundary: a WADO-RS
    answer without one cannot be split into instances at all."""
    media, params = parse_content_type(value)
    if not media.startswith("multipart/"):
        raise MultipartError(f"Content-Type {value!r} is not multipart (got {media})")
    boundary = params.get("boundary")
    if boundary is None:
        raise MultipartError(f"Content-Type {value!r} has no boundary parameter")
    problem = _boundary_problem(boundary)
    if problem:
        raise MultipartError(f"boundary {boundary!r} in Content-Type {value!r} {problem}")
    return boundary


def _boundary_problem(boundary: str) -> str | None:
    if not boundary:
        return "is empty"
    if len(boundary) > MAX_BOUNDARY:
        return f"is longer than {MAX_BOUNDARY} characters"
    if not boundary.isascii() or any(not (32 <= ord(c) < 127) for c in boundary):
        return "holds characters other than printable ASCII"
    return None


_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _DATA, _DONE = range(5)


class MultipartReader:
    """Incremental reader of one multipart body.

    The body is read as if it started with CRLF, so a boundary on the very
    first line and a boundary after a preamble are the same delimiter
    (`CRLF--boundary`). Everything before the first delimiter (preamble) and
    after the closing one (epilogue) is skipped. `offset` counts the bytes
    consumed.
    """

    def __init__(self, boundary: str, *, max_header_bytes: int = MAX_PART_HEADER) -> None:
        problem = _boundary_problem(boundary)
        if problem:
            raise MultipartError(f"multipart boundary {boundary!r} {problem}")
        self.offset = 0
        self._delim = b"\r\n--" + boundary.encode("ascii")
        self._find = re.compile(re.escape(self._delim)).search
        self._max_header = max_header_bytes
        self._state = _PREAMBLE
        self._held = b"\r\n"          # the virtual CRLF in front of the body
        self._line = bytearray()      # after a delimiter, or a part's header block
        self._number = 0              # parts started so far
        self._length: int | None = None
        self._seen = 0                # data bytes of the current part

    @property
    def at_end(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        events: list[Event] = []
        view = memoryview(data).cast("B")
        pos, n = 0, len(view)
        while pos < n:
            state = self._state
            if state in (_PREAMBLE, _DATA):
                pos = self._scan(view, pos, events)
            elif state == _AFTER_DELIMITER:
                pos = self._after_delimiter(view, pos, events)
            elif state == _HEADERS:
                pos = self._headers(view, pos, events)
            else:   # epilogue: counted, never interpreted
                pos = n
        self.offset += n
        return events

    def end(self) -> list[Event]:
        """Declare end of input; raise unless the closing boundary was seen."""
        if self._state == _DONE:
            return []
        if self._state == _PREAMBLE:
            where = "before its first boundary (is this the right boundary?)"
        elif self._state == _HEADERS:
            where = f"inside the headers of part {self._number}"
        elif self._state == _DATA:
            where = f"inside part {self._number}, after {self._seen + len(self._held)} bytes of its data"
        elif self._number == 0:
            where = "right after its first boundary"
        else:
            where = f"after part {self._number}, before the closing boundary"
        raise MultipartError(f"multipart body ended early at byte {self.offset}: {where}")

    # -- internals ---------------------------------------------------------
    def _scan(self, view: memoryview, pos: int, events: list[Event]) -> int:
        """Preamble or part data up to the next delimiter; returns the new position."""
        delim, size = self._delim, len(self._delim)
        n = len(view)
        if self._held:
            # Does a delimiter start in the held-back bytes? Look at them together with
            # just enough of the new chunk to see one whole delimiter.
            k = len(self._held)
            probe = self._held + bytes(view[pos:pos + size - 1])
            at = probe.find(delim)
            if 0 <= at < k:
                self._held = b""
                self._data(memoryview(probe)[:at], events)
                self._delimiter(events)
                return pos + at + size - k
            if len(probe) - k < size - 1:
                # The chunk was too short to decide: all of it now sits in the probe.
                keep = _partial_at_end(probe, delim)
                self._held = probe[keep:]
                self._data(memoryview(probe)[:keep], events)
                return n
            held, self._held = self._held, b""
            self._data(memoryview(held), events)
        m = self._find(view, pos)
        if m:
            self._data(view[pos:m.start()], events)
            self._delimiter(events)
            return m.end()
        tail_from = max(pos, n - (size - 1))
        keep = tail_from + _partial_at_end(bytes(view[tail_from:]), delim)
        self._data(view[pos:keep], events)
        self._held = bytes(view[keep:])
        return n

    def _data(self, data: memoryview, events: list[Event]) -> None:
        if self._state != _DATA or not len(data):
            return   # preamble bytes are dropped
        self._seen += len(data)
        if self._length is not None and self._seen > self._length:
            raise MultipartError(f"multipart part {self._number} holds more data than its "
                                 f"Content-Length of {self._length} bytes")
        events.append(PartData(data))

    def _delimiter(self, events: list[Event]) -> None:
        if self._state == _DATA:
            if self._length is not None and self._seen != self._length:
                raise MultipartError(f"multipart part {self._number} holds {self._seen} bytes "
                                     f"but its Content-Length says {self._length}")
            events.append(PartEnd())
        self._state = _AFTER_DELIMITER
        self._line = bytearray()

    def _after_delimiter(self, view: memoryview, pos: int, events: list[Event]) -> int:
        """`--` closes the body; otherwise optional whitespace, then CRLF, then a part."""
        n = len(view)
        line = self._line
        while pos < n:
            b = view[pos]
            line.append(b)
            pos += 1
            if line[0] == 0x2D:                       # '-'
                if len(line) == 1:
                    continue
                if line[1] != 0x2D:
                    break
                self._state = _DONE
                events.append(BodyEnd())
                return pos
            if b == 0x0A:                             # LF: the line must be [ \t]* CRLF
                if line[-2:] != b"\r\n" or line[:-2].strip(b" \t"):
                    break
                self._number += 1
                self._state = _HEADERS
                self._line = bytearray()
                return pos
            if (len(line) >= 2 and line[-2] == 0x0D) or b not in b" \t\r" or len(line) > MAX_PADDING:
                break
        else:
            return pos
        after = f"part {self._number}" if self._number else "the preamble"
        raise MultipartError(f"multipart boundary after {after} is followed by {bytes(line[:40])!r}, "
                             "not by CRLF or '--' (the boundary string inside the data?)")

    def _headers(self, view: memoryview, pos: int, events: list[Event]) -> int:
        """Collect a part's header block (bounded) up to the empty line that ends it."""
        line = self._line
        before = len(line)
        line += view[pos:pos + self._max_header + 4 - before]
        if line.startswith(b"\r\n"):
            end = 2
        else:
            at = line.find(b"\r\n\r\n", max(0, before - 3))
            if at < 0 or at > self._max_header:
                if len(line) > self._max_header:
                    raise MultipartError(f"headers of multipart part {self._number} exceed "
                                         f"{self._max_header} bytes")
                return len(view)
            end = at + 4
        headers = _parse_headers(bytes(line[:end - 4]) if end > 2 else b"", self._number)
        length = None
        if "content-length" in headers:
            raw = headers["content-length"]
            if not raw.isdigit():
                raise MultipartError(f"multipart part {self._number} has a Content-Length of {raw!r}, "
                                     "not a number")
            length = int(raw)
        self._length, self._seen = length, 0
        self._line = bytearray()
        self._state = _DATA
        events.append(PartStart(headers, length, self._number))
        return pos + end - before


def _partial_at_end(buf: bytes, delim: bytes) -> int:
    """Index where the longest suffix of `buf` that starts `delim` begins (len(buf) if none)."""
    start = max(0, len(buf) - (len(delim) - 1))
    i = buf.find(b"\r", start)
    while i >= 0:
        if delim.startswith(buf[i:]):
            return i
        i = buf.find(b"\r", i + 1)
    return len(buf)


def _parse_headers(block: bytes, number: int) -> dict[str, str]:
    """RFC 5322-style header lines; folded lines are joined, repeated names joined by ', '."""
    headers: dict[str, str] = {}
    last: str | None = None
    if not block:
        return headers
    for raw in block.decode("latin-1").split("\r\n"):
        if raw[:1] in (" ", "\t"):
            if last is None:
                raise MultipartError(f"headers of multipart part {number} start with a continuation line")
            headers[last] = (headers[last] + " " + raw.strip()).strip()
            continue
        name, sep, value = raw.partition(":")
        name = name.strip().lower()
        if not sep or not name or not re.fullmatch(_TOKEN, name):
            raise MultipartError(f"header line {raw[:80]!r} of multipart part {number} is malformed")
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
        last = name
    return headers
