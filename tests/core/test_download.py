"""Whole downloads of real COD studies (written by the real writer) from a real bucket
server (fake-gcs-server) into a real folder."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import crc32c

from cod_retrieve import CodDownload

from core_helpers import (Recorder, copy_study, fetch_metadata, fetch_tar_members, files_under,
                          run_download)


def _cd(server, fx, rec=None):
    cd = CodDownload(api_base=server.url, opener=rec or Recorder())
    return cd


async def _ready(server, fx, root, rec=None, bucket=None):
    cd = _cd(server, fx, rec)
    await cd.init_directory(root)
    cd.init_bucket({"bucket": bucket or fx.bucket, "bucketPrefix": fx.datastore, "token": "t"})
    return cd


def _log(root: Path) -> list[str]:
    return json.loads((root / "log.json").read_text())["logs"]


def _expected(server, studies) -> dict[str, dict]:
    """{relative path: {"data", "size", "crc"}} for every instance of ``studies``."""
    out = {}
    for fx in studies:
        for series, sops in fx.series.items():
            tar = fetch_tar_members(server, fx.bucket, fx.datastore, fx.study_uid, series)
            meta = fetch_metadata(server, fx.bucket, fx.datastore, fx.study_uid, series)["cod"]["instances"]
            assert sorted(meta) == sorted(sops)
            for sop in sops:
                entry = meta[sop]
                out[f"{fx.study_uid}/{series}/instances/{sop}.dcm"] = {
                    "data": tar[f"instances/{sop}.dcm"], "size": entry["size"],
                    "crc": int.from_bytes(base64.b64decode(entry["crc32c"]), "big")}
    return out


def test_download_demo_studies(bucket_server, demo_studies, tmp_path):
    studies = [fx.study_uid for fx in demo_studies]
    want = _expected(bucket_server, demo_studies)
    assert len(want) == sum(len(v) for fx in demo_studies for v in fx.series.values()) == 17
    rec = Recorder()

    async def main():
        cd = await _ready(bucket_server, demo_studies[0], tmp_path, rec)
        stats1 = await cd.get_stats(studies)
        stats2 = await cd.get_stats(studies)
        job, result, ev = await run_download(cd, studies)
        return cd, stats1, stats2, job, result, ev

    cd, stats1, stats2, job, result, ev = asyncio.run(main())

    # stats: exact, and identical when asked twice (the original doubled them)
    assert stats1 == stats2
    assert stats1["totalSeriesCount"] == 7 and stats1["totalSavedSeriesCount"] == 0
    assert stats1["totalSizeBytes"] == sum(fx.total_dicom_bytes for fx in demo_studies)
    assert stats1["totalSavedSizeBytes"] == 0
    assert stats1["warnings"] == []

    # the files: each equals the tar member, with the metadata's size and CRC32C
    assert files_under(tmp_path) == set(want) | {"log.json"}
    for rel, w in want.items():
        data = (tmp_path / rel).read_bytes()
        assert data == w["data"], rel
        assert len(data) == w["size"] and crc32c.crc32c(data) == w["crc"], rel
    assert sorted(_log(tmp_path)) == sorted(r.rsplit("/instances/", 1)[0] + "/" + r.rsplit("/", 1)[1][:-4]
                                             for r in want)
    assert len(_log(tmp_path)) == len(set(_log(tmp_path))) == 17

    # the result and callbacks
    assert ev["error"] == []
    assert result["failed"] == []
    assert sorted(result["succeeded"]) == sorted(stats1["seriesKeys"])
    assert result["bytesTotal"] == result["bytesDone"] == stats1["totalSizeBytes"]
    assert len(ev["save"]) == 17 and len(ev["complete"]) == 1
    assert sum(p["bytesDownloaded"] for p in ev["progress"]) == sum(fx.total_tar_bytes for fx in demo_studies)
    assert len(rec.tar_calls()) == 7 and all("Range" not in h for _, h in rec.tar_calls())
    assert all(h.get("Authorization") == "Bearer t" for _, h in rec.calls)

    # afterwards: everything saved, stable stats, and a second download fetches no tar
    rec.clear()

    async def again():
        s1 = await cd.get_stats(studies)
        s2 = await cd.get_stats(studies)
        rec.clear()
        job2, result2, ev2 = await run_download(cd, studies)
        return s1, s2, job2, result2, ev2

    s1, s2, job2, result2, ev2 = asyncio.run(again())
    assert s1 == s2
    assert s1["totalSavedSeriesCount"] == 7 and s1["totalSavedSizeBytes"] == s1["totalSizeBytes"]
    assert s1["items"] == []
    assert rec.tar_calls() == []
    assert result2["requests"] == len(rec.calls) == 2 + 7        # two listings, seven metadata
    assert job2.client.traffic.requests == 9
    assert result2["failed"] == [] and sorted(result2["succeeded"]) == sorted(stats1["seriesKeys"])
    assert ev2["save"] == [] and ev2["error"] == []
    assert files_under(tmp_path) == set(want) | {"log.json"}


def test_resume_fetches_only_the_missing_instance_with_range(bucket_server, demo_studies, tmp_path):
    fx = demo_studies[0]
    series = max(fx.series, key=lambda s: len(fx.series[s]))          # the 7-instance series
    sops = fx.series[series]
    meta = fetch_metadata(bucket_server, fx.bucket, fx.datastore, fx.study_uid, series)["cod"]["instances"]
    by_pos = sorted(sops, key=lambda s: meta[s]["headers"]["start_byte"])
    victim = by_pos[3]
    rel = f"{fx.study_uid}/{series}/instances/{victim}.dcm"
    rec = Recorder()

    async def first():
        cd = await _ready(bucket_server, fx, tmp_path, rec)
        _, result, ev = await run_download(cd, [fx.study_uid])
        assert result["failed"] == [] and ev["error"] == []
        return cd

    cd = asyncio.run(first())
    before = (tmp_path / rel).read_bytes()
    (tmp_path / rel).unlink()
    log = _log(tmp_path)
    log.remove(f"{fx.study_uid}/{series}/{victim}")
    (tmp_path / "log.json").write_text(json.dumps({"logs": log}))

    async def second():
        stats = await cd.get_stats([fx.study_uid])
        rec.clear()
        _, result, ev = await run_download(cd, [fx.study_uid])
        return stats, result, ev

    stats, result, ev = asyncio.run(second())
    assert stats["totalSavedSeriesCount"] == 2
    assert stats["totalSizeBytes"] - stats["totalSavedSizeBytes"] == meta[victim]["size"]
    tars = rec.tar_calls()
    assert len(tars) == 1
    url, headers = tars[0]
    assert url.endswith(f"/{fx.study_uid}/series/{series}.tar")
    h = meta[victim]["headers"]
    assert headers["Range"] == f"bytes={h['start_byte']}-{h['end_byte'] - 1}"
    assert [s["instance"] for s in ev["save"]] == [victim]
    assert result["failed"] == [] and ev["error"] == []
    assert result["bytesTotal"] == result["bytesDone"] == meta[victim]["size"]
    assert (tmp_path / rel).read_bytes() == before
    assert sorted(_log(tmp_path)) == sorted(log + [f"{fx.study_uid}/{series}/{victim}"])
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]


def test_unlogged_file_is_verified_not_refetched_and_corrupt_one_is(bucket_server, demo_studies, tmp_path):
    """A file present but not in log.json (saved just before a crash) counts as saved only if
    its size and CRC32C match the metadata."""
    fx = demo_studies[0]
    series = max(fx.series, key=lambda s: len(fx.series[s]))
    good, bad = fx.series[series][0], fx.series[series][1]
    rec = Recorder()

    async def first():
        cd = await _ready(bucket_server, fx, tmp_path, rec)
        await run_download(cd, [fx.study_uid])
        return cd

    cd = asyncio.run(first())
    bad_path = tmp_path / fx.study_uid / series / "instances" / f"{bad}.dcm"
    original = bad_path.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF
    bad_path.write_bytes(bytes(flipped))                       # same size, wrong CRC
    (tmp_path / "log.json").write_text(json.dumps({"logs": []}))
    rec.clear()
    _, result, ev = asyncio.run(run_download(cd, [fx.study_uid]))
    assert [s["instance"] for s in ev["save"]] == [bad]
    assert len(rec.tar_calls()) == 1 and "Range" in rec.tar_calls()[0][1]
    assert bad_path.read_bytes() == original
    assert f"{fx.study_uid}/{series}/{good}" in _log(tmp_path)
    assert len(_log(tmp_path)) == 11 and result["failed"] == []


def test_lock_only_series_is_skipped_with_a_warning(bucket_server, demo_studies, tmp_path):
    fx = demo_studies[0]
    bucket = "core-lock-only"
    copy_study(bucket_server, fx, bucket)
    locked = "1.2.826.0.1.3680043.10.999.1"
    bucket_server.upload(bucket, f"{fx.study_prefix}series/{locked}/.gradient.lock", b"writer 42",
                         "text/plain")
    bucket_server.upload(bucket, f"{fx.study_prefix}series/{locked}/error.log", b"boom", "text/plain")

    async def main():
        cd = await _ready(bucket_server, fx, tmp_path, bucket=bucket)
        stats = await cd.get_stats([fx.study_uid])
        job, result, ev = await run_download(cd, [fx.study_uid])
        return stats, result, ev

    stats, result, ev = asyncio.run(main())
    assert stats["totalSeriesCount"] == 3
    assert stats["totalSizeBytes"] == fx.total_dicom_bytes
    assert len(stats["warnings"]) == 1
    assert locked in stats["warnings"][0] and "metadata.json" in stats["warnings"][0]
    assert sorted(result["succeeded"]) == sorted(f"{fx.study_uid}/{s}" for s in fx.series)
    assert len(files_under(tmp_path)) == 11 + 1
    assert not (tmp_path / fx.study_uid / locked).exists()
    for e in ev["error"]:
        assert e["series"] == locked


def test_missing_tar_is_reported_and_the_rest_lands(bucket_server, demo_studies, tmp_path):
    fx = demo_studies[0]
    bucket = "core-missing-tar"
    gone = min(fx.series, key=lambda s: len(fx.series[s]))
    copy_study(bucket_server, fx, bucket, skip=lambda name: name == fx.tar_name(gone))

    async def main():
        cd = await _ready(bucket_server, fx, tmp_path, bucket=bucket)
        return await run_download(cd, [fx.study_uid])

    job, result, ev = asyncio.run(main())
    assert ev["error"], "a 404 tar must be reported"
    for e in ev["error"]:
        assert e["study"] == fx.study_uid and e["series"] == gone
        assert "404" in e["error"]
    assert [f["series"] for f in result["failed"]] == [gone]
    assert result["failed"][0]["study"] == fx.study_uid
    assert sorted(result["succeeded"]) == sorted(f"{fx.study_uid}/{s}" for s in fx.series if s != gone)
    want = {f"{fx.study_uid}/{s}/instances/{sop}.dcm" for s, sops in fx.series.items() if s != gone
            for sop in sops}
    assert files_under(tmp_path) == want | {"log.json"}
    assert len(_log(tmp_path)) == len(want)
    assert all(not e.startswith(f"{fx.study_uid}/{gone}/") for e in _log(tmp_path))
    # the complete callback does not claim the missing series
    assert all(gone not in f["url"] for f in result["files"])


def test_corrupt_log_json_costs_only_verification(bucket_server, demo_studies, tmp_path):
    fx = demo_studies[0]
    rec = Recorder()

    async def main():
        cd = await _ready(bucket_server, fx, tmp_path, rec)
        await run_download(cd, [fx.study_uid])
        (tmp_path / "log.json").write_bytes(b'{"logs": [1, 2, "trunc')
        rec.clear()
        stats = await cd.get_stats([fx.study_uid])
        untouched = (tmp_path / "log.json").read_bytes()      # getStats writes nothing
        job, result, ev = await run_download(cd, [fx.study_uid])
        return stats, untouched, result

    stats, untouched, result = asyncio.run(main())
    assert stats["totalSavedSeriesCount"] == 3 and stats["totalSavedSizeBytes"] == fx.total_dicom_bytes
    assert untouched == b'{"logs": [1, 2, "trunc'
    assert result["failed"] == [] and rec.tar_calls() == []
    assert len(_log(tmp_path)) == 11          # rebuilt from the verified files by the download


def test_prefix_with_url_special_characters(bucket_server, tmp_path):
    """Object names with a space, '?', '#' and '%' in the prefix: listing, metadata and the
    path-style tar URL must all be quoted exactly once."""
    import gzip

    from core_helpers import build_tar, crc_b64, dicom_bytes

    bucket, ds = "core-quoting", "we ird?#%/dicomweb"
    study, series, sop = "1.2.826.0.1.3680043.10.77.1", "1.2.826.0.1.3680043.10.77.2", "1.2.826.0.1.3680043.10.77.3"
    data = dicom_bytes(sop)
    tar, ranges = build_tar([(f"instances/{sop}.dcm", data)])
    a, b = ranges[f"instances/{sop}.dcm"]
    meta = {"study_uid": study, "series_uid": series, "cod": {"instances": {sop: {
        "uri": f"gs://{bucket}/{ds}/studies/{study}/series/{series}.tar://instances/{sop}.dcm",
        "headers": {"start_byte": a, "end_byte": b}, "size": b - a, "crc32c": crc_b64(data)}}}}
    bucket_server.create_bucket(bucket)
    bucket_server.upload(bucket, f"{ds}/studies/{study}/series/{series}.tar", tar, "application/x-tar")
    bucket_server.upload(bucket, f"{ds}/studies/{study}/series/{series}/metadata.json",
                         gzip.compress(json.dumps(meta).encode()), "application/json", "gzip")

    async def main():
        cd = CodDownload(api_base=bucket_server.url)
        await cd.init_directory(tmp_path)
        cd.init_bucket({"bucket": bucket, "bucketPrefix": ds, "token": "t"})
        return await run_download(cd, [study])

    _, result, ev = asyncio.run(main())
    assert ev["error"] == [] and result["failed"] == []
    assert (tmp_path / study / series / "instances" / f"{sop}.dcm").read_bytes() == data
