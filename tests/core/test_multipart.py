"""MultipartReader and the Content-Type boundary parser: real WADO-RS-shaped bodies holding
the sample DICOM files, and a body full of near-boundaries, fed whole, byte by byte and
split at every cut point; truncated and malformed bodies refused with the part named."""

from __future__ import annotations

import random
import re
import tarfile

import pytest

from cod_retrieve.multipart import (BodyEnd, MultipartError, MultipartReader, PartData, PartEnd, PartStart,
                                    boundary_from_content_type, parse_content_type)

from core_helpers import SAMPLE_TAR


def _dicoms() -> list[bytes]:
    with tarfile.open(SAMPLE_TAR) as tf:
        return [tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()]


DICOMS = _dicoms()


def build_body(boundary: str, parts: list[tuple[list[str], bytes]], *, preamble: bytes = b"",
               epilogue: bytes = b"", padding: bytes = b"") -> bytes:
    """A multipart body as RFC 2046 writes it (CRLF before each delimiter)."""
    b = boundary.encode()
    out = bytearray(preamble + (b"\r\n" if preamble else b""))
    for i, (headers, data) in enumerate(parts):
        out += (b"\r\n" if i else b"") + b"--" + b + padding + b"\r\n"
        out += "".join(h + "\r\n" for h in headers).encode("latin-1") + b"\r\n" + data
    out += (b"\r\n" if parts else b"") + b"--" + b + b"--" + padding + epilogue
    return bytes(out)


def read_parts(chunks, boundary: str, **kw) -> list[tuple[dict, int | None, bytes]]:
    """Feed chunks and end(); (headers, content_length, data) per part, events checked for order."""
    reader = MultipartReader(boundary, **kw)
    parts: list[list] = []
    open_ = False
    ended = False
    for chunk in chunks:
        for ev in reader.feed(chunk):
            assert not ended
            if isinstance(ev, PartStart):
                assert not open_ and ev.number == len(parts) + 1
                parts.append([ev.headers, ev.content_length, bytearray()])
                open_ = True
            elif isinstance(ev, PartData):
                assert open_ and len(ev.data)
                parts[-1][2] += ev.data          # views die with the next feed
            elif isinstance(ev, PartEnd):
                assert open_
                open_ = False
            else:
                assert isinstance(ev, BodyEnd) and not open_
                ended = True
    assert reader.end() == [] and ended and reader.at_end
    return [(h, n, bytes(d)) for h, n, d in parts]


def every_cut(body: bytes, boundary: str, want) -> None:
    for cut in range(len(body) + 1):
        assert read_parts([body[:cut], body[cut:]], boundary) == want, cut
    assert read_parts([body[i:i + 1] for i in range(len(body))], boundary) == want


# --------------------------------------------------------------------------- Content-Type
@pytest.mark.parametrize("value, boundary", [
    ('multipart/related; type="application/dicom"; boundary=abc123', "abc123"),
    ('multipart/related; type="application/dicom"; boundary="a b:c=d/e"', "a b:c=d/e"),
    ("Multipart/Related;Boundary=XYZ;type=application/dicom", "XYZ"),
    ('multipart/related; boundary="quoted\\"inner"; type="application/dicom";', 'quoted"inner'),
    ('multipart/related ; type = "application/dicom" ; boundary = 0f3cf5c0-0025', "0f3cf5c0-0025"),
])
def test_boundary_from_content_type(value, boundary):
    assert boundary_from_content_type(value) == boundary


def test_content_type_parameters():
    media, params = parse_content_type(
        'multipart/related; type="application/dicom"; transfer-syntax=*; boundary="b"')
    assert media == "multipart/related"
    assert params == {"type": "application/dicom", "transfer-syntax": "*", "boundary": "b"}


@pytest.mark.parametrize("value, message", [
    ('multipart/related; type="application/dicom"', "has no boundary parameter"),
    ("application/dicom", "is not multipart"),
    ('multipart/related; boundary=""', "is empty"),
    ("multipart/related; boundary", "malformed parameter"),
    ("", "does not start with a type/subtype"),
    ("multipart/related; boundary=" + "x" * 201, "longer than 200"),
])
def test_content_type_refused(value, message):
    with pytest.raises(MultipartError, match=re.escape(message)):
        boundary_from_content_type(value)


# --------------------------------------------------------------------------- bodies
def dicom_parts(with_length: bool) -> list[tuple[list[str], bytes]]:
    parts = []
    for i, data in enumerate(DICOMS):
        headers = ["Content-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
                   f"Content-Location: /dicom-web/studies/1/series/2/instances/{i}"]
        if with_length:
            headers.append(f"Content-Length: {len(data)}")
        parts.append((headers, data))
    return parts


def expected(parts) -> list[tuple[dict, int | None, bytes]]:
    out = []
    for headers, data in parts:
        h = {}
        for line in headers:
            name, _, value = line.partition(":")
            h[name.strip().lower()] = value.strip()
        out.append((h, int(h["content-length"]) if "content-length" in h else None, data))
    return out


@pytest.mark.parametrize("with_length", [False, True])
def test_dicom_body(with_length):
    """Whole sample files (20 KB each): fed whole, byte by byte, and cut at every point
    within 100 bytes of a delimiter or a header block (elsewhere in the data every cut is
    alike) and at 300 random points."""
    boundary = "a8e7b0d2-DICOMweb-0123456789"
    parts = dicom_parts(with_length)
    body = build_body(boundary, parts)
    want = expected(parts)
    assert read_parts([body], boundary) == want
    assert read_parts([body[i:i + 1] for i in range(len(body))], boundary) == want
    marks = [m.start() for m in re.finditer(re.escape(b"--" + boundary.encode()), body)]
    marks += [m.start() for m in re.finditer(b"\r\n\r\n", body)]
    cuts = {c for m in marks for c in range(max(0, m - 100), min(len(body), m + 100) + 1)}
    cuts |= set(random.Random(3).sample(range(len(body)), 300))
    for cut in sorted(cuts):
        assert read_parts([body[:cut], body[cut:]], boundary) == want, cut


@pytest.mark.parametrize("with_length", [False, True])
def test_small_dicom_body_every_cut(with_length):
    """The first 1500 bytes of each sample file (their DICOM headers), at every cut point."""
    boundary = "a8e7b0d2-DICOMweb-0123456789"
    parts = [(headers, data[:1500]) for headers, data in dicom_parts(False)]
    if with_length:
        parts = [(headers + ["Content-Length: 1500"], data) for headers, data in parts]
    body = build_body(boundary, parts)
    every_cut(body, boundary, expected(parts))


# Data that ends in, starts with or holds pieces of the delimiter "\r\n--bound".
TRICKY_DATA = [
    b"",
    b"\r\n--boun",
    b"\r\n--bounD\r\n--\r\n-\r\n\r\r\n--boun\r\n",
    b"abc\r\n-bound\r--bound\n--bound\r\n - bound",
    b"\r",
    b"\r\n",
    b"\r\n-",
    b"\r\n--",
    b"\r\n--b",
    DICOMS[0][:700] + b"\r\n--boun" + DICOMS[0][700:900],
]


def test_tricky_body_every_cut():
    boundary = "bound"
    parts = [([] if i % 3 == 0 else ["Content-Type: application/octet-stream", f"X-Index: {i}"], data)
             for i, data in enumerate(TRICKY_DATA)]
    body = build_body(boundary, parts, preamble=b"preamble \r\n--boun\r\n--bounce\r\n",
                      epilogue=b"\r\nepilogue --bound--\r\n", padding=b" \t ")
    want = expected(parts)
    assert read_parts([body], boundary) == want
    every_cut(body, boundary, want)
    rng = random.Random(11)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(body)), 5))
        chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
        assert read_parts(chunks, boundary) == want


def test_first_boundary_at_byte_zero_and_empty_body():
    body = b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--"
    assert read_parts([body], "b") == [({"content-type": "text/plain"}, None, b"hi")]
    assert read_parts([b"--b--\r\n"], "b") == []
    assert read_parts([b"\r\n--b--"], "b") == []


def test_folded_and_repeated_headers():
    body = b"--b\r\nX-A: one\r\n  two\r\nX-B: 1\r\nx-b: 2\r\n\r\ndata\r\n--b--"
    assert read_parts([body], "b") == [({"x-a": "one two", "x-b": "1, 2"}, None, b"data")]


def test_data_is_handed_out_as_views_of_the_fed_chunk():
    boundary = "zz"
    body = build_body(boundary, [(["Content-Type: application/dicom"], DICOMS[0])])
    events = MultipartReader(boundary).feed(body)
    data = [ev.data for ev in events if isinstance(ev, PartData)]
    assert len(data) == 1 and data[0].obj is body and data[0] == DICOMS[0]


def test_only_a_boundary_length_is_held_back():
    """Part data is released as it comes: at most len(boundary) + 3 bytes wait for the next chunk."""
    boundary = "x" * 70
    body = build_body(boundary, [([], DICOMS[0])])
    reader = MultipartReader(boundary)
    head = body.index(DICOMS[0])
    released = 0
    for i in range(0, len(body), 1000):
        released += sum(len(ev.data) for ev in reader.feed(body[i:i + 1000]) if isinstance(ev, PartData))
        got_to = min(i + 1000, head + len(DICOMS[0]))
        if got_to > head:
            assert released >= got_to - head - (len(boundary) + 3)


# --------------------------------------------------------------------------- refused
def refused(chunks, boundary: str, match: str, **kw) -> str:
    reader = MultipartReader(boundary, **kw)
    with pytest.raises(MultipartError, match=match) as e:
        for c in chunks:
            reader.feed(c)
        reader.end()
    return str(e.value)


def test_truncated_body_names_the_part_at_every_cut():
    boundary = "bound"
    parts = [(["Content-Type: application/dicom"], d[:300]) for d in DICOMS]
    body = build_body(boundary, parts, preamble=b"pre")
    closing = body.rindex(b"\r\n--bound--")
    starts = [body.index(d) for _, d in parts]
    for cut in range(closing + len("\r\n--bound--")):
        message = refused([body[:cut]], boundary, "ended early")
        for number, start in enumerate(starts, 1):
            if start < cut <= start + 300:       # inside (or just after) that part's data
                assert f"inside part {number}," in message, (cut, message)
    assert "before its first boundary" in refused([b"pre\r\n--boun"], boundary, "ended early")
    assert "inside the headers of part 1" in refused([b"--bound\r\nContent-Ty"], boundary, "ended early")
    assert "after part 1, before the closing boundary" in refused(
        [b"--bound\r\n\r\ndata\r\n--bound"], boundary, "ended early")


def test_oversized_headers_are_refused():
    big = b"--b\r\nX-Big: " + b"y" * 20_000 + b"\r\n\r\ndata\r\n--b--"
    refused([big], "b", r"headers of multipart part 1 exceed 16384 bytes")
    refused([big[i:i + 7] for i in range(0, len(big), 7)], "b", r"part 1 exceed 16384 bytes")
    small = b"--b\r\n\r\nok\r\n--b\r\nX-A: " + b"z" * 100 + b"\r\n\r\nno\r\n--b--"
    refused([small], "b", r"headers of multipart part 2 exceed 64 bytes", max_header_bytes=64)


def test_content_length_mismatch_names_the_part():
    good = (["Content-Length: 4"], b"data")
    refused([build_body("b", [good, (["Content-Length: 5"], b"data")])], "b",
            r"part 2 holds 4 bytes but its Content-Length says 5")
    refused([build_body("b", [good, good, (["Content-Length: 3"], b"data")])], "b",
            r"part 3 holds more data than its Content-Length of 3")
    refused([build_body("b", [(["Content-Length: four"], b"data")])], "b",
            r"part 1 has a Content-Length of 'four'")


def test_malformed_bodies_are_refused():
    refused([b"--b\r\n\r\nx\r\n--bX\r\n\r\ny\r\n--b--"], "b", r"boundary after part 1 is followed by b'X")
    refused([b"--b junk\r\n\r\nx\r\n--b--"], "b", r"boundary after the preamble is followed by")
    refused([b"--b\r\n\r\nx\r\n--b-x"], "b", r"boundary after part 1 is followed by b'-x'")
    refused([b"--b\n\r\nx\r\n--b--"], "b", r"boundary after the preamble is followed by b'\\n'")
    refused([b"--b\r\nno colon here\r\n\r\nx\r\n--b--"], "b", r"header line 'no colon here' of multipart part 1")
    refused([b"--b\r\n continued\r\n\r\nx\r\n--b--"], "b", r"part 1 start with a continuation line")
    with pytest.raises(MultipartError, match="is empty"):
        MultipartReader("")
