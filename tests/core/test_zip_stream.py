"""The streaming zip writer: fed in chunks, checked by zipfile and Debian's unzip."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest

from cod_retrieve.zipstream import FORCE_ZIP64_AT, ZIP64_LIMIT, ZipStream

UNZIP = "/usr/bin/unzip"
ZIP64_EOCD = struct.pack("<I", 0x06064B50)
ZIP64_LOCATOR = struct.pack("<I", 0x07064B50)


def unzip_t(path: Path) -> str:
    r = subprocess.run([UNZIP, "-t", str(path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No errors detected" in r.stdout, r.stdout
    assert "warning" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    return r.stdout


def unzip_p(path: Path, name: str) -> bytes:
    r = subprocess.run([UNZIP, "-p", str(path), name], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


class Out:
    """Where emitted pieces go: a real file, written as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.f = open(path, "wb")
        self.writes = 0

    def __call__(self, pieces) -> None:
        for p in pieces:
            self.f.write(p)
            self.writes += 1

    def close(self) -> None:
        self.f.close()


def test_chunked_entries_round_trip(tmp_path):
    rng = random.Random(7)
    files = {}
    for s in range(3):
        for i in range(5):
            size = rng.choice([0, 1, 511, 4096, 65536 + 17, 300_001])
            files[f"1.2.3.{s}/instances/1.2.3.{s}.{i}.dcm"] = rng.randbytes(size)
    out = Out(tmp_path / "a.zip")
    z = ZipStream()
    for n, (name, data) in enumerate(files.items()):
        if n % 2:
            out(z.add(name, data))
        else:   # streamed in uneven chunks, memoryviews and bytearrays mixed
            out(z.start(name, len(data)))
            view = memoryview(data)
            pos = 0
            while pos < len(data):
                step = rng.randint(1, 70_000)
                chunk = view[pos:pos + step] if rng.random() < 0.5 else bytearray(view[pos:pos + step])
                out(z.write(chunk))
                pos += step
            out(z.finish())
    out(z.close())
    out.close()
    assert z.position == out.path.stat().st_size
    with zipfile.ZipFile(out.path) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == list(files)
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.CRC == zlib.crc32(files[info.filename])
            assert zf.read(info) == files[info.filename]
    listing = unzip_t(out.path)
    assert listing.count("OK") == len(files)
    name = next(iter(files))
    assert unzip_p(out.path, name) == files[name]
    raw = out.path.read_bytes()
    assert ZIP64_EOCD not in raw and ZIP64_LOCATOR not in raw          # small: no ZIP64 at all
    assert b"\x01\x00\x10\x00" not in raw[:30 + len(name)]             # no ZIP64 extra in a header


def test_discarded_entry_is_not_listed(tmp_path):
    out = Out(tmp_path / "d.zip")
    z = ZipStream()
    out(z.add("s/instances/a.dcm", b"a" * 1000))
    out(z.start("s/instances/b.dcm", 5000))
    out(z.write(b"partial"))
    out(z.discard())
    out(z.add("s/instances/b.dcm", b"b" * 5000))    # the retry, under the same name
    out(z.close())
    out.close()
    with zipfile.ZipFile(out.path) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == ["s/instances/a.dcm", "s/instances/b.dcm"]
        assert zf.read("s/instances/b.dcm") == b"b" * 5000
    unzip_t(out.path)


def test_refuses_bad_names():
    z = ZipStream()
    for bad in ["../x.dcm", "/abs.dcm", "a//b", "a/./b", "a\\b", ""]:
        with pytest.raises(ValueError):
            z.start(bad, 1)


def test_zip64_by_entry_count(tmp_path):
    """More than 65,535 entries: ZIP64 end records, made by zipfile on its own."""
    n = 70_000
    out = Out(tmp_path / "many.zip")
    z = ZipStream()
    for i in range(n):
        out(z.add(f"s/instances/{i}.dcm", b"" if i % 3 == 0 else bytes([i % 256])))
    out(z.close())
    out.close()
    raw = out.path.read_bytes()
    assert ZIP64_EOCD in raw[-200:] and ZIP64_LOCATOR in raw[-200:]
    with zipfile.ZipFile(out.path) as zf:
        assert len(zf.infolist()) == n
        assert zf.testzip() is None
        assert zf.read("s/instances/69998.dcm") == bytes([69998 % 256])
    text = unzip_t(out.path)
    assert text.count(" OK") == n


def test_zip64_forced_entry(tmp_path):
    """An entry announced at 4 GiB or more gets ZIP64 sizes in its local header
    and data descriptor; a small one written that way must read back too."""
    out = Out(tmp_path / "forced.zip")
    z = ZipStream()
    out(z.add("s/instances/small.dcm", b"0123456789"))
    z_entry = z._zf.open(z._info("s/instances/forced.dcm", 3), "w", force_zip64=True)
    z._entry, z._entry_name = z_entry, "s/instances/forced.dcm"
    out(z._spout.drain())
    out(z.write(b"abc"))
    out(z.finish())
    out(z.close())
    out.close()
    raw = out.path.read_bytes()
    assert b"\x01\x00\x10\x00" in raw      # ZIP64 extra (id 1, 16 bytes) in the local header
    with zipfile.ZipFile(out.path) as zf:
        assert zf.testzip() is None
        assert zf.read("s/instances/forced.dcm") == b"abc"
    unzip_t(out.path)
    assert FORCE_ZIP64_AT < ZIP64_LIMIT


class SparseOut(Out):
    """Writes the shared zero chunk as a hole: a 4 GiB entry costs no disk."""

    def __init__(self, path: Path, zero) -> None:
        super().__init__(path)
        self.zero = zero

    def __call__(self, pieces) -> None:
        for p in pieces:
            if p is self.zero:
                self.f.seek(len(p), os.SEEK_CUR)
            else:
                self.f.write(p)

    def close(self) -> None:
        self.f.truncate()
        self.f.close()


@pytest.mark.skipif(os.environ.get("COD_ZIP_BIG") != "1",
                    reason="about 1 min of CRC-32 over 4 GiB (slow zlib here): set COD_ZIP_BIG=1")
def test_zip64_past_4gib_sparse(tmp_path):
    """A real > 4 GiB entry followed by a small one (offsets past 32 bits),
    streamed in chunks into a sparse file: both readers accept it."""
    zero = bytes(64 << 20)
    big = ZIP64_LIMIT + (3 << 20) + 5
    out = SparseOut(tmp_path / "big.zip", zero)
    z = ZipStream()
    out(z.add("s/instances/first.dcm", b"first"))
    out(z.start("s/instances/big.dcm", big))
    left = big
    while left:
        if left >= len(zero):
            out(z.write(zero))
            left -= len(zero)
        else:
            out(z.write(bytes(left)))
            left = 0
    out(z.finish())
    out(z.add("s/instances/after.dcm", b"after"))
    out(z.close())
    out.close()
    st = out.path.stat()
    assert st.st_size == z.position > ZIP64_LIMIT
    assert st.st_blocks * 512 < 200 << 20          # really sparse
    with zipfile.ZipFile(out.path) as zf:
        info = zf.getinfo("s/instances/big.dcm")
        assert info.file_size == big
        assert zf.getinfo("s/instances/after.dcm").header_offset > ZIP64_LIMIT
        assert zf.read("s/instances/after.dcm") == b"after"
    text = unzip_t(out.path)            # reads all 4 GiB back and checks every CRC
    assert text.count(" OK") == 3

