"""Downloads from a real DICOMweb server (Orthanc with its DICOMweb plugin) in CPython:
every file byte-equal to what Orthanc returns for /instances/<id>/file, a second run
fetches nothing, a cut connection resumes, a missing instance is reported, layouts,
zips and verify work as for a COD bucket."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path

import pydicom
import pytest

from cod_retrieve import CodDownload
from cod_retrieve.dicomweb import next_offset, parse_dicomweb
from cod_retrieve.errors import BucketError

from core.core_helpers import Recorder, run_download
from support.faultproxy import Fault, FaultProxy, on_path


@pytest.fixture
def dw_proxy(orthanc):
    p = FaultProxy("127.0.0.1", orthanc.port)
    yield p
    p.stop()


def _want(study) -> dict[str, bytes]:
    """SOP UID -> the bytes Orthanc stores (its own file endpoint, not DICOMweb)."""
    return {i.sop_uid: study.server.instance_file(i.orthanc_id) for i in study.instances}


async def _cd(root, url, rec=None, **opts) -> CodDownload:
    cd = CodDownload(opener=rec or Recorder(), **opts)
    if root is not None:
        await cd.init_directory(root)
    cd.init_source({"dicomweb": url})
    return cd


def _retrievals(rec) -> list[str]:
    return [u for u, h in rec.calls if "multipart/related" in h.get("Accept", "")]


def test_paging_decisions():
    assert next_offset(0, 1000, 1000, 1000) == 1000
    assert next_offset(1000, 250, 250, 1000) == 1250      # a short page may be a server's cap: ask on
    assert next_offset(1250, 0, 0, 1000) is None          # an empty page ends it
    assert next_offset(0, 50, 0, 1000) is None            # the same page again: offset ignored
    with pytest.raises(BucketError, match="not an http"):
        parse_dicomweb("ftp://x/dicom-web")
    assert parse_dicomweb({"dicomweb": "http://h:1/dicom-web/", "token": "t"}).root == "http://h:1/dicom-web"


def test_study_lands_byte_equal_and_second_run_fetches_nothing(orthanc_study, tmp_path):
    study = orthanc_study
    want = _want(study)
    rec = Recorder()

    async def go():
        cd = await _cd(tmp_path, study.server.dicomweb, rec)
        stats = await cd.get_stats([study.study_uid])
        job, result, ev = await run_download(cd, [study.study_uid])
        return stats, result, ev

    stats, result, ev = asyncio.run(go())
    assert ev["error"] == [] and len(result["succeeded"]) == 2
    assert stats["totalSeriesCount"] == 2 and stats["totalInstanceCount"] == 6
    assert sorted(str(d["seriesNumber"]) for d in stats["seriesDetails"]) == ["1", "2"]
    assert {d["modality"] for d in stats["seriesDetails"]} == {"CT"}
    got = {p.name[:-4]: p.read_bytes() for p in tmp_path.rglob("*.dcm")}
    assert got == want
    for series, insts in study.series.items():            # the classic layout, as for a bucket
        for i in insts:
            assert (tmp_path / study.study_uid / series / "instances" / f"{i.sop_uid}.dcm").is_file()
    assert len(_retrievals(rec)) == 2                      # one multipart answer per series

    rec.clear()

    async def again():
        cd = await _cd(tmp_path, study.server.dicomweb, rec)
        stats = await cd.get_stats([study.study_uid])
        job, result, ev = await run_download(cd, [study.study_uid])
        report = await cd.verify_folder([study.study_uid])
        return stats, result, report

    stats, result, report = asyncio.run(again())
    assert stats["totalSavedInstanceCount"] == 6 and _retrievals(rec) == []
    assert report.clean and len(report.ok) == 6


def test_cut_connection_resumes_instance_by_instance(orthanc_study, dw_proxy, tmp_path):
    study = orthanc_study
    want = _want(study)
    series = next(iter(study.series))
    cut = on_path(series, Fault("cut", after=30_000))     # mid-way through the series' second instance
    dw_proxy.rules.append(cut)
    rec = Recorder()

    async def go():
        cd = await _cd(tmp_path, f"{dw_proxy.url}/dicom-web", rec)
        return await run_download(cd, [study.study_uid])

    job, result, ev = asyncio.run(go())
    assert cut.fired == 1
    assert ev["error"] == [] and len(result["succeeded"]) == 2
    assert {p.name[:-4]: p.read_bytes() for p in tmp_path.rglob("*.dcm")} == want
    alone = [u for u in _retrievals(rec) if "/instances/" in u]
    assert 1 <= len(alone) < len(study.series[series])     # only what the cut answer did not bring


def test_missing_instance_is_reported(own_orthanc_study, tmp_path):
    study = own_orthanc_study
    series, insts = next(iter(study.series.items()))
    gone = insts[1]

    async def go():
        cd = await _cd(tmp_path, study.server.dicomweb)
        job = await cd.download([study.study_uid])          # listed with all six ...
        study.server.request("DELETE", f"/instances/{gone.orthanc_id}")   # ... then one is gone
        errors, series_events = [], []
        job.on_error(errors.append)
        result = await job.start()
        return errors, result

    errors, result = asyncio.run(go())
    assert [e["instance"] for e in errors] == [gone.sop_uid]
    assert "did not send instance" in errors[0]["error"] and "404" in errors[0]["error"]
    assert [f["series"] for f in result["failed"]] == [series]
    got = {p.name[:-4] for p in tmp_path.rglob("*.dcm")}
    assert got == {i.sop_uid for i in study.instances} - {gone.sop_uid}


def test_descriptive_layout_and_zip_from_dicomweb(orthanc_study, tmp_path):
    study = orthanc_study
    want = _want(study)
    from cod_retrieve._compat import NativeFolder

    async def go():
        cd = await _cd(tmp_path / "folder", study.server.dicomweb, layout="descriptive")
        job, result, ev = await run_download(cd, [study.study_uid])
        assert ev["error"] == []
        zcd = await _cd(None, study.server.dicomweb, layout="media")
        zcd.spool_folder = NativeFolder(tmp_path / "spool")
        zcd.downloads_dir = tmp_path / "zips"
        job = await zcd.download([study.study_uid], zip_output=True)
        errors = []
        job.on_error(errors.append)
        await job.start()
        assert errors == []

    asyncio.run(go())
    files = [p for p in (tmp_path / "folder").rglob("*.dcm")]
    assert len(files) == 6
    for p in files:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        assert p.read_bytes() == want[ds.SOPInstanceUID]
        assert p.parent.name.startswith(f"{ds.SeriesNumber} {ds.Modality}")
        assert p.name == f"{ds.InstanceNumber}.dcm"
    with zipfile.ZipFile(tmp_path / "zips" / f"{study.study_uid}.zip") as zf:
        names = zf.namelist()
        assert "DICOMDIR" in names
        zf.extractall(tmp_path / "unzipped")
    from pydicom.fileset import FileSet
    fs = FileSet(tmp_path / "unzipped" / "DICOMDIR")
    assert {str(i.SOPInstanceUID): Path(i.path).read_bytes() for i in fs} == want
    # the records name each file's own transfer syntax (the listing does not carry it)
    assert {str(i.TransferSyntaxUID) for i in fs} == {str(pydicom.dcmread(io.BytesIO(d)).file_meta.TransferSyntaxUID)
                                                      for d in want.values()}


def test_dump_metadata_frames_and_requests(orthanc_study, tmp_path):
    """dicomweb-dump's job: study and series metadata as the server gives them, each
    instance's frames (equal to the files' own encapsulated frames), a record per request."""
    import json
    from pydicom.encaps import generate_frames

    study = orthanc_study

    async def go():
        cd = await _cd(tmp_path, study.server.dicomweb)
        job = await cd.download([study.study_uid], dump="frames")
        errors = []
        job.on_error(errors.append)
        await job.start()
        return errors

    assert asyncio.run(go()) == []
    dump = tmp_path / "dump" / study.study_uid
    assert [s["0020000D"]["Value"][0] for s in json.loads((dump / "study.json").read_text())] == [study.study_uid]
    for series, insts in study.series.items():
        meta = json.loads((dump / series / "metadata.json").read_text())
        assert sorted(m["00080018"]["Value"][0] for m in meta) == sorted(i.sop_uid for i in insts)
        for i in insts:
            ds = pydicom.dcmread(io.BytesIO(i.data))
            frame = next(generate_frames(ds.PixelData, number_of_frames=1))
            got = (dump / series / i.sop_uid / "frame-1").read_bytes()
            assert got.rstrip(b"\0") == frame.rstrip(b"\0"), i.sop_uid      # even-length padding aside
    records = [json.loads(line) for line in (tmp_path / "dump" / "requests.jsonl").read_text().splitlines()]
    assert records and all(r["status"] == 200 and r["ttfb"] >= 0 for r in records)
    retrievals = [r for r in records if "multipart/related" in r["request"].get("Accept", "")]
    assert retrievals and all(r["ttlb"] is not None and r["ttlb"] >= r["ttfb"] and r["bytes"] > 0 for r in retrievals)
    assert all("authorization" not in {k.lower() for k in r["request"]} for r in records)
    # the files themselves are still exactly the instances, and nothing else is beside them
    assert {p.name[:-4]: p.read_bytes() for p in (tmp_path / study.study_uid).rglob("*.dcm")} == _want(study)


def test_a_refused_transfer_syntax_falls_back(own_orthanc_study, tmp_path):
    """A server that refuses `transfer-syntax=*` (406 here, from the proxy) is asked again
    without it, once for the job; Orthanc then sends what it converts to. The sample's JPEG 2000
    cannot be converted by this Orthanc, so an uncompressed real CT is used."""
    import pydicom
    from support.orthanc import upload_instances
    from support.studies import pydicom_data_dir

    study = own_orthanc_study
    ct = pydicom.dcmread(pydicom_data_dir() / "693_UNCI.dcm")
    upload_instances(study.server, [(pydicom_data_dir() / "693_UNCI.dcm")])
    proxy = FaultProxy("127.0.0.1", study.server.port)
    refuse = on_path(str(ct.SeriesInstanceUID), Fault("status", status=406))
    proxy.rules.append(refuse)
    rec = Recorder()
    try:
        async def go():
            cd = await _cd(tmp_path, f"{proxy.url}/dicom-web", rec)
            return await run_download(cd, [str(ct.StudyInstanceUID)])
        job, result, ev = asyncio.run(go())
    finally:
        proxy.stop()
    assert refuse.fired == 1 and ev["error"] == [] and len(result["succeeded"]) == 1
    accepts = [h["Accept"] for u, h in rec.calls if "multipart/related" in h.get("Accept", "")]
    assert accepts == ['multipart/related; type="application/dicom"; transfer-syntax=*',
                       'multipart/related; type="application/dicom"']
    (path,) = list(tmp_path.rglob("*.dcm"))
    got = pydicom.dcmread(path)
    assert got.SOPInstanceUID == ct.SOPInstanceUID and got.pixel_array.tobytes() == ct.pixel_array.tobytes()


def test_paged_listing_and_resume_of_one_instance(orthanc_study, tmp_path, monkeypatch):
    """QIDO-RS pages of two (Orthanc honours limit/offset): every instance listed once; a
    file deleted after the download is fetched again alone, by instance-level WADO-RS."""
    import cod_retrieve.dicomweb as dicomweb

    study = orthanc_study
    monkeypatch.setattr(dicomweb, "PAGE", 2)
    rec = Recorder()

    async def go():
        cd = await _cd(tmp_path, study.server.dicomweb, rec)
        return await run_download(cd, [study.study_uid])

    job, result, ev = asyncio.run(go())
    assert ev["error"] == [] and len(result["succeeded"]) == 2
    listings = [u for u, h in rec.calls if "limit=2" in u and "/instances?" in u]
    assert len(listings) == 2 * 3                          # per series of 3: pages of 2, 1 and an empty one
    series, insts = next(iter(study.series.items()))
    victim = tmp_path / study.study_uid / series / "instances" / f"{insts[0].sop_uid}.dcm"
    victim.unlink()
    rec.clear()
    job, result, ev = asyncio.run(go())
    assert ev["error"] == [] and victim.read_bytes() == study.server.instance_file(insts[0].orthanc_id)
    assert [u for u in _retrievals(rec)] == [f"{study.server.dicomweb}/studies/{study.study_uid}/series/{series}"
                                             f"/instances/{insts[0].sop_uid}"]


def test_token_provider_answers_a_refusal(orthanc_study, dw_proxy, tmp_path):
    """A server that wants a bearer token (the proxy refuses any other with 401): the
    provider is asked, and every request then carries its token."""
    study = orthanc_study
    dw_proxy.required_token = "fresh"
    asked = []

    def provider():
        asked.append(1)
        return "fresh"

    async def go():
        cd = CodDownload(token_provider=provider)
        await cd.init_directory(tmp_path)
        cd.init_source({"dicomweb": f"{dw_proxy.url}/dicom-web", "token": "stale"})
        return await run_download(cd, [study.study_uid])

    job, result, ev = asyncio.run(go())
    assert ev["error"] == [] and len(result["succeeded"]) == 2 and len(asked) == 1
    assert {s.auth for s in dw_proxy.seen if s.status == 200} == {"Bearer fresh"}
    assert {p.name[:-4]: p.read_bytes() for p in tmp_path.rglob("*.dcm")} == _want(study)
