"""An archive URL as the source in headless Chromium: a zip made by Info-ZIP `zip` and a
tar.gz made by `tar`, served by the real bucket server (which allows any origin), through
the page's source choice and through the module; every DICOM file lands by its own UIDs,
byte-equal, and the file that is not DICOM is listed, not written."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import urllib.parse
from pathlib import Path

import pydicom

from support.browser import download_from_page, read_folder

SAMPLE_TAR = Path("/work/shared/samples/series-1.2.826.0.1.3680043.8.498.11.tar")
BUCKET = "cod-archives-browser"


def _tree(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The sample instances and a note in a folder; path each lands at -> sha256."""
    root = tmp_path / "export"
    (root / "CT").mkdir(parents=True)
    want = {}
    with tarfile.open(SAMPLE_TAR) as tf:
        for m in tf.getmembers():
            if not m.isfile():
                continue
            data = tf.extractfile(m).read()
            (root / "CT" / Path(m.name).name).write_bytes(data)
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            want[f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}.dcm"] = \
                hashlib.sha256(data).hexdigest()
    (root / "notes.txt").write_text("not an image\n")
    return root, want


def _serve(server, name: str, data: bytes) -> str:
    server.create_bucket(BUCKET)
    server.upload(BUCKET, name, data, "application/octet-stream")
    return f"{server.url}/{BUCKET}/{name}"


def test_page_archive_zip(page, site_url, bucket_server, tmp_path):
    root, want = _tree(tmp_path)
    subprocess.run(["zip", "-qr", str(tmp_path / "a.zip"), root.name], cwd=root.parent, check=True)
    url = _serve(bucket_server, "xnat/scans/ALL/files", (tmp_path / "a.zip").read_bytes()) + "?format=zip"
    page.goto(f"{site_url}/index.html?{urllib.parse.urlencode([('archive', url)])}")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    assert page.get_by_label("Archive URL (zip, tar, tar.gz)").is_checked()
    download_from_page(page, "archive-page")
    got = {k: v["sha256"] for k, v in read_folder(page, "archive-page").items()}
    got.pop("log.json")
    assert got == want
    assert page.locator("#series-table tbody td:last-child").all_inner_texts() == ["saved"]   # the series it found
    assert "skipped export/notes.txt: not a DICOM file" in page.locator("#errors").inner_text()


def test_module_archive_tar_gz(page, site_url, bucket_server, tmp_path):
    root, want = _tree(tmp_path)
    subprocess.run(["tar", "-C", str(root.parent), "-czf", str(tmp_path / "a.tgz"), root.name], check=True)
    url = _serve(bucket_server, "nbia/series.tgz", (tmp_path / "a.tgz").read_bytes())
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    out = page.evaluate("""async ({ url }) => {
        const { createCodDownload } = await import('/cod-retrieve.mjs');
        const cod = await createCodDownload({});
        window.__pickedName = 'archive-module';
        await cod.initDirectory();
        cod.initSource({ archive: url });
        const job = await cod.download([], false);
        const errors = [], series = [];
        job.onError((p) => errors.push(p.error.message));
        job.onSeries((p) => series.push(p.status));
        const result = await job.start();
        return { errors, series, skipped: result.skipped, succeeded: result.succeeded };
    }""", {"url": url})
    assert out["errors"] == [] and len(out["succeeded"]) == 1 and out["series"] == ["downloading", "saved"]
    assert [s["name"] for s in out["skipped"]] == ["export/notes.txt"]
    got = {k: v["sha256"] for k, v in read_folder(page, "archive-module").items()}
    got.pop("log.json")
    assert got == want
