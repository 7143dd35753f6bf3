"""The original cod-retrieve's contract, against the real bucket server with real COD
studies: what getStats' `series` and `items` mean, the payload keys and shapes of every
callback, and what counts as saved."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import pytest

from cod_retrieve import CodDownload, StorageFullError

from core_helpers import fetch_metadata, fetch_tar_members, run_download
from support.contract import EXTRACTED_FILE_KEYS, KEYS, SAVED_FILE_KEYS, tar_label


def _cd(server, fx, root):
    async def make():
        cd = CodDownload(api_base=server.url)
        await cd.init_directory(root)
        cd.init_bucket({"bucket": fx.bucket, "bucketPrefix": fx.datastore, "token": "t"})
        return cd
    return make


def _uris(server, fx) -> dict[str, str]:
    """sop -> the metadata's url/uri, as the bucket holds it."""
    out = {}
    for series in fx.series:
        for sop, e in fetch_metadata(server, fx.bucket, fx.datastore, fx.study_uid, series)["cod"]["instances"].items():
            out[sop] = e.get("url") or e["uri"]
    return out


def test_stats_series_and_items_list_what_is_still_to_fetch(bucket_server, demo_studies, tmp_path):
    fx = demo_studies[1]
    uris = _uris(bucket_server, fx)
    victim_series = max(fx.series, key=lambda s: len(fx.series[s]))
    victim = fx.series[victim_series][0]

    async def main():
        cd = await _cd(bucket_server, fx, tmp_path)()
        before = await cd.get_stats([fx.study_uid])
        job, result, _ = await run_download(cd, [fx.study_uid])
        after = await cd.get_stats([fx.study_uid])
        (tmp_path / fx.study_uid / victim_series / "instances" / f"{victim}.dcm").unlink()
        one_gone = await cd.get_stats([fx.study_uid])
        return before, result, after, one_gone

    before, result, after, one_gone = asyncio.run(main())
    assert set(before) == KEYS["stats"]
    assert sorted(before["series"]) == sorted(tar_label(fx.study_uid, s) for s in fx.series)
    assert sorted(before["items"]) == sorted(uris.values())                 # one per instance
    assert len(before["items"]) == sum(len(v) for v in fx.series.values())
    assert sorted(before["seriesKeys"]) == sorted(f"{fx.study_uid}/{s}" for s in fx.series)
    assert result["failed"] == []
    assert after["series"] == [] and after["items"] == []                    # nothing left to fetch
    assert sorted(after["seriesKeys"]) == sorted(before["seriesKeys"])
    assert one_gone["series"] == [tar_label(fx.study_uid, victim_series)]
    assert one_gone["items"] == [uris[victim]]
    assert one_gone["totalSavedSeriesCount"] == len(fx.series) - 1


def test_payload_keys_and_shapes(bucket_server, demo_studies, tmp_path):
    fx = demo_studies[1]

    async def main():
        cd = await _cd(bucket_server, fx, tmp_path)()
        job = await cd.download([fx.study_uid])
        ev = {e: [] for e in ("progress", "download", "extract", "save", "complete", "error", "series")}
        for name, lst in ev.items():
            job.on(name, lst.append)
        result = await job.start()
        return result, ev

    result, ev = asyncio.run(main())
    assert ev["error"] == [] and result["failed"] == []
    for name in ("progress", "download", "extract", "save", "complete", "series"):
        assert ev[name] and all(set(p) == KEYS[name] for p in ev[name]), name
    sizes = {}
    for series in fx.series:
        meta = fetch_metadata(bucket_server, fx.bucket, fx.datastore, fx.study_uid, series)["cod"]["instances"]
        sizes[series] = {sop: e["size"] for sop, e in meta.items()}
    # onDownload and onExtract: once per series, `size` the series' DICOM bytes
    assert sorted(p["series"] for p in ev["download"]) == sorted(fx.series)
    assert sorted(p["series"] for p in ev["extract"]) == sorted(fx.series)
    for p in ev["download"]:
        assert p["size"] == sum(sizes[p["series"]].values()) and p["file"] is None and p["bytesReceived"] > p["size"]
    for p in ev["extract"]:
        assert p["size"] == sum(sizes[p["series"]].values())
        assert sorted((f["name"], f["size"]) for f in p["files"]) == sorted(
            (f"instances/{sop}.dcm", n) for sop, n in sizes[p["series"]].items())
        assert all(set(f) == EXTRACTED_FILE_KEYS for f in p["files"])
    # onSave: js-untar's file object, with the bytes just written
    for p in ev["save"]:
        f = p["file"]
        assert set(f) == SAVED_FILE_KEYS
        assert f["name"] == f"instances/{p['instance']}.dcm" and f["size"] == p["size"]
        assert f["path"] == f"{fx.study_uid}/{p['series']}/instances/{p['instance']}.dcm"
        assert bytes(f["buffer"]) == (tmp_path / f["path"]).read_bytes()
    assert len(ev["complete"]) == 1 and ev["complete"][0] == result


def test_logged_file_of_wrong_size_and_unlogged_file_of_wrong_crc_are_fetched_again(bucket_server, demo_studies,
                                                                                    tmp_path):
    """Saved means verified: a logged file is size-checked, an unlogged one CRC-checked."""
    fx = demo_studies[0]
    series = max(fx.series, key=lambda s: len(fx.series[s]))
    truncated, flipped = fx.series[series][:2]
    inst = tmp_path / fx.study_uid / series / "instances"
    members = fetch_tar_members(bucket_server, fx.bucket, fx.datastore, fx.study_uid, series)

    async def main():
        cd = await _cd(bucket_server, fx, tmp_path)()
        await (await cd.download([fx.study_uid])).start()
        # another tool truncates a logged file; a file of the right size but a flipped byte
        # is left unlogged (as after a crash between the write and the log)
        data = (inst / f"{truncated}.dcm").read_bytes()
        (inst / f"{truncated}.dcm").write_bytes(data[: len(data) // 2])
        bad = bytearray((inst / f"{flipped}.dcm").read_bytes())
        bad[200] ^= 0xFF
        (inst / f"{flipped}.dcm").write_bytes(bad)
        log = json.loads((tmp_path / "log.json").read_text())
        log["logs"].remove(f"{fx.study_uid}/{series}/{flipped}")
        (tmp_path / "log.json").write_text(json.dumps(log))
        stats = await cd.get_stats([fx.study_uid])
        job, result, ev = await run_download(cd, [fx.study_uid])
        return stats, result, ev

    stats, result, ev = asyncio.run(main())
    assert stats["totalSavedInstanceCount"] == stats["totalInstanceCount"] - 2
    assert stats["series"] == [tar_label(fx.study_uid, series)] and len(stats["items"]) == 2
    assert result["failed"] == [] and ev["error"] == []
    assert sorted(p["instance"] for p in ev["save"]) == sorted([truncated, flipped])
    for sop in (truncated, flipped):
        assert (inst / f"{sop}.dcm").read_bytes() == members[f"instances/{sop}.dcm"]
    assert f"{fx.study_uid}/{series}/{flipped}" in json.loads((tmp_path / "log.json").read_text())["logs"]


@pytest.fixture
def small_disk(tmp_path):
    """A real, small filesystem (tmpfs) of 40 MB: writes past its size fail with ENOSPC."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    size = 40_000_000
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt, size
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt, leave: int):
    """A filler file that leaves `leave` bytes free on the tmpfs (space taken
    by something else once the download has been checked and begun)."""
    filler = mnt / "filler.bin"
    with open(filler, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * max(0, shutil.disk_usage(mnt).free - leave))
    return filler


def test_download_that_cannot_fit_is_refused_before_anything_is_fetched(bucket_server, demo_studies, small_disk):
    mnt, _ = small_disk
    fx = demo_studies[1]          # about 10 MB of DICOM
    filler = _fill(mnt, 2_500_000)

    async def attempt():
        cd = await _cd(bucket_server, fx, mnt)()
        with pytest.raises(StorageFullError) as err:
            await cd.download([fx.study_uid])
        return cd, err.value

    cd, err = asyncio.run(attempt())
    text = str(err)
    assert text.startswith("not enough space: this download needs ") and "Nothing was downloaded" in text
    assert f"the disk holding {mnt}" in text
    assert cd.client.traffic.requests == 1 + len(fx.series)       # the listing and the metadata, no tar
    assert sorted(p.name for p in mnt.iterdir()) == ["filler.bin"]   # nothing written, not even log.json
    filler.unlink()                                                 # space freed: the same call goes through
    job, result, ev = asyncio.run(_download(bucket_server, fx, mnt))
    assert result["failed"] == [] and ev["error"] == []


async def _download(server, fx, root, before_start=None):
    cd = await _cd(server, fx, root)()
    return await run_download(cd, [fx.study_uid], before_start)


def test_disk_full_stops_the_job_clearly_and_a_later_run_completes(bucket_server, demo_studies, tmp_path,
                                                                    small_disk):
    mnt, size = small_disk
    fx = demo_studies[1]          # about 10 MB of DICOM: does not fit in what the filler leaves
    assert fx.total_dicom_bytes > 2 * 2_500_000
    want = {}
    for series in fx.series:
        for name, data in fetch_tar_members(bucket_server, fx.bucket, fx.datastore, fx.study_uid, series).items():
            want[f"{fx.study_uid}/{series}/{name}"] = data

    # The space check passes; then the disk fills up (something else took the space).
    holder = {}
    job, result, ev = asyncio.run(_download(bucket_server, fx, mnt,
                                            before_start=lambda: holder.update(f=_fill(mnt, 2_500_000))))
    full = [e for e in ev["error"] if e["kind"] == "StorageFullError"]
    assert len(full) == 1 and "not enough space" in full[0]["error"]
    assert job.state == "failed" and result["failed"] and not result["cancelled"]
    assert len(ev["complete"]) == 1
    # verified-or-absent: every file under a final name is whole; log.json is valid and true
    landed = {str(p.relative_to(mnt)): p.read_bytes() for p in mnt.rglob("*") if p.is_file() and p.name != "filler.bin"}
    assert not [n for n in landed if n.endswith(".part")]
    logs = json.loads(landed.pop("log.json", b'{"logs": []}'))["logs"]
    assert all(want[n] == data for n, data in landed.items()), "a file under its final name is not whole"
    assert {n.replace("/instances/", "/")[:-4] for n in landed} >= set(logs)

    holder["f"].unlink()                                     # space freed
    job, result, ev = asyncio.run(_download(bucket_server, fx, mnt))
    assert result["failed"] == [] and ev["error"] == []
    landed = {str(p.relative_to(mnt)): p.read_bytes() for p in mnt.rglob("*") if p.is_file()}
    landed.pop("log.json")
    assert landed == want


def test_study_details_carry_the_patient_and_study_context(bucket_server, demo_studies, tmp_path):
    """studyDetails: one entry per study asked for, its context equal to what pydicom
    reads from the study's own files, and its totals."""
    import io

    import pydicom

    async def stats():
        cd = await _cd(bucket_server, demo_studies[0], tmp_path)()
        return await cd.get_stats([s.study_uid for s in demo_studies])

    details = asyncio.run(stats())["studyDetails"]
    assert [d["studyUID"] for d in details] == [s.study_uid for s in demo_studies]
    for fx, d in zip(demo_studies, details):
        series = sorted(fx.series)[0]
        members = fetch_tar_members(bucket_server, fx.bucket, fx.datastore, fx.study_uid, series)
        ds = pydicom.dcmread(io.BytesIO(next(iter(members.values()))), stop_before_pixels=True)
        name = " ".join(p for p in str(ds.get("PatientName", "")).split("^") if p) or None
        assert d["patientName"] == name
        assert d["patientID"] == (ds.get("PatientID") or None)
        assert d["studyDate"] == (ds.get("StudyDate") or None)
        assert d["studyDescription"] == (ds.get("StudyDescription") or None)
        assert d["seriesCount"] == len(fx.series) and d["sizeBytes"] == fx.total_dicom_bytes
        assert d["instances"] == sum(len(v) for v in fx.series.values()) and d["savedSizeBytes"] == 0
    assert details[0]["patientName"]              # the real MR study names its patient


def test_verify_takes_changed_and_missing_files_out_of_the_log_and_download_fetches_them(bucket_server,
                                                                                       demo_studies, tmp_path):
    fx = demo_studies[0]
    want = {}
    for series in fx.series:
        for name, data in fetch_tar_members(bucket_server, fx.bucket, fx.datastore, fx.study_uid, series).items():
            want[f"{fx.study_uid}/{series}/{name}"] = data
    asyncio.run(_download(bucket_server, fx, tmp_path))
    flip, gone = sorted(want)[0], sorted(want)[-1]
    data = bytearray((tmp_path / flip).read_bytes())
    data[-1] ^= 0xFF                                    # same size: log.json alone would call it saved
    (tmp_path / flip).write_bytes(bytes(data))
    (tmp_path / gone).unlink()

    async def verify():
        cd = await _cd(bucket_server, fx, tmp_path)()
        return await cd.verify_folder([fx.study_uid])

    report = asyncio.run(verify())
    assert report.missing == [gone] and [p for p, _ in report.changed] == [flip]
    logged = set(json.loads((tmp_path / "log.json").read_text())["logs"])
    key = lambda path: path.replace("/instances/", "/")[:-4]  # noqa: E731
    assert key(flip) not in logged and key(gone) not in logged and len(logged) == len(want) - 2
    job, result, ev = asyncio.run(_download(bucket_server, fx, tmp_path))
    assert result["bytesTotal"] == len(want[flip]) + len(want[gone])       # exactly those two fetched
    got = {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*.dcm")}
    assert got == want
    assert asyncio.run(verify()).clean
