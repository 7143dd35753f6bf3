"""Zip mode against the real bucket server (fake-gcs-server) and real COD
studies: one `<study>.zip` per study handed to a downloads directory, checked
entry by entry against the bucket's tars, by zipfile and by Debian's unzip."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import subprocess
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import crc32c
import pytest

from cod_retrieve import CodDownload
from cod_retrieve._compat import NativeFolder
from cod_retrieve.zipsink import MISSING_NAME, SPOOL_DIR

UNZIP = "/usr/bin/unzip"


def _get(url: str) -> bytes:
    return urllib.request.urlopen(url, timeout=60).read()


def _meta(server, bucket, datastore, study, series) -> dict:
    name = f"{datastore}/studies/{study}/series/{series}/metadata.json"
    raw = _get(f"{server.url}/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}?alt=media")
    return json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)


def _tar(server, bucket, datastore, study, series) -> bytes:
    return _get(f"{server.url}/{bucket}/{datastore}/studies/{study}/series/{series}.tar")


def expected_entries(server, fx, bucket=None, series=None) -> dict[str, bytes]:
    """`<series>/instances/<sop>.dcm` -> bytes, read straight from the bucket's
    tars (not through the package), each checked against the metadata's CRC32C."""
    bucket = bucket or fx.bucket
    out = {}
    for se in series or fx.series:
        meta = _meta(server, bucket, fx.datastore, fx.study_uid, se)["cod"]["instances"]
        with tarfile.open(fileobj=io.BytesIO(_tar(server, bucket, fx.datastore, fx.study_uid, se))) as tf:
            for sop, entry in meta.items():
                data = tf.extractfile(entry["uri"].split(".tar://", 1)[1]).read()
                assert len(data) == entry["size"]
                assert crc32c.crc32c(data) == int.from_bytes(base64.b64decode(entry["crc32c"]), "big")
                out[f"{se}/instances/{sop}.dcm"] = data
    return out


def read_zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
        out = {i.filename: zf.read(i) for i in zf.infolist()}
    r = subprocess.run([UNZIP, "-t", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "No errors detected" in r.stdout, r.stdout + r.stderr
    assert "warning" not in r.stdout.lower() + r.stderr.lower()
    raw = path.read_bytes()
    assert b"PK\x06\x06" not in raw[-100:]        # a small zip has no ZIP64 end record
    return out


def spool_left(spool: Path) -> list[str]:
    d = spool / SPOOL_DIR
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def run_zip(server, bucket, datastore, uids, spool, downloads, **opts):
    async def go():
        cd = CodDownload(api_base=server.url, **opts)
        cd.spool_folder = NativeFolder(spool)
        cd.downloads_dir = downloads
        cd.init_bucket({"bucket": bucket, "bucketPrefix": datastore, "token": "t"})
        job = await cd.download(uids, zip_output=True)
        ev = {"save": [], "error": [], "complete": [], "progress": 0}
        zips_at_complete = []
        job.on_save(ev["save"].append)
        job.on_error(ev["error"].append)
        job.on_complete(lambda p: (ev["complete"].append(p),
                                   zips_at_complete.extend(sorted(x.name for x in Path(downloads).glob("*.zip")))))
        job.on_progress(lambda p: ev.__setitem__("progress", ev["progress"] + p["bytesDownloaded"]))
        result = await job.start()
        ev["zips_at_complete"] = zips_at_complete
        return cd, result, ev
    return asyncio.run(go())


def test_zip_two_studies(bucket_server, demo_studies, tmp_path):
    spool, dl = tmp_path / "spool", tmp_path / "downloads"
    # leftovers of an interrupted earlier job: removed when the new job starts
    (spool / SPOOL_DIR).mkdir(parents=True)
    (spool / SPOOL_DIR / "j0dead-1.2.3.zip").write_bytes(b"PK stale")
    (spool / SPOOL_DIR / ".j0dead-1.2.3.zip.x1y2.part").write_bytes(b"PK half")
    fx0 = demo_studies[0]
    uids = [fx.study_uid for fx in demo_studies]
    cd, result, ev = run_zip(bucket_server, fx0.bucket, fx0.datastore, uids, spool, dl)

    assert ev["error"] == [] and result["failed"] == [], ev["error"]
    assert sorted(p.name for p in dl.iterdir()) == sorted(f"{u}.zip" for u in uids)
    assert ev["zips_at_complete"] == sorted(f"{u}.zip" for u in uids)   # handed over before on_complete
    total = 0
    for fx in demo_studies:
        want = expected_entries(bucket_server, fx)
        got = read_zip(dl / f"{fx.study_uid}.zip")
        assert got.keys() == want.keys()
        for name, data in want.items():
            assert got[name] == data, name
            total += len(data)
    assert result["bytesDone"] == result["bytesTotal"] == total
    assert len(ev["save"]) == 17
    assert {s["file"]["path"] for s in ev["save"]} == {
        f"{fx.study_uid}.zip:{name}" for fx in demo_studies for name in expected_entries(bucket_server, fx)}
    assert sorted(z["name"] for z in cd.last_zips) == sorted(f"{u}.zip" for u in uids)
    assert spool_left(spool) == []      # stale files gone, own spool moved out

    # A second run replaces the zips with identical content; the spool stays empty.
    _, result2, ev2 = run_zip(bucket_server, fx0.bucket, fx0.datastore, uids[:1], spool, dl)
    assert ev2["error"] == [] and result2["failed"] == []
    assert read_zip(dl / f"{uids[0]}.zip").keys() == expected_entries(bucket_server, demo_studies[0]).keys()
    assert spool_left(spool) == []


def test_zip_large_instances_streamed(bucket_server, demo_studies, tmp_path):
    """Instances above `small_file` go through open()/write()/commit() in chunks,
    holding the study's lock while other series of the study wait."""
    fx = demo_studies[1]
    spool, dl = tmp_path / "spool", tmp_path / "downloads"
    _, result, ev = run_zip(bucket_server, fx.bucket, fx.datastore, [fx.study_uid], spool, dl,
                            small_file=1000, write_batch=4096, concurrency=4)
    assert ev["error"] == [] and result["failed"] == []
    assert read_zip(dl / f"{fx.study_uid}.zip") == expected_entries(bucket_server, fx)
    assert spool_left(spool) == []


def _copy_study(server, fx, bucket, drop_tars: set[str]):
    """The study's series in another bucket, some series without their tar."""
    server.create_bucket(bucket)
    for se in fx.series:
        meta = _meta(server, fx.bucket, fx.datastore, fx.study_uid, se)
        base = f"{fx.datastore}/studies/{fx.study_uid}/series/{se}"
        server.upload(bucket, f"{base}/metadata.json", gzip.compress(json.dumps(meta).encode()),
                      "application/json", "gzip")
        if se not in drop_tars:
            server.upload(bucket, f"{base}.tar", _tar(server, fx.bucket, fx.datastore, fx.study_uid, se),
                          "application/x-tar")


def test_zip_some_series_missing(bucket_server, demo_studies, tmp_path):
    fx = demo_studies[0]
    series = list(fx.series)
    gone = series[1]
    _copy_study(bucket_server, fx, "zip-partial", {gone})
    spool, dl = tmp_path / "spool", tmp_path / "downloads"
    _, result, ev = run_zip(bucket_server, "zip-partial", fx.datastore, [fx.study_uid], spool, dl,
                            instance_retries=1)
    got = read_zip(dl / f"{fx.study_uid}.zip")
    missing = got.pop(MISSING_NAME).decode()
    assert gone in missing and "incomplete" in missing
    assert got == expected_entries(bucket_server, fx, "zip-partial", [s for s in series if s != gone])
    assert [f["series"] for f in result["failed"]] == [gone]
    msgs = [e["error"] for e in ev["error"]]
    assert any("zip lacks 1 series" in m and gone in m for m in msgs), msgs
    assert spool_left(spool) == []


def test_zip_all_series_missing(bucket_server, demo_studies, tmp_path):
    fx = demo_studies[0]
    _copy_study(bucket_server, fx, "zip-none", set(fx.series))
    spool, dl = tmp_path / "spool", tmp_path / "downloads"
    _, result, ev = run_zip(bucket_server, "zip-none", fx.datastore, [fx.study_uid], spool, dl,
                            instance_retries=1)
    assert not dl.exists() or list(dl.iterdir()) == []
    assert len(result["failed"]) == len(fx.series)
    msgs = [e["error"] for e in ev["error"]]
    assert any(f"study {fx.study_uid}: no zip" in m for m in msgs), msgs
    assert ev["complete"] and spool_left(spool) == []


def test_zip_cancelled_leaves_nothing(bucket_server, demo_studies, tmp_path):
    fx = demo_studies[1]
    spool, dl = tmp_path / "spool", tmp_path / "downloads"

    async def go():
        cd = CodDownload(api_base=bucket_server.url)
        cd.spool_folder = NativeFolder(spool)
        cd.downloads_dir = dl
        cd.init_bucket({"bucket": fx.bucket, "bucketPrefix": fx.datastore, "token": "t"})
        job = await cd.download([fx.study_uid], zip_output=True)
        saves = []
        job.on_save(lambda p: (saves.append(p), job.cancel() if len(saves) == 2 else None))
        return await job.start()

    result = asyncio.run(go())
    assert result["cancelled"]
    assert not dl.exists() or list(dl.iterdir()) == []
    assert spool_left(spool) == []


def test_zip_memory_spool_and_its_limit(bucket_server, demo_studies, tmp_path, monkeypatch):
    """The fallback for engines without a usable OPFS: zips built in memory,
    below a stated limit; above it download() refuses with a clear message."""
    from cod_retrieve import zipsink
    from cod_retrieve.errors import CodError

    fx = demo_studies[1]
    dl = tmp_path / "downloads"

    async def go():
        cd = CodDownload(api_base=bucket_server.url)
        mem = zipsink.MemoryFolder()
        cd.spool_folder = mem
        cd.downloads_dir = dl
        cd.init_bucket({"bucket": fx.bucket, "bucketPrefix": fx.datastore, "token": "t"})
        job = await cd.download([fx.study_uid], zip_output=True)
        errors = []
        job.on_error(errors.append)
        result = await job.start()
        assert errors == [] and result["failed"] == []
        assert mem.files == {}            # handed over, nothing kept in memory
        monkeypatch.setattr(zipsink, "MEMORY_LIMIT", result["bytesTotal"] // 2)
        with pytest.raises(CodError, match="built in memory, at most"):
            await cd.download([fx.study_uid], zip_output=True)

    asyncio.run(go())
    assert read_zip(dl / f"{fx.study_uid}.zip") == expected_entries(bucket_server, fx)
