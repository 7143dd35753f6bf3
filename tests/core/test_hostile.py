"""Crafted, hostile COD series on a real bucket server: nothing may land outside the
chosen folder, nothing unverified under its final name, and every refusal is named."""

from __future__ import annotations

import asyncio
import json
import os
import tarfile
import uuid
from functools import lru_cache
from pathlib import Path

import pytest

from cod_retrieve import CodDownload, RetryPolicy, _compat

from support import codbuild
from core_helpers import Recorder, build_tar, crc_b64, dicom_bytes, files_under, run_download

BUCKET = "core-hostile"
DS = "h/dicomweb"
FAST = dict(attempts=3, base_delay=0.001, max_delay=0.005, stall_timeout=20)


def uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


@lru_cache(maxsize=None)
def _dicom(sop: str, source: str = "CT_small.dcm") -> bytes:
    return dicom_bytes(sop, source)


def entry(study, series, member, start, end, data, **extra) -> dict:
    e = {"uri": f"gs://{BUCKET}/{DS}/studies/{study}/series/{series}.tar://{member}",
         "headers": {"start_byte": start, "end_byte": end}, "size": end - start,
         "crc32c": crc_b64(data), "metadata": {}, "version": "1.0"}
    e.update(extra)
    return e


def publish(server, study, series, tar: bytes | None, meta) -> None:
    codbuild.publish_series(server, BUCKET, DS, study, series, tar, meta)


def good_series(server, study, series=None, n=2) -> tuple[str, dict[str, bytes]]:
    """An honest series of ``n`` real instances; returns (series, {sop: bytes})."""
    series = series or uid()
    datas = {uid(): None for _ in range(n)}
    datas = {sop: _dicom(sop) for sop in datas}
    tar, ranges = build_tar([(f"instances/{s}.dcm", d) for s, d in datas.items()])
    meta = {"study_uid": study, "series_uid": series, "cod": {"instances": {
        s: entry(study, series, f"instances/{s}.dcm", *ranges[f"instances/{s}.dcm"], d) for s, d in datas.items()}}}
    publish(server, study, series, tar, meta)
    return series, datas


class Guard:
    """Snapshots of everything around the download folder, to prove nothing leaked."""

    WATCH = [Path("/etc/x.dcm"), Path("/x.dcm"), Path("/tmp/x.dcm"), Path("/tmp/evil")]

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.root = tmp_path / "root"
        self.root.mkdir()
        self.outside = self._outside()
        self.watched = {p: p.exists() or p.is_symlink() for p in self.WATCH}

    def _outside(self):
        parent = sorted(os.listdir(self.tmp.parent))
        inside_tmp = {str(p.relative_to(self.tmp)) for p in self.tmp.rglob("*")
                      if self.root not in p.parents and p != self.root}
        return parent, inside_tmp

    def check(self) -> None:
        assert self._outside() == self.outside, "something was written outside the folder"
        for p, existed in self.watched.items():
            if not existed:
                assert not (p.exists() or p.is_symlink()), f"{p} was created"
        assert not [p for p in self.root.rglob("*") if p.is_symlink()], "a symlink was created"
        assert not [p for p in self.root.rglob("*") if p.name.endswith(".part")], "a .part file was left"


def run(server, guard: Guard, study: str, *, rec=None, **job_options):
    rec = rec or Recorder()

    async def main():
        cd = CodDownload(api_base=server.url, opener=rec, retry=RetryPolicy(**FAST), **job_options)
        await cd.init_directory(guard.root)
        cd.init_bucket({"bucket": BUCKET, "bucketPrefix": DS, "token": "t"})
        stats = await cd.get_stats([study])
        job, result, ev = await run_download(cd, [study])
        return stats, result, ev

    stats, result, ev = asyncio.run(main())
    guard.check()
    return stats, result, ev, rec


def saved(guard: Guard) -> set[str]:
    return files_under(guard.root) - {"log.json"}


def logged(guard: Guard) -> list[str]:
    p = guard.root / "log.json"
    return json.loads(p.read_text())["logs"] if p.exists() else []


def errors_text(ev) -> str:
    return "\n".join(e["error"] for e in ev["error"])


# -- path tricks ------------------------------------------------------------------------

@pytest.mark.parametrize("evil", ["../x.dcm", "/etc/x.dcm", "instances/../../x.dcm", "../../../../tmp/x.dcm"])
def test_member_path_not_in_metadata_is_refused(bucket_server, tmp_path, evil):
    g = Guard(tmp_path)
    study, series, good, bad = uid(), uid(), uid(), uid()
    tar, ranges = build_tar([(f"instances/{good}.dcm", _dicom(good)), (evil, _dicom(bad))])
    meta = {"study_uid": study, "series_uid": series, "cod": {"instances": {
        good: entry(study, series, f"instances/{good}.dcm", *ranges[f"instances/{good}.dcm"], _dicom(good))}}}
    publish(bucket_server, study, series, tar, meta)
    _, result, ev, _ = run(bucket_server, g, study)
    assert saved(g) == {f"{study}/{series}/instances/{good}.dcm"}
    assert f"{evil!r} is not in the series metadata: refused" in errors_text(ev)
    assert not list(g.root.rglob("x.dcm"))


HOSTILE_MEMBERS = ["../../evil.dcm", "../x.dcm", "/etc/x.dcm", "instances/../../../x.dcm", "instances\\..\\x.dcm",
                   "C:/x.dcm", "instances//x.dcm", "instances/./x.dcm", "instances/x\0.dcm"]


def hostile_listed_series(server, evil: str):
    study, series, sop, good, _ = codbuild.hostile_listed_series(server, BUCKET, DS, evil)
    return study, series, sop, good


@pytest.mark.parametrize("evil", HOSTILE_MEMBERS)
def test_member_path_listed_in_metadata_is_refused(bucket_server, tmp_path, evil):
    """Listed in the metadata or not, a member that is not a plain relative path is refused
    with an error naming the series and the member; nothing is written for it."""
    g = Guard(tmp_path)
    study, series, sop, good = hostile_listed_series(bucket_server, evil)
    _, result, ev, _ = run(bucket_server, g, study)
    mine = [e for e in ev["error"] if e["instance"] == sop]
    assert len(mine) == 1, ev["error"]
    assert series in mine[0]["error"] and repr(evil[:200]) in mine[0]["error"] and "refused" in mine[0]["error"]
    assert mine[0]["study"] == study and mine[0]["series"] == series
    assert saved(g) == {f"{study}/{series}/instances/{good}.dcm"}      # the honest one only
    assert logged(g) == [f"{study}/{series}/{good}"]
    assert [f["series"] for f in result["failed"]] == [series]


@pytest.mark.parametrize("evil", ["../../evil.dcm", "/etc/x.dcm"])
def test_member_path_listed_in_metadata_is_refused_in_zip_mode(bucket_server, tmp_path, evil):
    import zipfile
    g = Guard(tmp_path)
    study, series, sop, good = hostile_listed_series(bucket_server, evil)
    downloads = tmp_path / "root" / "downloads"

    async def main():
        cd = CodDownload(api_base=bucket_server.url, retry=RetryPolicy(**FAST))
        cd.spool_folder = _compat.NativeFolder(tmp_path / "root" / "spool")
        cd.downloads_dir = downloads
        cd.init_bucket({"bucket": BUCKET, "bucketPrefix": DS, "token": "t"})
        job = await cd.download([study], zip_output=True)
        errors = []
        job.on_error(errors.append)
        return await job.start(), errors

    result, errors = asyncio.run(main())
    g.check()
    assert any(e["instance"] == sop and repr(evil) in e["error"] and series in e["error"] for e in errors), errors
    with zipfile.ZipFile(downloads / f"{study}.zip") as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert f"{series}/instances/{good}.dcm" in names
        assert not [n for n in names if sop in n]                        # nothing of the hostile member
        assert zf.read(f"{series}/instances/{good}.dcm") == _dicom(good)
    assert [f["series"] for f in result["failed"]] == [series]


# -- non-file members -------------------------------------------------------------------

def test_symlink_and_hardlink_members_are_refused(bucket_server, tmp_path):
    g = Guard(tmp_path)
    study, series, good, other = uid(), uid(), uid(), uid()
    sym = tarfile.TarInfo(f"instances/{other}.dcm")
    sym.type, sym.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hard = tarfile.TarInfo("instances/hard.dcm")
    hard.type, hard.linkname = tarfile.LNKTYPE, f"instances/{good}.dcm"
    tar, ranges = build_tar([(f"instances/{good}.dcm", _dicom(good)), sym, hard])
    a, b = ranges[f"instances/{good}.dcm"]
    meta = {"study_uid": study, "series_uid": series, "cod": {"instances": {
        good: entry(study, series, f"instances/{good}.dcm", a, b, _dicom(good))}}}
    publish(bucket_server, study, series, tar, meta)
    _, result, ev, _ = run(bucket_server, g, study)
    text = errors_text(ev)
    assert f"'instances/{other}.dcm' is a symlink, not a file: refused" in text
    assert "'instances/hard.dcm' is a link, not a file: refused" in text
    assert saved(g) == {f"{study}/{series}/instances/{good}.dcm"}


def test_symlink_in_place_of_a_listed_instance(bucket_server, tmp_path):
    """The metadata promises a file; the tar has a symlink of that name. Refused, then the
    byte range is fetched alone and fails its CRC32C: reported, nothing saved for it."""
    g = Guard(tmp_path)
    study, series, good, victim = uid(), uid(), uid(), uid()
    sym = tarfile.TarInfo(f"instances/{victim}.dcm")
    sym.type, sym.linkname = tarfile.SYMTYPE, "/etc/passwd"
    tar, ranges = build_tar([(f"instances/{good}.dcm", _dicom(good)), sym])
    a, b = ranges[f"instances/{good}.dcm"]
    vdata = _dicom(victim)
    start = b + (-b % 512) + 1536
    meta = {"study_uid": study, "series_uid": series, "cod": {"instances": {
        good: entry(study, series, f"instances/{good}.dcm", a, b, _dicom(good)),
        victim: entry(study, series, f"instances/{victim}.dcm", start, start + len(vdata), vdata)}}}
    publish(bucket_server, study, series, tar, meta)
    _, result, ev, _ = run(bucket_server, g, study)
    text = errors_text(ev)
    assert "is a symlink, not a file: refused" in text
    assert any(e["instance"] == victim for e in ev["error"])
    assert saved(g) == {f"{study}/{series}/instances/{good}.dcm"}
    assert [f["series"] for f in result["failed"]] == [series]


# -- bytes that do not match the metadata ---------------------------------------------------

def test_member_size_disagrees_with_metadata(bucket_server, tmp_path):
    _size_disagreement(bucket_server, tmp_path)


def _size_disagreement(bucket_server, tmp_path):
    g = Guard(tmp_path)
    study, series, good, victim = uid(), uid(), uid(), uid()
    vdata = _dicom(victim)
    tar, ranges = build_tar([(f"instances/{victim}.dcm", vdata), (f"instances/{good}.dcm", _dicom(good))])
    va, vb = ranges[f"instances/{victim}.dcm"]
    meta = {"study_uid": study, "series_uid": series, "cod": {"instances": {
        # metadata: 100 bytes more than the member has, CRC of the real file
        victim: entry(study, series, f"instances/{victim}.dcm", va, vb + 100, vdata),
        good: entry(study, series, f"instances/{good}.dcm", *ranges[f"instances/{good}.dcm"], _dicom(good))}}}
    meta["cod"]["instances"][victim]["crc32c"] = crc_b64(vdata)
    publish(bucket_server, study, series, tar, meta)
    _, result, ev, rec = run(bucket_server, g, study)
    assert saved(g) == {f"{study}/{series}/instances/{good}.dcm"}
    mine = [e for e in ev["error"] if e["instance"] == victim]
    assert len(mine) == 1
    assert "CRC32C" in mine[0]["error"] or "bytes" in mine[0]["error"]
    assert [f["series"] for f in result["failed"]] == [series]
    assert f"{study}/{series}/{victim}" not in logged(g)
    return ev, vdata


def test_member_size_disagreement_is_named_in_the_report(bucket_server, tmp_path):
    ev, vdata = _size_disagreement(bucket_server, tmp_path)
    text = errors_text(ev)
    assert f"has {len(vdata)} bytes, metadata says {len(vdata) + 100}" in text


@pytest.mark.parametrize("small_file", [16 * 1024 * 1024, 1024], ids=["buffered", "streamed-part-file"])
def test_flipped_byte_is_retried_alone_then_reported(bucket_server, tmp_path, small_file):
    g = Guard(tmp_path)
    study, series = uid(), uid()
    sops = [uid() for _ in range(3)]
    datas = {s: _dicom(s) for s in sops}
    tar, ranges = build_tar([(f"instances/{s}.dcm", d) for s, d in datas.items()])
    victim = sops[1]
    a, b = ranges[f"instances/{victim}.dcm"]
    flip = a + (b - a) // 2
    tar = tar[:flip] + bytes([tar[flip] ^ 0x01]) + tar[flip + 1:]
    meta = {"study_uid": study, "series_uid": series, "cod": {"instances": {
        s: entry(study, series, f"instances/{s}.dcm", *ranges[f"instances/{s}.dcm"], d) for s, d in datas.items()}}}
    publish(bucket_server, study, series, tar, meta)
    _, result, ev, rec = run(bucket_server, g, study, small_file=small_file, write_batch=4096)

    assert saved(g) == {f"{study}/{series}/instances/{s}.dcm" for s in sops if s != victim}
    assert not (g.root / study / series / "instances" / f"{victim}.dcm").exists()
    mine = [e for e in ev["error"] if e["instance"] == victim]
    assert len(mine) == 1 and "CRC32C" in mine[0]["error"] and victim in mine[0]["error"]
    assert mine[0]["study"] == study and mine[0]["series"] == series
    # the whole tar once, then the victim's byte range alone (instance_retries = 3 times)
    tars = rec.tar_calls()
    assert "Range" not in tars[0][1]
    assert [h.get("Range") for _, h in tars[1:]] == [f"bytes={a}-{b - 1}"] * 3
    assert [f["series"] for f in result["failed"]] == [series]
    assert sorted(logged(g)) == sorted(f"{study}/{series}/{s}" for s in sops if s != victim)


def test_member_named_for_another_sop_uid(bucket_server, tmp_path):
    """Right CRC for the bytes, wrong name: the DICOM header's own UID gives it away."""
    g = Guard(tmp_path)
    study, series, claimed, real = uid(), uid(), uid(), uid()
    data = _dicom(real)
    tar, ranges = build_tar([(f"instances/{claimed}.dcm", data)])
    meta = {"study_uid": study, "series_uid": series, "cod": {"instances": {
        claimed: entry(study, series, f"instances/{claimed}.dcm", *ranges[f"instances/{claimed}.dcm"], data)}}}
    publish(bucket_server, study, series, tar, meta)
    _, result, ev, _ = run(bucket_server, g, study)
    assert saved(g) == set()
    mine = [e for e in ev["error"] if e["instance"] == claimed]
    assert len(mine) == 1
    assert f"the DICOM header says SOP Instance UID '{real}'" in mine[0]["error"]
    assert [f["series"] for f in result["failed"]] == [series]
    assert logged(g) == []


def test_member_that_is_not_dicom(bucket_server, tmp_path):
    g = Guard(tmp_path)
    study, series, sop = uid(), uid(), uid()
    data = b"MZ" + bytes(300)
    tar, ranges = build_tar([(f"instances/{sop}.dcm", data)])
    meta = {"study_uid": study, "series_uid": series, "cod": {"instances": {
        sop: entry(study, series, f"instances/{sop}.dcm", *ranges[f"instances/{sop}.dcm"], data)}}}
    publish(bucket_server, study, series, tar, meta)
    _, result, ev, _ = run(bucket_server, g, study)
    assert saved(g) == set()
    assert "not a DICOM Part 10 file" in errors_text(ev)


def test_truncated_tar(bucket_server, tmp_path):
    g = Guard(tmp_path)
    study, series = uid(), uid()
    sops = [uid() for _ in range(3)]
    datas = {s: _dicom(s) for s in sops}
    tar, ranges = build_tar([(f"instances/{s}.dcm", d) for s, d in datas.items()])
    a, b = ranges[f"instances/{sops[1]}.dcm"]
    meta = {"study_uid": study, "series_uid": series, "cod": {"instances": {
        s: entry(study, series, f"instances/{s}.dcm", *ranges[f"instances/{s}.dcm"], d) for s, d in datas.items()}}}
    publish(bucket_server, study, series, tar[: a + 1000], meta)      # cut inside the 2nd member
    _, result, ev, rec = run(bucket_server, g, study)
    assert saved(g) == {f"{study}/{series}/instances/{sops[0]}.dcm"}
    text = errors_text(ev)
    assert f"truncated at byte {a + 1000}" in text
    failed_instances = {e["instance"] for e in ev["error"] if e["instance"]}
    assert failed_instances == {sops[1], sops[2]}
    assert [f["series"] for f in result["failed"]] == [series]
    assert "416" in text or "shorter" in text or "ended" in text


# -- listing and metadata tricks ------------------------------------------------------------

@pytest.mark.parametrize("folder", ["1.2.abc", "1.2.3 4", "1.2.3;rm", "%2e%2e", "1.2.3\\x", "..."])
def test_hostile_listing_folder_is_skipped(bucket_server, tmp_path, folder):
    g = Guard(tmp_path)
    study = uid()
    good, datas = good_series(bucket_server, study)
    name = f"{DS}/studies/{study}/series/{folder}/metadata.json"
    doc = {"study_uid": study, "series_uid": folder, "cod": {"instances": {}}}
    bucket_server.upload(BUCKET, name, json.dumps(doc).encode(), "application/json")
    items, prefixes = bucket_server.list_objects(BUCKET, f"{DS}/studies/{study}/series/", "/")
    listed = [p.split("/series/", 1)[1] for p in prefixes]
    assert len(listed) == 2, listed
    stats, result, ev, _ = run(bucket_server, g, study)
    assert any("is not named by a valid DICOM UID: skipped" in w and repr(folder)[1:-1] in w
               for w in stats["warnings"])
    assert stats["totalSeriesCount"] == 1
    assert saved(g) == {f"{study}/{good}/instances/{s}.dcm" for s in datas}
    assert result["succeeded"] == [f"{study}/{good}"]


def test_dotdot_folders_in_a_real_listing_page(bucket_server):
    """fake-gcs-server normalises '..' out of object names (real GCS keeps them), so the
    '../evil' folder is put into a real listing page of the server before parsing it."""
    from cod_retrieve.plan import parse_listing_page

    study = uid()
    good, _ = good_series(bucket_server, study)
    prefix = f"{DS}/studies/{study}/series/"
    status, _, body = bucket_server.request(
        "GET", f"/storage/v1/b/{BUCKET}/o?prefix={prefix.replace('/', '%2F')}&delimiter=%2F")
    assert status == 200
    page = json.loads(body)
    assert page["prefixes"] == [f"{prefix}{good}/"]
    page["prefixes"] += [f"{prefix}../", f"{prefix}../evil/", f"{prefix}1.2/../../x/",
                         f"{DS}/studies/{uid()}/series/1.2.3/", "not-even-close", 17]
    page["nextPageToken"] = "tok/1"
    warnings: list[str] = []
    series, token = parse_listing_page(json.dumps(page).encode(), prefix, warnings)
    assert series == [good] and token == "tok/1"
    assert len(warnings) == 3
    assert all("is not named by a valid DICOM UID: skipped" in w for w in warnings)
    assert "../evil" in warnings[1]


def test_newline_folder_in_a_listing_page():
    from cod_retrieve.plan import parse_listing_page

    prefix = f"{DS}/studies/1.2.3/series/"
    page = {"prefixes": [f"{prefix}1.2.4/", f"{prefix}1.2\n/"]}
    warnings: list[str] = []
    series, _ = parse_listing_page(json.dumps(page).encode(), prefix, warnings)
    assert series == ["1.2.4"]


def test_metadata_not_json(bucket_server, tmp_path):
    g = Guard(tmp_path)
    study = uid()
    good, datas = good_series(bucket_server, study)
    broken = uid()
    tar, _ = build_tar([(f"instances/{uid()}.dcm", b"x")])
    publish(bucket_server, study, broken, tar, b"<html>502 Bad Gateway</html>")
    stats, result, ev, rec = run(bucket_server, g, study)
    warn = [w for w in stats["warnings"] if broken in w]
    assert len(warn) == 1 and "not JSON" in warn[0]
    mine = [e for e in ev["error"] if e["series"] == broken]
    assert mine and "not JSON" in mine[0]["error"] and mine[0]["study"] == study
    assert saved(g) == {f"{study}/{good}/instances/{s}.dcm" for s in datas}
    assert [f["series"] for f in result["failed"]] == [broken]
    assert all(broken not in u for u, _ in rec.tar_calls())


def test_metadata_for_another_study(bucket_server, tmp_path):
    g = Guard(tmp_path)
    study, other = uid(), uid()
    good, datas = good_series(bucket_server, study)
    # a copy of an honest series' metadata under a different study's name
    series, _ = good_series(bucket_server, other)
    raw = json.dumps({"study_uid": other, "series_uid": series, "cod": {"instances": {}}}).encode()
    publish(bucket_server, study, series, None, raw)
    stats, result, ev, _ = run(bucket_server, g, study)
    assert any(f"describes study ['{other}'], not {study}" in w for w in stats["warnings"])
    assert saved(g) == {f"{study}/{good}/instances/{s}.dcm" for s in datas}


def test_metadata_with_hostile_instance_key(bucket_server, tmp_path):
    g = Guard(tmp_path)
    study, series = uid(), uid()
    data = _dicom(uid())
    tar, ranges = build_tar([("instances/x.dcm", data)])
    meta = {"study_uid": study, "series_uid": series, "cod": {"instances": {
        "../../x": entry(study, series, "instances/x.dcm", *ranges["instances/x.dcm"], data)}}}
    publish(bucket_server, study, series, tar, meta)
    stats, result, ev, rec = run(bucket_server, g, study)
    assert any("instance key '../../x' is not a valid DICOM UID" in w for w in stats["warnings"])
    assert saved(g) == set() and rec.tar_calls() == []
