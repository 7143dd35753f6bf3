"""Space before time, in a real browser whose storage really is small: Firefox ESR
with its profile on a 40 MB tmpfs gives this site a 10 MB quota (its group limit
is computed from the free disk), and `navigator.storage.estimate()` says so.
(Chromium's CDP quota override is enforced on writes but not reported by
estimate(), so a shortfall cannot be staged there.) A study larger than the
quota is refused by download() before a single tar is fetched, with a plain
StorageFullError; a smaller one then downloads into the same origin-private folder.
Python keeps no memory snapshot there (it would take three times the quota). And when
the storage fills up under a zip that is being written (the zip is written behind: the
job does not wait for each write), the job ends with the StorageFullError, hands no
zip to the browser and leaves no spool file; with the space back, the next job's zip is
handed over."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from support.browser import READ_BACK, ROOT, expected_files

FIREFOX = "/usr/bin/firefox-esr"

SCRIPT = r"""
import puppeteer from "puppeteer-core";
const [url, profile, runSource, readSource, argsJson] = process.argv.slice(1);
const browser = await puppeteer.launch({ browser: "firefox", executablePath: "/usr/bin/firefox-esr",
                                         headless: true, userDataDir: profile });
const out = { logs: [] };
try {
  const page = await browser.newPage();
  page.on("console", (m) => out.logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => out.logs.push(`pageerror: ${e}`));
  await page.goto(url);
  out.run = await page.evaluate(`(${runSource})(${argsJson})`);
  out.files = await page.evaluate(`(${readSource})(null)`);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
"""

RUN = """
async ({ api, bucket, prefix, big, small }) => {
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  const estimate = await navigator.storage.estimate();
  const cod = await createCodDownload({ apiBase: api });
  await cod.initDirectory(true);
  cod.initBucket({ bucket, bucketPrefix: prefix, token: 't' });
  let refused = null;
  try {
    await cod.download([big], false);
  } catch (e) {
    refused = { name: e.name, kind: e.kind, message: e.message, isError: e instanceof Error };
  }
  const namesAfterRefusal = [];
  for await (const name of (await navigator.storage.getDirectory()).keys()) namesAfterRefusal.push(name);
  const job = await cod.download([small], false);
  const errors = [];
  job.onError((p) => errors.push(p.error.message));
  const result = await job.start();
  const started = await (await import('/cod-retrieve.mjs')).pythonStarted();
  const snapshots = (await (await caches.open('cod-retrieve-python')).keys()).map((r) => r.url);
  return { estimate, refused, namesAfterRefusal, failed: result.failed, errors, worker: job._rt.local !== true,
           started, snapshots };
}
"""


def _tmpfs_profile(tmp_path, size: str):
    mnt = tmp_path / "profile"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def small_profile(tmp_path):
    yield from _tmpfs_profile(tmp_path, "40m")


@pytest.fixture
def roomier_profile(tmp_path):
    """A quota a few tens of MB: room for the larger demo study, not for much more."""
    yield from _tmpfs_profile(tmp_path, "400m")


@pytest.mark.skipif(not os.path.exists(FIREFOX) or not shutil.which("node"), reason="no firefox-esr or node")
def test_firefox_refuses_a_study_larger_than_its_quota_before_fetching(site_url, fresh_proxy, bucket_server,
                                                                        demo_studies, small_profile, tmp_path):
    small, big = sorted(demo_studies, key=lambda s: s.total_dicom_bytes)
    args = {"api": fresh_proxy.url, "bucket": big.bucket, "prefix": big.datastore,
            "big": big.study_uid, "small": small.study_uid}
    r = subprocess.run(["node", "--input-type=module", "-e", SCRIPT, f"{site_url}/index.html", str(small_profile),
                        RUN, READ_BACK, json.dumps(args)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=dict(os.environ, HOME=str(tmp_path)))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    run = out["run"]
    quota = run["estimate"]["quota"]
    assert small.total_dicom_bytes < quota / 2 and big.total_dicom_bytes > quota, (quota, small, big)
    assert run["worker"]                                            # Python ran in the module's Worker
    # Python's 30 MB memory snapshot would take the room downloads need: none is kept.
    assert run["started"]["from"] == "fresh" and run["snapshots"] == [], run
    assert "a tenth of the" in run["started"]["snapshotSkipped"], run["started"]

    refused = run["refused"]
    assert refused and refused["isError"] and refused["kind"] == refused["name"] == "StorageFullError", run
    assert refused["message"].startswith("not enough space: this download needs "), refused
    assert "the browser's storage for this site has" in refused["message"], refused
    assert run["namesAfterRefusal"] == []                          # nothing written, not even log.json
    tars = [s.path for s in fresh_proxy.seen if s.path.endswith(".tar")]
    assert tars and all(small.study_uid in p and big.study_uid not in p for p in tars), tars

    assert run["failed"] == [] and run["errors"] == [], run
    files = out["files"]
    files.pop("log.json")
    assert files == expected_files(bucket_server.url, small)


# The storage is filled (a file in the origin-private root) between download() and
# start(), leaving about 1 MB for a zip of several MB.
RUN_FILLED = """
async ({ api, bucket, prefix, small }) => {
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  const handoffs = [];
  const click = HTMLAnchorElement.prototype.click;
  HTMLAnchorElement.prototype.click = function () { if (this.download) handoffs.push(this.download); return click.call(this); };
  const cod = await createCodDownload({ apiBase: api });
  cod.initBucket({ bucket, bucketPrefix: prefix, token: 't' });
  const root = await navigator.storage.getDirectory();
  const spool = async () => {
    const names = [];
    try { for await (const n of (await root.getDirectoryHandle('cod-retrieve-spool')).keys()) names.push(n); } catch {}
    return names;
  };
  const once = async () => {
    const job = await cod.download([small], true);
    const errors = [];
    job.onError((p) => errors.push({ kind: p.error.kind, message: p.error.message }));
    return { job, errors };
  };
  const first = await once();
  const { quota, usage } = await navigator.storage.estimate();
  const filler = await (await root.getFileHandle('filler', { create: true })).createWritable();
  await filler.write(new Uint8Array(quota - usage - 1_000_000));
  await filler.close();
  const full = await first.job.start();
  const out = { quota, usage, failed: full.failed.length, errors: first.errors, state: first.job.state,
                handoffs: handoffs.splice(0), spool: await spool() };
  await root.removeEntry('filler');
  const second = await once();
  const done = await second.job.start();
  return { ...out, again: { failed: done.failed.length, errors: second.errors, state: second.job.state,
                            handoffs: handoffs.splice(0), total: done.bytesTotal, saved: done.bytesDone } };
}
"""


@pytest.mark.skipif(not os.path.exists(FIREFOX) or not shutil.which("node"), reason="no firefox-esr or node")
def test_firefox_storage_filling_up_under_a_zip_fails_it_cleanly(site_url, bucket_server, demo_studies,
                                                                 roomier_profile, tmp_path):
    small = max(demo_studies, key=lambda s: s.total_dicom_bytes)
    args = {"api": bucket_server.url, "bucket": small.bucket, "prefix": small.datastore, "small": small.study_uid}
    r = subprocess.run(["node", "--input-type=module", "-e", SCRIPT, f"{site_url}/index.html", str(roomier_profile),
                        RUN_FILLED, "() => null", json.dumps(args)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=dict(os.environ, HOME=str(tmp_path)))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run = json.loads(r.stdout.strip().splitlines()[-1])["run"]
    assert small.total_dicom_bytes > 3_000_000, small          # the zip cannot fit in the 1 MB left
    assert run["failed"] and run["state"] == "failed", run
    full = [e for e in run["errors"] if e["kind"] == "StorageFullError"]
    assert full and "not enough space" in full[0]["message"], run["errors"]
    assert run["handoffs"] == [] and run["spool"] == [], run
    again = run["again"]
    assert again["failed"] == 0 and again["errors"] == [] and again["state"] == "done", again
    assert again["handoffs"] == [f"{small.study_uid}.zip"] and again["saved"] == again["total"], again
