"""Archive URLs as a source, in CPython: zips made by Info-ZIP `zip` (also streamed to a
pipe, with data descriptors), Python's `zipfile` and `7z`, tars from `tar` (plain and
gzip) and `tarfile`, served over HTTP by the real bucket server (which answers Range);
each DICOM file lands by its own UIDs byte-exact, anything else is skipped and listed,
a rerun writes nothing, and a hostile set is refused with nothing written from it."""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pydicom
import pytest

from cod_retrieve import CodDownload
from cod_retrieve.archive_policy import Limits

from core_helpers import SAMPLE_TAR, Recorder, run_download

BUCKET = "cod-archives"


def _samples() -> dict[str, bytes]:
    """name -> bytes of the real sample instances, and the classic path each lands at."""
    with tarfile.open(SAMPLE_TAR) as tf:
        return {Path(m.name).name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}


def _classic(data: bytes) -> str:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}.dcm"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """What the archives hold: the sample instances in a folder, and a note that is not DICOM."""
    root = tmp_path_factory.mktemp("archive-tree") / "scans"
    (root / "CT").mkdir(parents=True)
    for name, data in _samples().items():
        (root / "CT" / name).write_bytes(data)
    (root / "README.txt").write_text("scans exported for the tests\n")
    return root


def _make(kind: str, tree: Path, out: Path) -> bytes:
    base = tree.parent
    if kind == "zip":
        subprocess.run(["zip", "-qr", str(out), tree.name], cwd=base, check=True)
    elif kind == "zip-pipe":                   # zip writing to a pipe: data descriptors, no seeking
        files = sorted(str(p.relative_to(base)) for p in tree.rglob("*") if p.is_file())
        raw = subprocess.run(["zip", "-q", "-", *files], cwd=base, check=True, capture_output=True).stdout
        out.write_bytes(raw)
    elif kind == "zipfile":
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(tree.rglob("*")):
                zf.write(p, p.relative_to(base))
    elif kind == "7z":
        subprocess.run(["7z", "a", "-tzip", "-bd", "-bso0", str(out), tree.name], cwd=base, check=True)
    elif kind == "tar":
        subprocess.run(["tar", "-C", str(tree), "-cf", str(out), "."], check=True)    # ./CT/... names
    elif kind == "tar.gz":
        subprocess.run(["tar", "-C", str(base), "-czf", str(out), tree.name], check=True)
    elif kind == "tarfile":
        with tarfile.open(out, "w:gz") as tf:
            tf.add(tree, arcname=tree.name)
    return out.read_bytes()


def _serve(server, name: str, data: bytes) -> str:
    server.create_bucket(BUCKET)
    server.upload(BUCKET, name, data, "application/octet-stream")
    return f"{server.url}/{BUCKET}/{name}"


def _run(url: str, root: Path | None, zip_dir: Path | None = None, **opts):
    from cod_retrieve._compat import NativeFolder

    async def go():
        cd = CodDownload(opener=Recorder(), **opts)
        if root is not None:
            await cd.init_directory(root)
        else:
            cd.spool_folder = NativeFolder(zip_dir / "spool")
            cd.downloads_dir = zip_dir
        cd.init_source({"archive": url})
        job = await cd.download([], zip_output=root is None)
        ev = {"error": [], "save": [], "series": []}
        for k in ev:
            job.on(k, ev[k].append)
        result = await job.start()
        return result, ev
    return asyncio.run(go())


def _landed(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.name != "log.json"}


@pytest.mark.parametrize("kind", ["zip", "zip-pipe", "zipfile", "7z", "tar", "tar.gz", "tarfile"])
def test_archive_lands_by_uids(kind, tree, bucket_server, tmp_path):
    tool = {"zip": "zip", "zip-pipe": "zip", "7z": "7z", "tar": "tar", "tar.gz": "tar"}.get(kind)
    if tool and shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (build.py's APT_PACKAGES lists it)")
    data = _make(kind, tree, tmp_path / f"scans.{kind}")
    if kind == "zip-pipe":
        assert data[6] & 0x08                      # general purpose flag bit 3: sizes after the data
    url = _serve(bucket_server, f"exports/scans-{kind}", data)   # no extension: told by its bytes
    want = {_classic(d): d for d in _samples().values()}
    result, ev = _run(url, tmp_path / "out")
    assert ev["error"] == [] and len(result["succeeded"]) == 1
    assert _landed(tmp_path / "out") == want
    assert [s["name"] for s in result["skipped"]] == ["scans/README.txt" if kind != "tar" else "README.txt"]
    assert "not a DICOM file" in result["skipped"][0]["why"]
    statuses = [(e["series"], e["status"]) for e in ev["series"]]
    assert statuses[0][1] == "downloading" and statuses[-1][1] == "saved"

    again, ev2 = _run(url, tmp_path / "out")      # a rerun: read again, nothing written
    assert ev2["save"] == [] and again["succeeded"] == result["succeeded"]
    assert _landed(tmp_path / "out") == want


def test_archive_into_a_study_zip_with_a_layout(tree, bucket_server, tmp_path):
    url = _serve(bucket_server, "exports/scans-for-zip", _make("zipfile", tree, tmp_path / "a.zip"))
    samples = _samples()
    result, ev = _run(url, None, tmp_path / "zips", layout="descriptive", manifest=True)
    assert ev["error"] == []
    study = pydicom.dcmread(io.BytesIO(next(iter(samples.values()))), stop_before_pixels=True).StudyInstanceUID
    with zipfile.ZipFile(tmp_path / "zips" / f"{study}.zip") as zf:
        assert zf.testzip() is None
        entries = {n: zf.read(n) for n in zf.namelist()}
    assert "cod-manifest.csv" in entries
    dicom = {n: d for n, d in entries.items() if n.endswith(".dcm")}
    assert sorted(dicom.values()) == sorted(samples.values())
    assert all(n.count("/") == 3 for n in dicom)       # patient / study / series / instance


def _zip_of(entries: dict[str, bytes], method=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return buf.getvalue()


def _tar_with_link() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("scans/escape.dcm")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    return buf.getvalue()


def _bomb() -> bytes:
    """One deflated entry of 200 MB of zeros (about 200 KB): far past a ratio of 200."""
    zeros = bytes(1 << 20)
    info = zipfile.ZipInfo("scans/bomb.dcm")
    info.compress_type = zipfile.ZIP_DEFLATED
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        with zf.open(info, "w", force_zip64=True) as w:
            for _ in range(200):
                w.write(zeros)
    assert len(buf.getvalue()) < 2 << 20
    return buf.getvalue()


@pytest.mark.parametrize("case, words", [
    ("traversal", "'../evil.dcm' climbs out of the archive"),
    ("absolute", "'/etc/evil.dcm' is an absolute path"),
    ("link", "is a symbolic link"),
    ("bomb", "decompression bomb"),
])
def test_hostile_archives_are_refused(case, words, bucket_server, tmp_path):
    first = next(iter(_samples().values()))
    data = {"traversal": lambda: _zip_of({"../evil.dcm": first}),
            "absolute": lambda: _zip_of({"/etc/evil.dcm": first}),
            "link": _tar_with_link,
            "bomb": _bomb}[case]()
    url = _serve(bucket_server, f"hostile/{case}", data)
    result, ev = _run(url, tmp_path / "out")
    assert [e["kind"] for e in ev["error"]] == ["ArchiveError"], ev["error"]
    assert words in ev["error"][0]["error"]
    assert _landed(tmp_path / "out") == {}          # nothing written from it
    assert result["succeeded"] == [] and result["failed"] and words in result["failed"][0]["error"]
