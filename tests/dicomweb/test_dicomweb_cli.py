"""The command line with the other sources: `dicomweb:<root>` against the real Orthanc and
`archive:<url>` against a zip on the real bucket server, run as a user runs it."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pydicom

from support.cli import events, last, run_cli

SAMPLE_TAR = Path("/work/shared/samples/series-1.2.826.0.1.3680043.8.498.11.tar")


def test_dicomweb_from_the_command_line(orthanc_study, tmp_path):
    study = orthanc_study
    want = sorted(hashlib.sha256(study.server.instance_file(i.orthanc_id)).hexdigest() for i in study.instances)
    src = f"dicomweb:{study.server.dicomweb}"
    stats = run_cli("stats", src, study.study_uid, "--json")
    assert stats.returncode == 0, stats.stderr
    assert last(events(stats), "stats")["totalInstanceCount"] == 6
    first = run_cli("download", src, study.study_uid, "--out", tmp_path, "--layout", "descriptive", "--json",
                    "--dump", "metadata")
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "dump" / study.study_uid / "study.json").is_file()
    assert (tmp_path / "dump" / "requests.jsonl").read_text().count("\n") >= 4
    got = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.rglob("*.dcm"))
    assert got == want
    again = run_cli("download", src, study.study_uid, "--out", tmp_path, "--layout", "descriptive", "--json")
    assert again.returncode == 0 and last(events(again), "result")["alreadySaved"] == 6
    ok = run_cli("verify", src, study.study_uid, "--out", tmp_path)
    assert ok.returncode == 0 and "6 files match" in ok.stdout, ok.stdout + ok.stderr


def test_archive_from_the_command_line(bucket_server, tmp_path):
    tree = tmp_path / "export"
    tree.mkdir()
    want = {}
    with tarfile.open(SAMPLE_TAR) as tf:
        for m in tf.getmembers():
            if m.isfile():
                data = tf.extractfile(m).read()
                (tree / Path(m.name).name).write_bytes(data)
                ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
                want[f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}.dcm"] = data
    subprocess.run(["zip", "-qr", str(tmp_path / "e.zip"), "export"], cwd=tmp_path, check=True)
    bucket_server.create_bucket("cod-cli-archives")
    bucket_server.upload("cod-cli-archives", "e.zip", (tmp_path / "e.zip").read_bytes(), "application/zip")
    out = tmp_path / "out"
    r = run_cli("download", f"archive:{bucket_server.url}/cod-cli-archives/e.zip", "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    got = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*.dcm")}
    assert got == want
