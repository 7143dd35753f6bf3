"""Layouts: templates, safe names, collisions (pure), and whole downloads in every
layout from the real bucket server: bytes equal to the tars' members, a media
folder's and a media zip's DICOMDIR read back with pydicom, resume, verify and
the manifest."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import zipfile
from pathlib import Path

import crc32c
import pydicom
import pytest
from pydicom.fileset import FileSet

from cod_retrieve import CodDownload
from cod_retrieve.crc32c import decode_crc32c
from cod_retrieve.errors import CodError
from cod_retrieve.layout import LayoutError, parse_layout, place, safe_name, too_long
from cod_retrieve.manifest import MANIFEST_NAME, read_manifest
from cod_retrieve.metadata import Instance

from core_helpers import Recorder, fetch_tar_members, run_download

from test_zip_download import read_zip


# -- pure ---------------------------------------------------------------------

def _inst(study: str, series: str, sop: str, number: int | None, **attrs) -> Instance:
    ds = {"00080060": {"vr": "CS", "Value": [attrs.get("modality", "CT")]},
          "0008103E": {"vr": "LO", "Value": [attrs.get("description", "Chest")]},
          "00200011": {"vr": "IS", "Value": [attrs.get("series_number", 1)]},
          "00100020": {"vr": "LO", "Value": [attrs.get("patient_id", "P1")]},
          "00100010": {"vr": "PN", "Value": [{"Alphabetic": attrs.get("patient_name", "Doe^Jane")}]},
          "00080020": {"vr": "DA", "Value": ["20240102"]},
          "00081030": {"vr": "LO", "Value": [attrs.get("study_description", "CT chest")]}}
    if number is not None:
        ds["00200013"] = {"vr": "IS", "Value": [number]}
    return Instance(study, series, sop, f"instances/{sop}.dcm", 0, 1, 0, ds, "1.0")


def _place(spec, series, recorded=None):
    return place(parse_layout(spec), [(insts, insts[0].dicom_json) for insts in series], recorded)


def test_built_in_layouts_and_templates():
    a = [_inst("1.2", "1.2.3", "1.2.3.1", 1), _inst("1.2", "1.2.3", "1.2.3.2", 2)]
    assert _place("classic", [a])["1.2/1.2.3/1.2.3.1"] == ("1.2", "1.2.3", "instances", "1.2.3.1.dcm")
    assert _place("descriptive", [a])["1.2/1.2.3/1.2.3.2"] == ("P1 Doe Jane", "20240102 CT chest", "1 CT Chest", "2.dcm")
    assert _place("media", [a])["1.2/1.2.3/1.2.3.2"] == ("PT000000", "ST000000", "SE000000", "IM000001")
    # a template that names no instance gets the SOP Instance UID as the file name
    assert _place("%PatientID/%StudyInstanceUID/%Modality_%SeriesInstanceUID", [a])["1.2/1.2.3/1.2.3.1"] == \
        ("P1", "1.2", "CT_1.2.3", "1.2.3.1.dcm")
    # any DICOM keyword, from the dictionary; %% is a percent sign
    assert _place("%StudyDate%%/%SOPInstanceUID-%InstanceNumber.dcm", [a])["1.2/1.2.3/1.2.3.2"] == \
        ("20240102%", "1.2.3.2-2.dcm")


@pytest.mark.parametrize("spec, words", [
    ("%NotAKeyword/%SOPInstanceUID", "%NotAKeyword is not a DICOM keyword"),
    ("%PatientID//%SOPInstanceUID", "empty folder name"),
    ("%PatientID/50% done", "a % must start a DICOM keyword"),
    ("flat", "neither classic, descriptive, media nor a template"),
])
def test_bad_templates_are_named(spec, words):
    with pytest.raises(LayoutError, match=words):
        parse_layout(spec)
    with pytest.raises(LayoutError, match=words):       # refused when the downloader is made
        CodDownload(layout=spec)


@pytest.mark.parametrize("raw, safe", [
    ('a<b>c:d"e/f\\g|h?i*j', "a_b_c_d_e_f_g_h_i_j"),
    ("tab\there\x01", "tab here_"),
    ("trailing dots... ", "trailing dots"),
    ("CON", "_CON"), ("con.dcm", "_con.dcm"), ("LPT9", "_LPT9"), ("COM10", "COM10"),
    ("..", "_"), ("", "_"), ("   ", "_"), (".dcm", "_.dcm"), (".hidden", "_.hidden"),
    ("Cafe\u0301", "Caf\u00e9"),                       # NFC, as macOS stores names
])
def test_safe_names(raw, safe):
    assert safe_name(raw) == safe


def test_long_names_are_cut_to_255_bytes_keeping_the_extension():
    name = safe_name("\u00e9" * 300 + ".dcm")
    assert len(name.encode()) <= 255 and name.endswith(".dcm") and name.startswith("\u00e9")
    name.encode().decode()                             # never half a character


def test_collisions_resolve_deterministically_and_case_insensitively():
    # two series with the same number, modality and description; two instances with the same number;
    # a third series whose name differs only in case
    a = [_inst("1.2", "1.2.3", "1.2.3.1", 1), _inst("1.2", "1.2.3", "1.2.3.2", 1), _inst("1.2", "1.2.3", "1.2.3.3", None)]
    b = [_inst("1.2", "1.2.4", "1.2.4.1", 1)]
    c = [_inst("1.2", "1.2.5", "1.2.5.1", 1, description="CHEST")]
    paths = _place("descriptive", [a, b, c])
    assert [paths[i.log_key][2:] for i in a] == [("1 CT Chest", "1.dcm"), ("1 CT Chest", "1 (2).dcm"),
                                                  ("1 CT Chest", "_.dcm")]
    assert paths["1.2/1.2.4/1.2.4.1"][2:] == ("1 CT Chest (2)", "1.dcm")
    assert paths["1.2/1.2.5/1.2.5.1"][2:] == ("1 CT CHEST (3)", "1.dcm")
    assert _place("descriptive", [a, b, c]) == paths    # the same plan, the same names
    assert len(set(paths.values())) == 5


def test_recorded_paths_are_kept_and_never_handed_to_another_instance():
    a = [_inst("1.2", "1.2.3", "1.2.3.1", 1)]
    b = [_inst("1.2", "1.2.4", "1.2.4.1", 1)]
    first = _place("descriptive", [a, b])
    # a later job that selects only series b keeps b's recorded name ...
    again = _place("descriptive", [b], recorded={"1.2/1.2.4/1.2.4.1": first["1.2/1.2.4/1.2.4.1"]})
    assert again["1.2/1.2.4/1.2.4.1"] == first["1.2/1.2.4/1.2.4.1"]
    # ... and a job for b alone in a folder that has a's files does not take a's folder
    only_b = _place("descriptive", [b], recorded={"1.2/1.2.3/1.2.3.1": first["1.2/1.2.3/1.2.3.1"]})
    assert only_b["1.2/1.2.4/1.2.4.1"][2] == "1 CT Chest (2)"
    media = _place("media", [b], recorded={"1.2/1.2.3/1.2.3.1": ("PT000000", "ST000000", "SE000000", "IM000000")})
    assert media["1.2/1.2.4/1.2.4.1"] == ("PT000000", "ST000000", "SE000001", "IM000000")


def test_paths_past_windows_limit_are_counted():
    count, longest = too_long([("a" * 100, "b" * 100, "c.dcm"), ("x", "y.dcm")], root_length=60)
    assert count == 1 and longest.startswith("a" * 100)


# -- real downloads -----------------------------------------------------------

def _sources(server, studies) -> dict[str, bytes]:
    """SOP Instance UID -> the bytes its series tar holds."""
    out = {}
    for fx in studies:
        for series, sops in fx.series.items():
            members = fetch_tar_members(server, fx.bucket, fx.datastore, fx.study_uid, series)
            for sop in sops:
                out[sop] = members[f"instances/{sop}.dcm"]
    return out


async def _cd(server, fx, root=None, rec=None, **opts) -> CodDownload:
    cd = CodDownload(api_base=server.url, opener=rec or Recorder(), **opts)
    if root is not None:
        await cd.init_directory(root)
    cd.init_bucket({"bucket": fx.bucket, "bucketPrefix": fx.datastore, "token": "t"})
    return cd


def _dicom_files(root: Path) -> dict[str, Path]:
    """SOP Instance UID -> path of every DICOM file under root (read back with pydicom)."""
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and p.name not in ("log.json", "DICOMDIR", MANIFEST_NAME):
            out[str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)] = p
    return out


def _descriptive_path(ds) -> tuple[str, ...]:
    """Where the descriptive layout puts an instance, from its own attributes."""
    def text(*values):
        return safe_name(" ".join(str(v) for v in values if v not in (None, "")))
    name = " ".join(p for p in str(ds.get("PatientName", "")).split("^") if p)
    return (text(ds.get("PatientID"), name), text(ds.get("StudyDate"), ds.get("StudyDescription")),
            text(ds.get("SeriesNumber"), ds.get("Modality"), ds.get("SeriesDescription")),
            f"{ds.get('InstanceNumber', '_')}.dcm")


def test_descriptive_folder_resume_and_verify(bucket_server, demo_studies, tmp_path):
    uids = [fx.study_uid for fx in demo_studies]
    src = _sources(bucket_server, demo_studies)
    rec = Recorder()

    async def first():
        cd = await _cd(bucket_server, demo_studies[0], tmp_path, rec, layout="descriptive")
        return await run_download(cd, uids)

    job, result, ev = asyncio.run(first())
    assert ev["error"] == [] and len(result["succeeded"]) == 7
    found = _dicom_files(tmp_path)
    assert set(found) == set(src) and len(found) == 17
    study_folders: dict[str, set] = {}
    for sop, path in found.items():
        assert path.read_bytes() == src[sop], sop
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        rel, own = path.relative_to(tmp_path).parts, _descriptive_path(ds)
        assert rel[2:] == own[2:]                    # series folder and file name: the instance's own
        study_folders.setdefault(ds.StudyInstanceUID, set()).add((rel[:2], own[:2]))
    for study, seen in study_folders.items():       # one folder per study, named by one of its instances
        assert len({rel for rel, _ in seen}) == 1 and next(iter(seen))[0] in {own for _, own in seen}, seen
    log = json.loads((tmp_path / "log.json").read_text())
    assert log["layout"] == "descriptive" and len(log["logs"]) == 17
    assert {tuple(p.split("/")) for p in log["paths"].values()} == {f.relative_to(tmp_path).parts for f in found.values()}

    # a second run fetches nothing: every file is where log.json says
    rec.clear()

    async def again():
        cd = await _cd(bucket_server, demo_studies[0], tmp_path, rec, layout="descriptive")
        stats = await cd.get_stats(uids)
        job, result, ev = await run_download(cd, uids)
        return stats, result

    stats, result = asyncio.run(again())
    assert stats["totalSavedInstanceCount"] == 17 and rec.tar_calls() == []

    # verify reads the folder's layout from log.json: a flipped byte and a deleted file
    victims = sorted(found)[:2]
    data = bytearray(found[victims[0]].read_bytes())
    data[-1] ^= 0xFF
    found[victims[0]].write_bytes(bytes(data))
    found[victims[1]].unlink()

    async def check():
        cd = await _cd(bucket_server, demo_studies[0], tmp_path)      # no layout given: the folder's
        return (await cd.verify_folder(uids)).to_dict()

    report = asyncio.run(check())
    assert report["missing"] == [str(found[victims[1]].relative_to(tmp_path))]
    assert [c["path"] for c in report["changed"]] == [str(found[victims[0]].relative_to(tmp_path))]
    assert report["extra"] == []
    rec.clear()
    asyncio.run(first())                                # fetches exactly those two, in place
    assert len(rec.tar_calls()) == 2
    assert {s: p.read_bytes() for s, p in _dicom_files(tmp_path).items()} == src


def test_a_folder_keeps_its_layout(bucket_server, demo_studies, tmp_path):
    fx = demo_studies[0]

    async def go():
        cd = await _cd(bucket_server, fx, tmp_path)
        await (await cd.download([fx.study_uid])).start()
        cd2 = await _cd(bucket_server, fx, tmp_path, layout="media")
        with pytest.raises(CodError, match="holds a download in the layout 'classic'"):
            await cd2.download([fx.study_uid])

    asyncio.run(go())


def test_media_folder_dicomdir_reads_back(bucket_server, demo_studies, tmp_path):
    uids = [fx.study_uid for fx in demo_studies]
    src = _sources(bucket_server, demo_studies)

    async def go():
        cd = await _cd(bucket_server, demo_studies[0], tmp_path, layout="media", manifest=True)
        return await run_download(cd, uids)

    job, result, ev = asyncio.run(go())
    assert ev["error"] == []
    for p in tmp_path.rglob("*"):
        rel = p.relative_to(tmp_path).parts
        if p.is_file() and rel[0] not in ("log.json", "DICOMDIR", MANIFEST_NAME):
            assert len(rel) == 4 and all(len(c) == 8 and c.isalnum() and c.isupper() for c in rel), rel
    fs = FileSet(tmp_path / "DICOMDIR")
    assert len(fs) == 17
    listed = {}
    for inst in fs:
        listed[str(inst.SOPInstanceUID)] = Path(inst.path).read_bytes()
    assert listed == src
    # the records carry the patient, study and series the files do
    assert sorted(fs.find_values("PatientID")) == sorted({str(pydicom.dcmread(p, stop_before_pixels=True).PatientID)
                                                          for p in _dicom_files(tmp_path).values()})
    # the manifest: every instance, its path, size and CRC32C; read back as the same selection
    rows = list(csv.DictReader(io.StringIO((tmp_path / MANIFEST_NAME).read_text())))
    assert len(rows) == 17
    for row in rows:
        data = (tmp_path / row["Path"]).read_bytes()
        assert data == src[row["SOPInstanceUID"]]
        assert int(row["SizeBytes"]) == len(data) and decode_crc32c(row["CRC32C"]) == crc32c.crc32c(data)
        assert row["Status"] == row["SeriesStatus"] == "saved" and row["SeriesError"] == ""
    sel = read_manifest((tmp_path / MANIFEST_NAME).read_text())
    assert sel.studies == uids and sorted(sel.series) == sorted(s for fx in demo_studies for s in fx.series)


def test_media_zip_and_template_zip(bucket_server, demo_studies, tmp_path):
    fx = demo_studies[1]
    src = _sources(bucket_server, [fx])
    from cod_retrieve._compat import NativeFolder

    def zip_with(layout):
        dl = tmp_path / layout.replace("%", "").replace("/", "-")
        async def go():
            cd = await _cd(bucket_server, fx, layout=layout, manifest=True)
            cd.spool_folder = NativeFolder(tmp_path / "spool")
            cd.downloads_dir = dl
            job = await cd.download([fx.study_uid], zip_output=True)
            errors = []
            job.on_error(errors.append)
            await job.start()
            assert errors == []
        asyncio.run(go())
        return dl / f"{fx.study_uid}.zip"

    path = zip_with("media")
    entries = read_zip(path)                            # zipfile and Info-ZIP unzip -t agree it is whole
    assert "DICOMDIR" in entries and MANIFEST_NAME in entries
    out = tmp_path / "unzipped"
    subprocess.run(["/usr/bin/unzip", "-q", str(path), "-d", str(out)], check=True, timeout=120)
    fs = FileSet(out / "DICOMDIR")
    assert {str(i.SOPInstanceUID): Path(i.path).read_bytes() for i in fs} == src
    rows = list(csv.DictReader(io.StringIO(entries[MANIFEST_NAME].decode())))
    assert {r["Path"] for r in rows} == set(entries) - {"DICOMDIR", MANIFEST_NAME}

    entries = read_zip(zip_with("%Modality/%SeriesNumber/%InstanceNumber.dcm"))
    names = sorted(set(entries) - {MANIFEST_NAME})
    assert len(names) == len(src) and all(n.count("/") == 2 and n.endswith(".dcm") for n in names)
    assert {str(pydicom.dcmread(io.BytesIO(entries[n]), stop_before_pixels=True).SOPInstanceUID): entries[n]
            for n in names} == src
    with zipfile.ZipFile(path) as zf:               # the media zip: 8-character IDs only
        assert all(len(part) <= 8 for n in zf.namelist() if n not in (MANIFEST_NAME,) for part in n.split("/"))
