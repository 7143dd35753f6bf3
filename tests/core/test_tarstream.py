"""TarReader and SpanReader against real tars (tarfile's, and the COD writer's sample),
fed whole, byte by byte, and split at every possible cut point."""

from __future__ import annotations

import io
import multiprocessing
import os
import random
import tarfile
import zlib

import pytest

from cod_retrieve import TarError
from cod_retrieve.metadata import Instance, parse_series_metadata
from cod_retrieve.spans import SpanReader, coalesce
from cod_retrieve.tarstream import ArchiveEnd, MemberData, MemberEnd, MemberStart, TarReader

from core_helpers import SAMPLE_META, SAMPLE_SERIES, SAMPLE_STUDY, SAMPLE_TAR, build_tar

SAMPLE = SAMPLE_TAR.read_bytes()

_KIND = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir",
         tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "link"}


def expected_members(raw: bytes) -> list[tuple]:
    """(name, kind, data offset, size, linkname, bytes) per member, as tarfile reads them."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        for ti in tf.getmembers():
            data = tf.extractfile(ti).read() if ti.isfile() else b""
            out.append((ti.name, _KIND[ti.type], ti.offset_data, ti.size if ti.isfile() else 0,
                        ti.linkname, data))
    return out


def run_reader(reader, chunks, digest: bool = False) -> tuple[list[tuple], list]:
    """Feed chunks; collect whole members as expected_members() shapes them. With
    ``digest`` the data is kept as (length, crc32) - no copies, for the cut-point loops."""
    members: list[list] = []
    other: list = []
    open_ = None
    for chunk in chunks:
        for ev in reader.feed(chunk):
            if isinstance(ev, MemberStart):
                assert open_ is None
                open_ = [ev.name, ev.kind, ev.offset, ev.size, ev.linkname, (0, 0) if digest else bytearray()]
            elif isinstance(ev, MemberData):
                assert open_ is not None
                if digest:
                    n, c = open_[5]
                    open_[5] = (n + len(ev.data), zlib.crc32(ev.data, c))
                else:
                    open_[5] += bytes(ev.data)   # views die with the next feed
            elif isinstance(ev, MemberEnd):
                assert open_ is not None and ev.name == open_[0]
                members.append(open_)
                open_ = None
            else:
                other.append(ev)
    if isinstance(reader, TarReader):
        other += reader.finish()
    assert open_ is None
    return [(n, k, o, s, ln, d if digest else bytes(d)) for n, k, o, s, ln, d in members], other


def digested(members: list[tuple]) -> list[tuple]:
    return [(n, k, o, s, ln, (len(d), zlib.crc32(d))) for n, k, o, s, ln, d in members]


def tar_members(raw, chunks, digest=False):
    members, other = run_reader(TarReader(), chunks, digest)
    assert len([e for e in other if isinstance(e, ArchiveEnd)]) == 1
    return members


def all_cuts(raw: bytes):
    """Every split into two chunks (zero-copy views of ``raw``)."""
    view = memoryview(raw)
    for cut in range(len(raw) + 1):
        yield cut, [view[:cut], view[cut:]]


def _lean_run(reader, chunks) -> list[tuple]:
    """run_reader(..., digest=True) trimmed for the cut-point loops (tens of thousands of runs)."""
    out = []
    name = None
    for chunk in chunks:
        for ev in reader.feed(chunk):
            t = type(ev)
            if t is MemberData:
                n += len(ev.data)
                c = zlib.crc32(ev.data, c)
            elif t is MemberStart:
                assert name is None
                name, head, n, c = ev.name, (ev.name, ev.kind, ev.offset, ev.size, ev.linkname), 0, 0
            elif t is MemberEnd:
                assert ev.name == name
                out.append(head + ((n, c),))
                name = None
            else:
                out.append(ev)
    if type(reader) is TarReader:
        out += reader.finish()
    assert name is None
    return out


def _cut_range_failures(kind: str, raw: bytes, want, lo: int, hi: int, extra=None) -> list[int]:
    view = memoryview(raw)
    bad = []
    for cut in range(lo, hi):
        try:
            if kind == "tar":
                got = _lean_run(TarReader(), (view[:cut], view[cut:]))
                ok = got[:-1] == want and type(got[-1]) is ArchiveEnd
            else:
                insts, start = extra
                ok = _lean_run(SpanReader(insts, start), (view[:cut], view[cut:])) == want
        except Exception:   # noqa: BLE001 - any exception is a failure at this cut
            ok = False
        if not ok:
            bad.append(cut)
            if len(bad) > 5:
                break
    return bad


def check_every_cut(kind: str, raw: bytes, want, extra=None) -> None:
    """Split ``raw`` at every cut point 0..len (two chunks); spread over the CPUs."""
    n = len(raw) + 1
    workers = min(4, os.cpu_count() or 1) if n > 3000 else 1
    if workers == 1:
        bad = _cut_range_failures(kind, raw, want, 0, n, extra)
    else:
        from concurrent.futures import ProcessPoolExecutor
        step = -(-n // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as ex:
            futs = [ex.submit(_cut_range_failures, kind, raw, want, lo, min(n, lo + step), extra)
                    for lo in range(0, n, step)]
            bad = sorted(c for f in futs for c in f.result())
    assert not bad, f"wrong result when split at byte(s) {bad[:6]}"


# -- tars made by tarfile -----------------------------------------------------------------

def _data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


LONG = "instances/" + "1.2.840." * 16 + "12345.dcm"      # > 100 characters
assert len(LONG) > 100


def _links():
    d = tarfile.TarInfo("instances")
    d.type = tarfile.DIRTYPE
    s = tarfile.TarInfo("instances/link.dcm")
    s.type, s.linkname = tarfile.SYMTYPE, "/etc/passwd"
    h = tarfile.TarInfo("instances/hard.dcm")
    h.type, h.linkname = tarfile.LNKTYPE, "instances/a.dcm"
    return [d, s, h]


CASES = {
    "ustar": (tarfile.USTAR_FORMAT, [("instances/a.dcm", _data(700, 1)), ("instances/b.dcm", _data(1, 2))]),
    "pax-long": (tarfile.PAX_FORMAT, [(LONG, _data(1000, 3)), ("short.dcm", _data(513, 4))]),
    "gnu-long": (tarfile.GNU_FORMAT, [(LONG, _data(300, 5)), (LONG + "2", _data(511, 6))]),
    "empty-member": (tarfile.PAX_FORMAT, [("instances/empty.dcm", b""), ("instances/x.dcm", _data(10, 7))]),
    "exactly-512": (tarfile.USTAR_FORMAT, [("instances/512.dcm", _data(512, 8)), ("instances/1024.dcm", _data(1024, 9))]),
    "links": (tarfile.PAX_FORMAT, [("instances/a.dcm", _data(20, 10))] + _links()),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    fmt, members = CASES[request.param]
    raw, _ = build_tar(members, fmt, strip_record_padding=True)   # fewer cut points
    return raw, expected_members(raw)


def test_whole(case):
    raw, want = case
    assert tar_members(raw, [raw]) == want


def test_byte_by_byte(case):
    raw, want = case
    assert tar_members(raw, [raw[i:i + 1] for i in range(len(raw))]) == want


def test_every_cut_point(case):
    raw, want = case
    check_every_cut("tar", raw, digested(want))


def test_pax_size_record_is_honoured():
    """A member > 8 GiB cannot be written cheaply; instead a PAX 'size' record that
    disagrees with the ustar field must win, as tarfile lets it."""
    body = _data(2000, 11)
    ti = tarfile.TarInfo("instances/big.dcm")
    ti.size = 2000
    ti.pax_headers = {"size": "2000"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(ti, io.BytesIO(body))
    raw = bytearray(buf.getvalue()[:1536 + 2048 + 1024])   # no record padding: fewer cut points
    # zero the ustar size field of the real header (the second header block) and fix its checksum
    hdr = 1024
    raw[hdr + 124:hdr + 136] = b"00000000000\0"
    raw[hdr + 148:hdr + 156] = b"        "
    chk = sum(raw[hdr:hdr + 512])
    raw[hdr + 148:hdr + 156] = b"%06o\0 " % chk
    raw = bytes(raw)
    want = expected_members(raw)
    assert want[0][3] == 2000 and want[0][5] == body
    assert tar_members(raw, [raw]) == want
    check_every_cut("tar", raw, digested(want))


def test_many_members():
    members = [(f"instances/1.2.3.{i}.dcm", _data(i * 37 % 1500, i)) for i in range(300)]
    raw, _ = build_tar(members)
    want = expected_members(raw)
    assert len(want) == 300
    assert tar_members(raw, [raw]) == want
    rnd = random.Random(0)
    chunks, pos = [], 0
    while pos < len(raw):
        n = rnd.choice([1, 7, 511, 512, 513, 4096, 70000])
        chunks.append(raw[pos:pos + n])
        pos += n
    assert tar_members(raw, chunks) == want


def test_kinds_reported():
    fmt, members = CASES["links"]
    raw, _ = build_tar(members, fmt)
    got = {m[0]: (m[1], m[4]) for m in tar_members(raw, [raw])}
    assert got["instances"] == ("dir", "")
    assert got["instances/link.dcm"] == ("symlink", "/etc/passwd")
    assert got["instances/hard.dcm"] == ("link", "instances/a.dcm")
    assert got["instances/a.dcm"] == ("file", "")


def test_offset_counts_everything():
    raw, _ = build_tar([("a", b"x" * 10)])
    r = TarReader()
    r.feed(raw[:700])
    assert r.offset == 700
    r.feed(raw[700:])
    assert r.offset == len(raw) and r.at_end


# -- the real sample tar (written by the COD writer) ---------------------------------------

def test_sample_offsets_equal_metadata():
    md = parse_series_metadata(SAMPLE_META.read_bytes(), SAMPLE_STUDY, SAMPLE_SERIES)
    members = tar_members(SAMPLE, [SAMPLE])
    assert members == expected_members(SAMPLE)
    got = {m[0]: (m[2], m[2] + m[3]) for m in members}
    assert got == {i.member: (i.start_byte, i.end_byte) for i in md.instances}
    assert [m[2] for m in members] == [1536, 23552, 45568]


def test_sample_byte_by_byte():
    assert tar_members(SAMPLE, [SAMPLE[i:i + 1] for i in range(len(SAMPLE))]) == expected_members(SAMPLE)


def test_sample_every_cut_point():
    check_every_cut("tar", SAMPLE, digested(expected_members(SAMPLE)))


# -- broken tars --------------------------------------------------------------------------

def test_truncated_tar_raises_from_finish():
    md = parse_series_metadata(SAMPLE_META.read_bytes(), SAMPLE_STUDY, SAMPLE_SERIES)
    ends = {i.end_byte for i in md.instances}
    # every cut inside a header, a PAX record, member data or its padding
    boundaries = {((e + 511) // 512) * 512 for e in ends}   # a member ends whole here
    for cut in list(range(1, 4000)) + list(range(20000, 25000, 7)) + [65601, 65602, 65603]:
        if cut in boundaries:
            continue
        r = TarReader()
        r.feed(SAMPLE[:cut])
        with pytest.raises(TarError, match=f"truncated at byte {cut}"):
            r.finish()
    r = TarReader()
    r.feed(SAMPLE[:1000])
    with pytest.raises(TarError, match="truncated"):
        r.finish()
    r = TarReader()
    r.feed(SAMPLE[:10000])
    with pytest.raises(TarError, match="inside member 'instances/"):
        r.finish()


def test_cut_at_member_boundary_without_end_marker_is_accepted():
    """No end-of-archive blocks but every member whole: accepted (as tarfile does)."""
    end = 21570 + (-21570 % 512)
    r = TarReader()
    r.feed(SAMPLE[:end])
    assert isinstance(r.finish()[0], ArchiveEnd)


def test_corrupt_header_checksum():
    raw = bytearray(SAMPLE)
    raw[1024 + 10] ^= 0x01   # a byte of the first ustar header's name
    with pytest.raises(TarError, match="header at byte 1024 is corrupt"):
        TarReader().feed(bytes(raw))
    raw = bytearray(SAMPLE)
    raw[5] ^= 0x01            # the first (PAX) header
    with pytest.raises(TarError, match="header at byte 0 is corrupt"):
        TarReader().feed(bytes(raw))


def test_malformed_pax_record():
    raw = bytearray(SAMPLE)
    # the PAX data block starts at 512: "NN path=..." -> break the length field
    assert raw[512:514].isdigit()
    raw[512:514] = b"xx"
    with pytest.raises(TarError, match="PAX header"):
        TarReader().feed(bytes(raw))


def test_huge_extended_header_refused():
    ti = tarfile.TarInfo("././@PaxHeader")
    ti.type = tarfile.XHDTYPE
    ti.size = 64 * 1024 * 1024
    hdr = ti.tobuf(tarfile.USTAR_FORMAT)
    with pytest.raises(TarError, match="claims 67108864 bytes"):
        TarReader().feed(hdr)


def test_not_a_tar():
    with pytest.raises(TarError, match="corrupt"):
        TarReader().feed(b"<html>" + b"x" * 600)


# -- SpanReader and coalesce -------------------------------------------------------------

def _instances(ranges: list[tuple[int, int]]) -> list[Instance]:
    return [Instance("1.2", "1.2.3", f"1.2.3.{n}", f"instances/1.2.3.{n}.dcm", a, b, 0)
            for n, (a, b) in enumerate(ranges)]


def _span_run(insts, start, data, chunks, digest=True):
    members, _ = run_reader(SpanReader(insts, start), chunks, digest)
    want = [(i.member, "file", i.start_byte, i.size, "", data[i.start_byte - start:i.end_byte - start])
            for i in sorted(insts, key=lambda i: i.start_byte)]
    return members, digested(want) if digest else want


def test_span_reader_sample_every_cut_point():
    md = parse_series_metadata(SAMPLE_META.read_bytes(), SAMPLE_STUDY, SAMPLE_SERIES)
    by_name = {m[0]: m[5] for m in expected_members(SAMPLE)}
    # one Range over instances 2 and 3, as the job asks for it
    insts = md.instances[1:]
    start, end = insts[0].start_byte, insts[-1].end_byte
    data = SAMPLE[start:end]
    _, want = _span_run(insts, start, data, [data])
    check_every_cut("span", data, want, (insts, start))
    members, want = _span_run(insts, start, data, [data], digest=False)
    assert members == want
    assert [m[5] for m in members] == [by_name[i.member] for i in insts]


def test_span_reader_synthetic_every_cut_point_and_bytewise():
    insts = _instances([(100, 150), (150, 150), (150, 151), (300, 420), (900, 1000)])
    start = 100
    data = _data(1000 - start, 42)
    _, want = _span_run(insts, start, data, [data])
    check_every_cut("span", data, want, (insts, start))
    members, want = _span_run(insts, start, data, [data[i:i + 1] for i in range(len(data))], digest=False)
    assert members == want


def test_span_reader_refuses_data_after_start():
    insts = _instances([(100, 200)])
    with pytest.raises(ValueError, match="starts before the data fed"):
        SpanReader(insts, 150).feed(b"x" * 100)


def test_span_reader_done():
    insts = _instances([(0, 10), (20, 30)])
    r = SpanReader(insts, 0)
    r.feed(b"x" * 15)
    assert not r.done
    r.feed(b"x" * 15)
    assert r.done


def test_coalesce():
    insts = _instances([(0, 100), (612, 700), (100_000, 100_100), (100_100 + 65536, 200_000), (300_000, 300_001)])
    runs = coalesce(list(reversed(insts)))
    assert [[i.sop_uid for i in run] for run in runs] == [
        ["1.2.3.0", "1.2.3.1"], ["1.2.3.2", "1.2.3.3"], ["1.2.3.4"]]
    assert [[i.sop_uid for i in run] for run in coalesce(insts, gap=0)] == [[i.sop_uid] for i in insts]
    assert coalesce([]) == []
    assert len(coalesce(insts, gap=10**9)) == 1
