"""Zip mode in headless Chromium: the page's "Download as zip" button, one
`<study>.zip` per study captured from the browser's downloads and checked
against the bucket (names, entries, SHA-256 of every instance, unzip -t)."""

from __future__ import annotations

import hashlib
import subprocess
import time
import urllib.parse
import zipfile

from support.browser import expected_files, wait_for_downloads

UNZIP = "/usr/bin/unzip"

SPOOL_LIST = """
async () => {
  const root = await navigator.storage.getDirectory();
  let dir;
  try { dir = await root.getDirectoryHandle('cod-retrieve-spool'); } catch { return []; }
  const names = [];
  for await (const n of dir.keys()) names.push(n);
  return names.sort();
}
"""


# Spool files are removed a while (2 minutes) after their hand-over to the
# browser: tests that look at what is left make that "never", so what they see
# does not depend on how long the checks before took.
KEEP_SPOOL = """async () => {
  const { loadRuntime } = await import('./cod-retrieve.mjs');
  (await loadRuntime()).runPython('import cod_retrieve.zipsink as z; z.KEEP_AFTER_HANDOFF = 1e9');
}"""

# Records each hand-over to the browser's download (an <a download> click) and
# whether the job had ended (body[data-job-state]) at that moment.
HANDOFFS = """
window.__handoffs = [];
const click = HTMLAnchorElement.prototype.click;
HTMLAnchorElement.prototype.click = function () {
  if (this.download) window.__handoffs.push({ name: this.download, ended: !!document.body.dataset.jobState });
  return click.call(this);
};
"""


def page_url(site_url, server, studies) -> str:
    q = [("api", server.url), ("bucket", studies[0].bucket), ("prefix", studies[0].datastore),
         ("token", "secret-token")]
    q += [("StudyInstanceUIDs", s.study_uid) for s in studies]
    return f"{site_url}/index.html?{urllib.parse.urlencode(q)}"


def check_zip(path, study, want_all: dict) -> None:
    prefix = f"{study.study_uid}/"
    want = {k[len(prefix):]: v for k, v in want_all.items() if k.startswith(prefix)}
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        got = {}
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            data = zf.read(info)
            got[info.filename] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert got == want
    r = subprocess.run([UNZIP, "-t", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "No errors detected" in r.stdout, r.stdout + r.stderr


def test_page_zip_two_studies(page, site_url, bucket_server, demo_studies, tmp_path):
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    page.add_init_script(HANDOFFS)
    page.goto(page_url(site_url, bucket_server, demo_studies))
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    page.evaluate(KEEP_SPOOL)
    # a stale spool file of an interrupted earlier job: removed by the next run
    page.evaluate("""async () => {
      const root = await navigator.storage.getDirectory();
      const d = await root.getDirectoryHandle('cod-retrieve-spool', { create: true });
      const w = await (await d.getFileHandle('j0dead-1.2.3.zip', { create: true })).createWritable();
      await w.write(new Uint8Array(1000)); await w.close();
    }""")

    t0 = time.monotonic()
    page.get_by_role("button", name="Download as zip").click()
    page.wait_for_selector("body[data-job-state]", timeout=120_000)
    seconds = time.monotonic() - t0
    assert page.evaluate("document.body.dataset.jobState") == "done", page.locator("#errors").inner_text()
    assert "(100 %)" in page.locator("#overall-text").inner_text()
    assert "Downloads folder" in page.locator("#overall-text").inner_text()
    statuses = page.locator("#series-table tbody td:last-child").all_inner_texts()
    assert statuses == ["saved"] * 7

    # both zips were handed to the browser before on_complete (the job state is set after it)
    handoffs = page.evaluate("window.__handoffs")
    assert sorted(h["name"] for h in handoffs) == sorted(f"{s.study_uid}.zip" for s in demo_studies)
    assert not any(h["ended"] for h in handoffs), handoffs
    wait_for_downloads(page, downloads, 2)
    assert len(downloads) == 2, [d.suggested_filename for d in downloads]
    assert sorted(d.suggested_filename for d in downloads) == sorted(f"{s.study_uid}.zip" for s in demo_studies)
    total = check_downloads(downloads, demo_studies, bucket_server, tmp_path)
    print(f"\nzip mode, page: {total / 1e6:.1f} MB of zips in {seconds:.2f} s")

    # only this job's spool files remain (kept while the browser reads them)
    left = page.evaluate(SPOOL_LIST)
    assert "j0dead-1.2.3.zip" not in left
    assert len(left) == 2 and all(n.endswith(".zip") for n in left)


def test_module_zip_then_next_run_cleans_spool(page, site_url, bucket_server, demo_studies, tmp_path):
    """Through the JS module: events per instance, zip names in `save` events;
    a second job (same page) removes nothing it still needs, and the spool of
    the first is gone once its keep time is over (shortened here)."""
    fx = demo_studies[0]
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    page.evaluate(KEEP_SPOOL)
    with page.expect_download() as info:
        result = page.evaluate("""async ([api, bucket, prefix, uid]) => {
          const { createCodDownload } = await import('./cod-retrieve.mjs');
          const cod = await createCodDownload({ apiBase: api });
          cod.initBucket({ bucket, bucketPrefix: prefix, token: 't' });
          const job = await cod.download([uid], true);
          const saves = [], errors = [];
          job.onSave((p) => saves.push(p.file.path));
          job.onError((p) => errors.push(p.error.message));
          const r = await job.start();
          return { saves, errors, failed: r.failed.length, done: r.bytesDone, total: r.bytesTotal };
        }""", [bucket_server.url, fx.bucket, fx.datastore, fx.study_uid])
    assert result["errors"] == [] and result["failed"] == 0
    assert result["done"] == result["total"]
    assert len(result["saves"]) == sum(len(v) for v in fx.series.values())
    assert all(s.startswith(f"{fx.study_uid}.zip:") and s.endswith(".dcm") for s in result["saves"])
    d = info.value
    path = tmp_path / d.suggested_filename
    d.save_as(path)
    assert d.suggested_filename == f"{fx.study_uid}.zip"
    check_zip(path, fx, expected_files(bucket_server.url, fx))
    assert len(page.evaluate(SPOOL_LIST)) == 1


def check_study_zips(folder, studies, server) -> int:
    """Every study's zip in `folder` holds exactly the bucket's instances; returns zip bytes."""
    want = {}
    for s in studies:
        want.update(expected_files(server.url, s))
    total = 0
    for s in studies:
        path = folder / f"{s.study_uid}.zip"
        total += path.stat().st_size
        check_zip(path, s, want)
    return total


def check_downloads(downloads, studies, server, folder) -> int:
    """Save each captured download and check it as a study zip; returns zip bytes."""
    want = {}
    for s in studies:
        want.update(expected_files(server.url, s))
    total = 0
    for d in downloads:
        assert d.failure() is None
        path = folder / d.suggested_filename
        d.save_as(path)
        total += path.stat().st_size
        study = next(s for s in studies if f"{s.study_uid}.zip" == d.suggested_filename)
        check_zip(path, study, want)
    return total
