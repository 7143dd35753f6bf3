"""ZipReader against zips from real producers (Info-ZIP to a file and to a pipe, Python's
zipfile to a file and to an unseekable stream, 7-Zip, ZIP64), holding the real sample DICOM
files; fed whole, in random chunks, byte by byte and split at every cut point; and
hostile zips, each refused with a message that names the entry."""

from __future__ import annotations

import io
import random
import re
import shutil
import struct
import subprocess
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from cod_retrieve.archive_policy import ArchiveError, Limits, check_tar_member, kind_problem, name_problem
from cod_retrieve.tarstream import MemberStart, TarReader
from cod_retrieve.zipread import ArchiveEnd, EntryData, EntryEnd, EntryStart, ZipReader

from core_helpers import SAMPLE_TAR

# Text with CRLFs, bare LFs and things that look like zip records, so that a reader
# that trusts the first `PK\x07\x08` it sees (or any signature) goes wrong.
TEXT = (b"notes\r\nline two\n\r\n" + b"PK\x07\x08" + b"\0" * 20 + b"PK\x03\x04PK\x01\x02"
        + b"PK\x07\x08" + struct.pack("<III", 0, 0, 0) + b"PK\x03\x04" + bytes(range(256)) + b"\r\n")


# --------------------------------------------------------------------------- sources
def _dicoms() -> dict[str, bytes]:
    with tarfile.open(SAMPLE_TAR) as tf:
        return {Path(m.name).name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}


DICOMS = _dicoms()
FIRST_DICOM = DICOMS[sorted(DICOMS)[0]]


def _write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """Every sample DICOM file (about 20 KB each) and a text file."""
    files = {"notes.txt": TEXT, **{f"instances/{n}": d for n, d in DICOMS.items()}}
    return _write_tree(tmp_path_factory.mktemp("zip-full"), files), files


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A few KB: the text, an empty file and the first 1500 bytes of a real DICOM file
    in a folder (Info-ZIP and 7-Zip add the folder as an entry)."""
    files = {"notes.txt": TEXT, "empty.txt": b"", "sub/head.dcm": FIRST_DICOM[:1500]}
    return _write_tree(tmp_path_factory.mktemp("zip-small"), files), files


# --------------------------------------------------------------------------- producers
def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (build.py's APT_PACKAGES lists it)")
    return path


def infozip_file(root: Path, files: dict[str, bytes]) -> bytes:
    out = root.parent / f"{root.name}-infozip.zip"
    out.unlink(missing_ok=True)
    subprocess.run([_need("zip"), "-q", "-r", str(out), *_top(files)], cwd=root, check=True)
    return out.read_bytes()


def infozip_pipe(root: Path, files: dict[str, bytes], *opts: str) -> bytes:
    """`zip - ...` with a pipe for stdout: it cannot seek back, so each entry gets a data descriptor."""
    r = subprocess.run([_need("zip"), "-q", *opts, "-r", "-", *_top(files)], cwd=root, check=True,
                       stdout=subprocess.PIPE)
    return r.stdout


def python_zip(root: Path, files: dict[str, bytes], method: int, *, stream: bool = False,
               zip64: bool = False) -> bytes:
    """zipfile into a BytesIO, or (stream=True) into a write-only object, which makes zipfile
    follow every entry with a data descriptor."""
    sink = _WriteOnly() if stream else io.BytesIO()
    with zipfile.ZipFile(sink, "w", compression=method) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, (2024, 1, 2, 3, 4, 6))
            info.compress_type = method
            with zf.open(info, "w", force_zip64=zip64) as f:
                f.write(data)
    return bytes(sink.data) if stream else sink.getvalue()


class _WriteOnly:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b) -> int:
        self.data += b
        return len(b)

    def flush(self) -> None:
        pass


def sevenzip(root: Path, files: dict[str, bytes], method: str = "Deflate") -> bytes:
    out = root.parent / f"{root.name}-7z-{method}.zip"
    out.unlink(missing_ok=True)
    subprocess.run([_need("7z"), "a", "-tzip", f"-mm={method}", "-bd", "-y", str(out), *_top(files)],
                   cwd=root, check=True, stdout=subprocess.DEVNULL)
    return out.read_bytes()


def _top(files: dict[str, bytes]) -> list[str]:
    return sorted({name.split("/", 1)[0] for name in files})


PRODUCERS = {
    # id: (builder, every entry has a data descriptor)
    "infozip-file": (infozip_file, False),
    "infozip-pipe": (infozip_pipe, True),
    "infozip-pipe-stored": (lambda r, f: infozip_pipe(r, f, "-0"), True),
    "python-stored": (lambda r, f: python_zip(r, f, zipfile.ZIP_STORED), False),
    "python-deflated": (lambda r, f: python_zip(r, f, zipfile.ZIP_DEFLATED), False),
    "python-stream-stored": (lambda r, f: python_zip(r, f, zipfile.ZIP_STORED, stream=True), True),
    "python-stream-deflated": (lambda r, f: python_zip(r, f, zipfile.ZIP_DEFLATED, stream=True), True),
    "python-zip64-deflated": (lambda r, f: python_zip(r, f, zipfile.ZIP_DEFLATED, zip64=True), False),
    "python-stream-zip64-stored": (lambda r, f: python_zip(r, f, zipfile.ZIP_STORED, stream=True, zip64=True), True),
    "python-stream-zip64-deflated": (lambda r, f: python_zip(r, f, zipfile.ZIP_DEFLATED, stream=True, zip64=True), True),
    "7z-deflate": (sevenzip, False),
    "7z-copy": (lambda r, f: sevenzip(r, f, "Copy"), False),
}


# --------------------------------------------------------------------------- reading
def read_all(chunks, limits: Limits = Limits()) -> tuple[dict[str, bytes], list]:
    """Feed chunks and end(); returns {name: bytes} and the non-data events, checked for order."""
    reader = ZipReader(limits)
    out: dict[str, bytearray] = {}
    events: list = []
    current: EntryStart | None = None
    for chunk in chunks:
        for ev in reader.feed(chunk):
            if isinstance(ev, EntryData):
                assert current is not None and len(ev.data)
                out[current.name] += ev.data          # views die with the next feed
                continue
            events.append(ev)
            if isinstance(ev, EntryStart):
                assert current is None and ev.name not in out
                current = ev
                out[ev.name] = bytearray()
            elif isinstance(ev, EntryEnd):
                assert current is not None and ev.name == current.name
                data = out[ev.name]
                assert (ev.size, ev.crc32) == (len(data), zlib.crc32(data))
                if current.size is not None:
                    assert current.size == ev.size
                current = None
            else:
                assert isinstance(ev, ArchiveEnd) and current is None
    events += reader.end()
    assert isinstance(events[-1], ArchiveEnd) and reader.at_end
    return {k: bytes(v) for k, v in out.items()}, events


def digest_all(chunks) -> dict[str, tuple[int, int]]:
    """Like read_all, keeping (size, crc32) only: no copies in the cut-point loops."""
    reader = ZipReader()
    out: dict[str, tuple[int, int]] = {}
    name = None
    for chunk in chunks:
        for ev in reader.feed(chunk):
            if isinstance(ev, EntryStart):
                name = ev.name
                out[name] = (0, 0)
            elif isinstance(ev, EntryData):
                n, c = out[name]
                out[name] = (n + len(ev.data), zlib.crc32(ev.data, c))
            elif isinstance(ev, EntryEnd):
                assert out[name] == (ev.size, ev.crc32)
    reader.end()
    return out


def assert_same(got: dict[str, bytes], events: list, files: dict[str, bytes]) -> None:
    """Every original file came out byte-equal; anything else is an empty folder entry."""
    for name, data in files.items():
        assert got.get(name) == data, name
    starts = {ev.name: ev for ev in events if isinstance(ev, EntryStart)}
    for name in set(got) - set(files):
        assert starts[name].is_dir and name.endswith("/") and got[name] == b"", name


def descriptor_count(path_or_bytes, tmp_path: Path) -> int:
    """How many entries `zipinfo -v` reports with an 'extended local header' (data descriptor)."""
    zipinfo = shutil.which("zipinfo")
    raw = path_or_bytes
    if zipinfo is None:   # the flags zipfile reads from the central directory say the same
        return sum(1 for i in zipfile.ZipFile(io.BytesIO(raw)).infolist() if i.flag_bits & 8)
    path = tmp_path / "probe.zip"
    path.write_bytes(raw)
    text = subprocess.run([zipinfo, "-v", str(path)], capture_output=True, text=True, check=True).stdout
    return len(re.findall(r"extended local header:\s+yes", text))


# --------------------------------------------------------------------------- producers, read back
@pytest.mark.parametrize("producer", list(PRODUCERS))
def test_real_producer_full(producer, full, tmp_path):
    build, descriptors = PRODUCERS[producer]
    root, files = full
    raw = build(root, files)
    infos = zipfile.ZipFile(io.BytesIO(raw)).infolist()
    with_descriptor = descriptor_count(raw, tmp_path)
    if descriptors:   # every file has one (Info-ZIP writes folder entries without)
        assert sum(not i.is_dir() for i in infos) <= with_descriptor <= len(infos)
    else:
        assert with_descriptor == 0

    got, events = read_all([raw])
    assert_same(got, events, files)
    assert events[-1].offset == zipfile.ZipFile(io.BytesIO(raw)).start_dir

    rng = random.Random(producer)
    cuts = sorted(rng.sample(range(1, len(raw)), 40))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]
    assert read_all(chunks)[0] == got


@pytest.mark.parametrize("producer", list(PRODUCERS))
def test_real_producer_every_cut_and_bytewise(producer, small):
    build, _ = PRODUCERS[producer]
    root, files = small
    raw = build(root, files)
    got, events = read_all([raw])
    assert_same(got, events, files)
    assert read_all([raw[i:i + 1] for i in range(len(raw))])[0] == got
    want = {k: (len(v), zlib.crc32(v)) for k, v in got.items()}
    for cut in range(len(raw) + 1):
        assert digest_all([raw[:cut], raw[cut:]]) == want, cut


def test_infozip_from_stdin_has_zip64_descriptor(tmp_path):
    """`cat f | zip - -`: sizes unknown up front, so Info-ZIP writes a ZIP64 extra field and
    a data descriptor with 64-bit sizes."""
    r = subprocess.run([_need("zip"), "-q", "-", "-"], input=FIRST_DICOM, stdout=subprocess.PIPE, check=True)
    raw = r.stdout
    assert descriptor_count(raw, tmp_path) == 1
    flags, = struct.unpack_from("<H", raw, 6)
    nlen, xlen = struct.unpack_from("<HH", raw, 26)
    assert flags & 8 and struct.unpack_from("<H", raw, 30 + nlen)[0] == 0x0001   # ZIP64 extra
    got, events = read_all([raw])
    assert got == {"-": FIRST_DICOM}
    for cut in range(0, len(raw) + 1, 7):
        assert read_all([raw[:cut], raw[cut:]])[0] == got


def test_zip64_entry_sizes_come_from_the_extra_field():
    raw = python_zip(Path("."), {"a.dcm": FIRST_DICOM}, zipfile.ZIP_STORED, zip64=True)
    assert struct.unpack_from("<II", raw, 18) == (0xFFFFFFFF, 0xFFFFFFFF)
    got, events = read_all([raw])
    assert got == {"a.dcm": FIRST_DICOM}
    start = events[0]
    assert (start.size, start.compressed_size, start.method) == (len(FIRST_DICOM), len(FIRST_DICOM), 0)


def test_stored_data_is_handed_out_as_views_of_the_fed_chunk():
    raw = python_zip(Path("."), {"a.dcm": FIRST_DICOM}, zipfile.ZIP_STORED)
    events = ZipReader().feed(raw)
    data = [ev.data for ev in events if isinstance(ev, EntryData)]
    assert len(data) == 1 and data[0].obj is raw and data[0] == FIRST_DICOM


def test_stored_scan_is_not_fooled_by_descriptor_lookalikes():
    """A write-only zipfile stream, STORED: the entry's end is found by scanning. The data
    holds a descriptor signature followed by a plausible descriptor, and a real descriptor
    of an earlier part of itself, and still comes out whole."""
    head = b"head bytes\r\n"
    fake = head + b"PK\x07\x08" + struct.pack("<III", zlib.crc32(head), len(head), len(head)) + b"XXXX"
    data = fake + TEXT + b"PK\x07" + b"PK\x07\x08"
    raw = python_zip(Path("."), {"tricky.bin": data, "next.txt": b"PK\x07"}, zipfile.ZIP_STORED, stream=True)
    got, _ = read_all([raw])
    assert got == {"tricky.bin": data, "next.txt": b"PK\x07"}
    for cut in range(len(raw) + 1):
        assert read_all([raw[:cut], raw[cut:]])[0] == got, cut
    assert read_all([raw[i:i + 1] for i in range(len(raw))])[0] == got


def test_names_utf8_cp437_and_unicode_path_field(tmp_path):
    # zipfile sets flag bit 11 for a non-ASCII name
    raw = python_zip(Path("."), {"grüße/ü.txt": b"x"}, zipfile.ZIP_STORED)
    assert read_all([raw])[0] == {"grüße/ü.txt": b"x"}
    # no flag: the name is cp437 (0x81 is u-umlaut there)
    cp = hand_zip([entry(b"\x81ber.txt", b"y")])
    assert read_all([cp])[0] == {"über.txt": b"y"}
    # Info-ZIP's Unicode Path field (0x7075) wins when its CRC matches the header's name
    legacy = b"u_ber.txt"
    upath = b"\x01" + struct.pack("<I", zlib.crc32(legacy)) + "übër.txt".encode()
    extra = struct.pack("<HH", 0x7075, len(upath)) + upath
    raw = hand_zip([entry(legacy, b"z", extra=extra)])
    assert zipfile.ZipFile(io.BytesIO(raw)).testzip() is None            # a well-formed zip
    if shutil.which("zipinfo"):                                           # Info-ZIP reads it so
        (tmp_path / "u.zip").write_bytes(raw)
        listed = subprocess.run(["zipinfo", "-1", str(tmp_path / "u.zip")], capture_output=True).stdout
        assert listed.decode().split() == ["übër.txt"]
    assert read_all([raw])[0] == {"übër.txt": b"z"}


def test_empty_archive_and_split_marker():
    raw = python_zip(Path("."), {}, zipfile.ZIP_STORED)
    got, events = read_all([raw])
    assert got == {} and events == [ArchiveEnd(0)]
    one = python_zip(Path("."), {"a": b"abc"}, zipfile.ZIP_STORED)
    assert read_all([b"PK00" + one])[0] == {"a": b"abc"}


# --------------------------------------------------------------------------- hostile zips
def entry(name: bytes, data: bytes, *, method: int = 0, flags: int = 0, crc: int | None = None,
          extra: bytes = b"", usize: int | None = None, payload: bytes | None = None) -> tuple:
    """One hand-made entry: (local header + data, central directory record builder)."""
    crc = zlib.crc32(data) if crc is None else crc
    payload = data if payload is None else payload
    usize = len(data) if usize is None else usize
    fields = (20, flags, method, 0, 0x21, crc, len(payload), usize, len(name), len(extra))
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", *fields) + name + extra + payload

    def central(offset: int) -> bytes:
        return struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, offset) \
            + name + extra
    return local, central


def hand_zip(entries: list[tuple]) -> bytes:
    """A whole, valid-format archive (zipfile can open it) from `entry()` parts."""
    body, directory = bytearray(), bytearray()
    for local, central in entries:
        directory += central(len(body))
        body += local
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory),
                      len(body), 0)
    return bytes(body + directory + end)


def refused(chunks, match: str, limits: Limits = Limits()) -> ArchiveError:
    reader = ZipReader(limits)
    with pytest.raises(ArchiveError, match=match) as e:
        for c in chunks:
            reader.feed(c)
        reader.end()
    return e.value


@pytest.mark.parametrize("name, why", [
    ("../evil", "climbs out"),
    ("a/../../evil", "climbs out"),
    ("/abs", "absolute"),
    ("\\abs", "backslash"),
    ("C:\\x", "backslash"),
    ("C:x", "drive letter"),
    ("a\\..\\..\\x", "backslash"),
    ("a/./b", "empty or '.'"),
    ("a\0b", "NUL"),
])
def test_hostile_names_are_refused(name, why):
    raw = hand_zip([entry(b"fine.txt", b"ok"), entry(name.encode(), b"evil")])
    err = refused([raw], re.escape(repr(name)) + ".*" + re.escape(why))
    assert "zip entry" in str(err)
    assert name_problem(name)                      # the pure policy says the same


def test_folder_entries_pass_the_name_policy():
    assert name_problem("dir/") is None and name_problem("a/b/") is None
    assert name_problem("../dir/") and name_problem("/") and name_problem("a//")


def test_hostile_name_from_zipfile_is_refused():
    raw = python_zip(Path("."), {"xxevil": b"data"}, zipfile.ZIP_DEFLATED)
    raw = raw.replace(b"xxevil", b"../evi")
    refused([raw], r"'\.\./evi' climbs out")


def test_deflate_bomb_is_refused_while_streaming():
    """200 MB of zeros deflated to ~200 KB (made here with zlib, not stored in git): refused
    after the first MiB, by ratio, long before 200 MB are produced."""
    zeros = bytes(1 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [comp.compress(zeros) for _ in range(200)]
    payload = b"".join(parts) + comp.flush()
    crc = 0
    for _ in range(200):
        crc = zlib.crc32(zeros, crc)
    raw = hand_zip([entry(b"bomb.dcm", b"", method=8, crc=crc, usize=200 << 20, payload=payload)])
    assert len(raw) < 1 << 20

    reader = ZipReader()
    produced = 0
    with pytest.raises(ArchiveError, match=r"'bomb\.dcm' inflates .*decompression bomb"):
        for i in range(0, len(raw), 4096):
            for ev in reader.feed(raw[i:i + 4096]):
                if isinstance(ev, EntryData):
                    produced += len(ev.data)
    assert produced < 2 << 20
    # with no ratio limit, the per-entry limit stops it, still while streaming
    refused([raw], r"'bomb\.dcm' (declares|inflates past)",
            Limits(max_ratio=float("inf"), max_entry_bytes=10 << 20))


def test_size_limits():
    stored = python_zip(Path("."), {"a.dcm": FIRST_DICOM}, zipfile.ZIP_STORED)
    refused([stored], r"'a\.dcm' declares 20034 bytes", Limits(max_entry_bytes=20_000))
    streamed = python_zip(Path("."), {"a.dcm": FIRST_DICOM}, zipfile.ZIP_DEFLATED, stream=True)
    refused([streamed], r"'a\.dcm' inflates past the limit of 20000 bytes per entry",
            Limits(max_entry_bytes=20_000))
    three = python_zip(Path("."), {f"{n}": d for n, d in DICOMS.items()}, zipfile.ZIP_DEFLATED)
    third = sorted(DICOMS)[2]
    refused([three], rf"in total \(at zip entry '{re.escape(third)}'\)", Limits(max_total_bytes=50_000))
    # a small, very regular entry passes the ratio limit: it applies after `ratio_after`
    assert read_all([python_zip(Path("."), {"blank": bytes(1 << 19)}, zipfile.ZIP_DEFLATED)])[0] == \
        {"blank": bytes(1 << 19)}


def test_crc_mismatch_is_refused():
    data = FIRST_DICOM[:3000]
    stored = bytearray(python_zip(Path("."), {"x.dcm": data}, zipfile.ZIP_STORED))
    stored[stored.index(data) + 2000] ^= 1
    refused([bytes(stored)], r"'x\.dcm' fails its CRC-32 check")
    # deflate with a data descriptor (Info-ZIP to a pipe style): the descriptor's CRC is wrong
    streamed = bytearray(python_zip(Path("."), {"y.dcm": data}, zipfile.ZIP_DEFLATED, stream=True))
    at = streamed.index(b"PK\x07\x08") + 4
    streamed[at] ^= 1
    refused([bytes(streamed)], r"'y\.dcm' fails its CRC-32 check")
    # changed bytes inside deflate data: a CRC, size or deflate error, always naming the entry
    deflated = python_zip(Path("."), {"z.dcm": data}, zipfile.ZIP_DEFLATED)
    start = 30 + len("z.dcm")
    for at in range(start, start + 200, 3):
        bad = bytearray(deflated)
        bad[at] ^= 0x10
        refused([bytes(bad)], r"zip entry 'z\.dcm'")


def test_truncated_archive_is_refused_at_every_cut(small):
    root, files = small
    raw = python_zip(root, files, zipfile.ZIP_DEFLATED, stream=True)
    directory = zipfile.ZipFile(io.BytesIO(raw)).start_dir
    infos = zipfile.ZipFile(io.BytesIO(raw)).infolist()
    for cut in range(directory):
        err = refused([raw[:cut]], "zip is truncated")
        inside = [i.filename for i in infos if i.header_offset < cut]
        if "inside zip entry" in str(err):
            assert repr(inside[-1]) in str(err), (cut, str(err))
        elif "after zip entry" in str(err):   # cut just past a whole descriptor
            assert any(repr(n) in str(err) for n in inside[-2:]), (cut, str(err))
    # cut inside the data of the second entry: the message names it
    second = infos[1]
    refused([raw[:second.header_offset + 40]], rf"inside zip entry {re.escape(repr(second.filename))}")


def test_unsupported_method_and_encryption_are_refused(tmp_path):
    bz = python_zip(Path("."), {"b.dcm": FIRST_DICOM}, zipfile.ZIP_BZIP2)
    refused([bz], r"'b\.dcm' uses compression method 12 \(bzip2\)")
    lz = python_zip(Path("."), {"l.dcm": FIRST_DICOM}, zipfile.ZIP_LZMA)
    refused([lz], r"'l\.dcm' uses compression method 14 \(LZMA\)")
    (tmp_path / "s.txt").write_bytes(TEXT)
    subprocess.run([_need("zip"), "-q", "-P", "secret", "enc.zip", "s.txt"], cwd=tmp_path, check=True)
    refused([(tmp_path / "enc.zip").read_bytes()], r"'s\.txt' is encrypted")


def test_not_a_zip():
    refused([SAMPLE_TAR.read_bytes()[:4096]], "is not a zip")
    refused([b""], "truncated.*before any entry")


# --------------------------------------------------------------------------- the policy for tars
def test_tar_members_links_and_devices_are_refused():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, target in [("ok.dcm", tarfile.REGTYPE, ""), ("d", tarfile.DIRTYPE, ""),
                                   ("link", tarfile.SYMTYPE, "/etc/passwd"),
                                   ("hard", tarfile.LNKTYPE, "ok.dcm"), ("dev", tarfile.CHRTYPE, "")]:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = kind, target
            tf.addfile(ti, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    starts = [ev for ev in TarReader().feed(buf.getvalue()) if isinstance(ev, MemberStart)]
    verdicts = {}
    for m in starts:
        try:
            check_tar_member(m)
            verdicts[m.name] = "ok"
        except ArchiveError as e:
            verdicts[m.name] = str(e)
    assert verdicts["ok.dcm"] == verdicts["d"] == "ok"
    assert "'link' -> '/etc/passwd' is a symbolic link" in verdicts["link"]
    assert "'hard' -> 'ok.dcm' is a hard link" in verdicts["hard"]
    assert "'dev' is a device node" in verdicts["dev"]
    assert kind_problem("fifo") == "is a FIFO"
    with pytest.raises(ArchiveError, match=r"tar member '\.\./x' climbs out"):
        check_tar_member(MemberStart("../x", 0, "file", 512))


def test_zip64_extra_with_only_the_marked_size():
    """Older writers put only the sizes marked 0xFFFFFFFF into the ZIP64 field, in order."""
    data = b"zip64 payload\r\n"
    crc = zlib.crc32(data)
    extra = struct.pack("<HHQ", 0x0001, 8, len(data))
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, 0, 0, 0x21, crc, len(data), 0xFFFFFFFF, 1, 12)
    raw = local + b"a" + extra + data + b"PK\x01\x02"
    got, events = read_all([raw])
    assert got == {"a": data} and events[0].size == len(data)


@pytest.mark.parametrize("make, message", [
    (lambda: entry(b"a", b"abc", usize=4), r"'a' is stored but its sizes differ \(3 stored, 4 announced\)"),
    (lambda: entry(b"a", b"abc", usize=0xFFFFFFFF), r"'a' has ZIP64 size markers but no ZIP64 extra"),
    (lambda: entry(b"d", b"abc", method=8, payload=b""), r"'d' is deflated but its compressed size is 0"),
    (lambda: entry(b"d", b"abc", method=8, payload=_deflate(b"abc") + b"xyz"),
     r"'d': its deflate data ends 3 bytes before its compressed size"),
    (lambda: entry(b"d", b"abc" * 50, method=8, payload=_deflate(b"abc" * 50)[:-2]),
     r"'d': its deflate data is incomplete"),
    (lambda: entry(b"d", b"abc", method=8, usize=5, payload=_deflate(b"abc")),
     r"'d' holds 3 bytes but its header says 5"),
    (lambda: entry(b"\xff\xfe", b"x", flags=0x800), r"name b'\\xff\\xfe' at byte 0 is flagged UTF-8 but is not"),
])
def test_inconsistent_headers_are_refused(make, message):
    refused([hand_zip([make()])], message)


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def test_descriptor_that_does_not_match_its_data():
    raw = bytearray(python_zip(Path("."), {"y.dcm": b"hello" * 100}, zipfile.ZIP_DEFLATED, stream=True))
    at = raw.index(b"PK\x07\x08") + 8
    raw[at] ^= 1      # the compressed size
    refused([bytes(raw)], r"'y\.dcm' does not match its data descriptor")


def test_stored_stream_without_a_descriptor_is_truncated():
    """A STORED entry of unknown size whose descriptor never comes: the end says so."""
    raw = python_zip(Path("."), {"s.dcm": FIRST_DICOM}, zipfile.ZIP_STORED, stream=True)
    cut = raw.index(b"PK\x07\x08")
    refused([raw[:cut] + b"PK\x07"], r"inside zip entry 's\.dcm' \(no data descriptor found after its data\)")
