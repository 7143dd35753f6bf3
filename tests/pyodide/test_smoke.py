"""Smoke tests: the shipped site's Pyodide loads cod-retrieve and its stdlib needs."""

from __future__ import annotations

import io
import tarfile
import tomllib
from pathlib import Path

from pytest_pyodide import run_in_pyodide

PYPROJECT = Path(__file__).resolve().parents[2] / "py" / "pyproject.toml"


def _tar_bytes() -> tuple[bytes, dict[str, bytes]]:
    """A small tar made on the host, with a PAX long name and an empty member."""
    members = {
        "study/series/instance-0001.dcm": bytes(range(256)) * 40,
        "study/series/" + "x" * 150 + ".dcm": b"long name",
        "study/empty": b"",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), members


@run_in_pyodide(packages=["cod-retrieve"])
def _imports(selenium, expected_version):
    import importlib.metadata
    import sys

    import compression.zstd
    import pydicom

    import cod_retrieve

    assert sys.platform == "emscripten", sys.platform
    assert "/site-packages/cod_retrieve/" in cod_retrieve.__file__, cod_retrieve.__file__
    assert importlib.metadata.version("cod-retrieve") == expected_version
    assert pydicom.__version__ == "3.0.2", pydicom.__version__
    assert compression.zstd.decompress(compression.zstd.compress(b"abc" * 1000)) == b"abc" * 1000
    return sys.version


def test_imports(selenium):
    version = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert _imports(selenium, version).startswith("3.14")


@run_in_pyodide(packages=["pydicom"])
def test_pydicom_roundtrip(selenium):
    import io

    from pydicom import dcmread
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.PatientName = "Smoke^Test"
    ds.StudyInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    back = dcmread(io.BytesIO(buf.getvalue()))
    assert back.PatientName == "Smoke^Test"
    assert back.StudyInstanceUID == ds.StudyInstanceUID


@run_in_pyodide
def _stream_tar(selenium, data, chunk):
    import tarfile

    class Unseekable:
        """Read-only, no seek/tell: like a fetch body reader."""

        def __init__(self, data, chunk):
            self._data, self._pos, self._chunk = data, 0, chunk

        def read(self, n=-1):
            n = self._chunk if n is None or n < 0 else min(n, self._chunk)
            out = self._data[self._pos : self._pos + n]
            self._pos += len(out)
            return out

    got = {}
    with tarfile.open(fileobj=Unseekable(data, chunk), mode="r|") as tar:
        for member in tar:
            f = tar.extractfile(member)
            got[member.name] = f.read() if f is not None else None
    return got


def test_tar_stream(selenium):
    data, members = _tar_bytes()
    assert _stream_tar(selenium, data, 1000) == members


@run_in_pyodide
def test_zip_to_unseekable_sink(selenium):
    import io
    import zipfile

    class Sink(io.RawIOBase):
        def __init__(self):
            self.parts = []

        def writable(self):
            return True

        def write(self, b):
            self.parts.append(bytes(b))
            return len(b)

    sink = Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as z:
        with z.open("a/b.dcm", "w", force_zip64=True) as f:
            f.write(b"x" * 100_000)
    with zipfile.ZipFile(io.BytesIO(b"".join(sink.parts))) as z:
        assert z.read("a/b.dcm") == b"x" * 100_000


@run_in_pyodide
async def test_jspi_run_sync(selenium):
    """JSPI: run_sync (the synchronous tar reader path) works on Chromium and on node
    (conftest passes --experimental-wasm-stack-switching to node 20)."""
    import js
    from pyodide.ffi import can_run_sync, run_sync

    assert can_run_sync(), "no JSPI"
    assert run_sync(js.Promise.resolve(42)) == 42
