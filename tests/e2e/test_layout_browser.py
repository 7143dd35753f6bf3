"""Layouts in headless Chromium against the real bucket: the page's layout choice
(descriptive, with the manifest), a media folder and a media zip through the JS
module, each DICOMDIR read back with pydicom and every file compared with the
bucket's bytes; a second download fetches nothing."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import subprocess
import urllib.parse
from pathlib import Path

import pydicom
from pydicom.fileset import FileSet

from support.browser import download_from_page, expected_files, read_folder

# Every file under an OPFS folder, as base64 (small studies only).
READ_BYTES = """
async (name) => {
  const root = await (await navigator.storage.getDirectory()).getDirectoryHandle(name);
  const out = {};
  async function walk(dir, prefix) {
    for await (const [n, h] of dir.entries()) {
      if (h.kind === 'directory') { await walk(h, prefix + n + '/'); continue; }
      const bytes = new Uint8Array(await (await h.getFile()).arrayBuffer());
      let s = '';
      for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      out[prefix + n] = btoa(s);
    }
  }
  await walk(root, '');
  return out;
}
"""

MODULE = """
async ({ api, bucket, prefix, study, folder, zip, layout }) => {
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  const cod = await createCodDownload({ apiBase: api, layout, manifest: true });
  if (!zip) { window.__pickedName = folder; await cod.initDirectory(); }
  cod.initBucket({ bucket, bucketPrefix: prefix, token: 't' });
  const job = await cod.download([study], zip);
  const errors = [], saves = [];
  job.onError((p) => errors.push(p.error.message));
  job.onSave((p) => saves.push(p.file.path));
  const result = await job.start();
  return { errors, saves, failed: result.failed.length };
}
"""


def _by_hash(files: dict) -> list[str]:
    return sorted(v["sha256"] for v in files.values())


def _write_tree(files: dict[str, bytes], root: Path) -> None:
    for rel, data in files.items():
        p = root.joinpath(*rel.split("/"))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def _check_file_set(root: Path, want: dict) -> None:
    """The DICOMDIR lists every instance, and each file it names holds the bucket's bytes."""
    fs = FileSet(root / "DICOMDIR")
    assert len(fs) == len(want)
    assert sorted(hashlib.sha256(Path(i.path).read_bytes()).hexdigest() for i in fs) == _by_hash(want)
    for inst in fs:
        rel = Path(inst.path).relative_to(root).parts
        assert len(rel) == 4 and all(len(c) == 8 and c.isupper() for c in rel)
        assert pydicom.dcmread(inst.path, stop_before_pixels=True).SOPInstanceUID == inst.SOPInstanceUID


def test_page_descriptive_layout_with_manifest(page, site_url, bucket_server, demo_studies):
    fx = demo_studies[0]
    want = expected_files(bucket_server.url, fx)
    q = [("api", bucket_server.url), ("bucket", fx.bucket), ("prefix", fx.datastore), ("StudyInstanceUIDs", fx.study_uid)]
    page.goto(f"{site_url}/index.html?{urllib.parse.urlencode(q)}")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    page.get_by_label("Layout").select_option("descriptive")
    page.get_by_label("Write a manifest").check()
    download_from_page(page, "layout-page")

    got = read_folder(page, "layout-page")
    log = json.loads(base64.b64decode(page.evaluate(READ_BYTES, "layout-page")["log.json"]))
    manifest = got.pop("cod-manifest.csv")
    got.pop("log.json")
    assert _by_hash(got) == _by_hash(want)                       # every instance, byte for byte
    assert log["layout"] == "descriptive" and sorted(log["paths"].values()) == sorted(got)
    for rel in got:                                              # patient / study / series / number.dcm
        parts = rel.split("/")
        assert len(parts) == 4 and parts[0].startswith(fx_patient(want, bucket_server, fx)) and parts[3].endswith(".dcm")
    rows = list(csv.DictReader(io.StringIO(base64.b64decode(
        page.evaluate(READ_BYTES, "layout-page")["cod-manifest.csv"]).decode())))
    assert manifest["size"] > 0 and sorted(r["Path"] for r in rows) == sorted(got)
    assert {r["Path"]: int(r["SizeBytes"]) for r in rows} == {k: v["size"] for k, v in got.items()}

    # a second Download fetches nothing: every file is where log.json says
    page.get_by_role("button", name="Check").click()
    page.wait_for_function("document.getElementById('summary').textContent.includes('already saved')")
    assert "0 B to download" in page.locator("#summary").inner_text()


def fx_patient(want, server, fx) -> str:
    """The study's PatientID, read from one of its instances (straight from the bucket)."""
    import urllib.request
    import tarfile
    series = next(iter(fx.series))
    name = f"{fx.datastore}/studies/{fx.study_uid}/series/{series}"
    with tarfile.open(fileobj=io.BytesIO(urllib.request.urlopen(f"{server.url}/{fx.bucket}/{name}.tar").read())) as tf:
        member = next(m for m in tf.getmembers() if m.isfile())
        return str(pydicom.dcmread(tf.extractfile(member), stop_before_pixels=True).PatientID)


def test_module_media_folder_dicomdir(page, site_url, bucket_server, demo_studies, tmp_path):
    fx = demo_studies[0]
    want = expected_files(bucket_server.url, fx)
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    out = page.evaluate(MODULE, {"api": bucket_server.url, "bucket": fx.bucket, "prefix": fx.datastore,
                                 "study": fx.study_uid, "folder": "layout-media", "zip": False, "layout": "media"})
    assert out["errors"] == [] and out["failed"] == 0
    files = {k: base64.b64decode(v) for k, v in page.evaluate(READ_BYTES, "layout-media").items()}
    assert "DICOMDIR" in files and "cod-manifest.csv" in files
    _write_tree(files, tmp_path / "media")
    _check_file_set(tmp_path / "media", want)


def test_module_media_zip_dicomdir(page, site_url, bucket_server, demo_studies, tmp_path):
    fx = demo_studies[0]
    want = expected_files(bucket_server.url, fx)
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    with page.expect_download() as info:
        out = page.evaluate(MODULE, {"api": bucket_server.url, "bucket": fx.bucket, "prefix": fx.datastore,
                                     "study": fx.study_uid, "folder": None, "zip": True, "layout": "media"})
    assert out["errors"] == [] and out["failed"] == 0
    assert all(s.startswith(f"{fx.study_uid}.zip:PT") for s in out["saves"])
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    r = subprocess.run(["/usr/bin/unzip", "-t", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "No errors detected" in r.stdout, r.stdout + r.stderr
    subprocess.run(["/usr/bin/unzip", "-q", str(path), "-d", str(tmp_path / "unzipped")], check=True, timeout=120)
    _check_file_set(tmp_path / "unzipped", want)


def test_module_template_layout_folder(page, site_url, bucket_server, demo_studies):
    """A %Keyword template through the module: every file where the template puts it, byte-equal."""
    fx = demo_studies[1]
    want = expected_files(bucket_server.url, fx)
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    out = page.evaluate(MODULE, {"api": bucket_server.url, "bucket": fx.bucket, "prefix": fx.datastore,
                                 "study": fx.study_uid, "folder": "layout-template", "zip": False,
                                 "layout": "%PatientID/%Modality_%SeriesNumber/%InstanceNumber_%SOPInstanceUID.dcm"})
    assert out["errors"] == [] and out["failed"] == 0
    files = {k: base64.b64decode(v) for k, v in page.evaluate(READ_BYTES, "layout-template").items()}
    files.pop("log.json"), files.pop("cod-manifest.csv")
    assert sorted(hashlib.sha256(d).hexdigest() for d in files.values()) == _by_hash(want)
    for rel, data in files.items():
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        assert rel == f"{ds.PatientID}/{ds.Modality}_{ds.SeriesNumber}/{ds.InstanceNumber}_{ds.SOPInstanceUID}.dcm"
