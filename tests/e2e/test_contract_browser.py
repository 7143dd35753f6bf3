"""The original cod-retrieve's contract seen from a portal in headless Chromium, against the
real bucket server: getStats' `series` and `items`, the payloads (onSave's file object and
its buffer), hostile member names in folder and zip mode, what counts as saved, and a full
disk (the origin's quota, set through CDP)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

from support import codbuild
from support.browser import expected_files, read_folder
from support.contract import EXTRACTED_FILE_KEYS, KEYS, SAVED_FILE_KEYS, tar_label

HOSTILE_BUCKET, HOSTILE_DS = "e2e-hostile", "h/dicomweb"

RUN = """
async ({ api, bucket, prefix, uids, folder, zip, truncate }) => {
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  const cod = await createCodDownload({ apiBase: api, retry: { attempts: 2, base_delay: 0.01, max_delay: 0.02 } });
  if (!zip) { window.__pickedName = folder; await cod.initDirectory(); }
  cod.initBucket({ bucket, bucketPrefix: prefix, token: 't' });
  const hex = async (buf) => [...new Uint8Array(await crypto.subtle.digest('SHA-256', buf))]
    .map(b => b.toString(16).padStart(2, '0')).join('');
  const stats = await cod.getStats(uids);
  const job = await cod.download(uids, !!zip);
  const ev = { progress: [], download: [], extract: [], save: [], complete: [], error: [], series: [] };
  const keep = (name) => (p) => ev[name].push({ ...JSON.parse(JSON.stringify(p)), __keys: Object.keys(p) });
  job.onProgress(keep('progress')).onDownload(keep('download')).onExtract(keep('extract'))
     .onComplete(keep('complete')).onSeries(keep('series'))
     .onError(p => ev.error.push({ ...p, error: p.error.message, isError: p.error instanceof Error,
                                   __keys: Object.keys(p) }));
  const hashing = [];
  job.onSave(p => {
    const f = p.file;
    const entry = { ...p, file: { name: f.name, size: f.size, path: f.path, keys: Object.keys(f),
                                  isArrayBuffer: f.buffer instanceof ArrayBuffer,
                                  bufferBytes: f.buffer ? f.buffer.byteLength : null } };
    if (f.buffer) hashing.push(hex(f.buffer).then(h => { entry.file.sha256 = h; }));
    ev.save.push(entry);
  });
  let result;
  try { result = await job.start(); } catch (e) { result = { thrown: String(e) }; }
  await Promise.all(hashing);
  const after = zip ? null : await cod.getStats(uids);
  return { stats, ev, result, after, state: job.state };
}
"""


def run(page, site_url, api, bucket, prefix, uids, folder="contract", zip=False):
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    return page.evaluate(RUN, {"api": api, "bucket": bucket, "prefix": prefix, "uids": uids,
                               "folder": folder, "zip": zip})


def keys(p) -> set:
    return set(p["__keys"])


def test_stats_and_payloads_as_the_original(page, site_url, bucket_server, demo_studies):
    fx = demo_studies[1]
    out = run(page, site_url, bucket_server.url, fx.bucket, fx.datastore, [fx.study_uid])
    stats, ev, result = out["stats"], out["ev"], out["result"]
    assert set(stats) == KEYS["stats"]
    assert sorted(stats["series"]) == sorted(tar_label(fx.study_uid, s) for s in fx.series)
    uris = {}
    for series in fx.series:
        raw, _ = bucket_server.download(fx.bucket, f"{fx.series_prefix(series)}/metadata.json", accept_gzip=False)
        uris.update({sop: e.get("url") or e["uri"] for sop, e in json.loads(raw)["cod"]["instances"].items()})
    assert sorted(stats["items"]) == sorted(uris.values())
    assert out["after"]["series"] == [] and out["after"]["items"] == []
    assert ev["error"] == [] and result["failed"] == []
    for name in ("progress", "download", "extract", "complete", "series"):
        assert ev[name] and all(keys(p) == KEYS[name] for p in ev[name]), name
    # the view the page and the element show comes with every progress payload
    last = ev["progress"][-1]
    assert last["jobBytesDone"] == last["jobBytesTotal"] == fx.total_dicom_bytes
    done, total = last["jobSummary"].split(" (")[0].split(" of ")
    assert done == total and "(100 %)" in last["jobSummary"], last["jobSummary"]
    assert all(isinstance(p["jobSummary"], str) and " of " in p["jobSummary"] for p in ev["progress"])
    want = expected_files(bucket_server.url, fx)
    got = read_folder(page, "contract")
    got.pop("log.json")
    assert got == want
    assert len(ev["save"]) == len(want)
    for p in ev["save"]:
        f = p["file"]
        assert set(p) == KEYS["save"]
        assert set(f["keys"]) == SAVED_FILE_KEYS and f["isArrayBuffer"]
        assert f["name"] == f"instances/{p['instance']}.dcm" and f["size"] == p["size"] == f["bufferBytes"]
        assert f["sha256"] == want[f["path"]]["sha256"]            # the bytes that landed
    series_bytes = {s: sum(v["size"] for k, v in want.items() if f"/{s}/" in k) for s in fx.series}
    assert sorted((p["series"], p["size"]) for p in ev["download"]) == sorted(series_bytes.items())
    assert sorted((p["series"], p["size"]) for p in ev["extract"]) == sorted(series_bytes.items())
    assert all(p.get("file") is None for p in ev["download"])        # never the tar bytes
    assert all(set(f) == EXTRACTED_FILE_KEYS for p in ev["extract"] for f in p["files"])
    assert sum(len(p["files"]) for p in ev["extract"]) == len(want)


def test_hostile_member_refused_in_folder_and_zip_mode(page, site_url, bucket_server, tmp_path):
    evil = "../../evil.dcm"
    study, series, sop, good, datas = codbuild.hostile_listed_series(bucket_server, HOSTILE_BUCKET, HOSTILE_DS, evil)
    out = run(page, site_url, bucket_server.url, HOSTILE_BUCKET, HOSTILE_DS, [study], folder="hostile")
    mine = [e for e in out["ev"]["error"] if e["instance"] == sop]
    assert len(mine) == 1 and repr(evil) in mine[0]["error"] and series in mine[0]["error"], out["ev"]["error"]
    assert [f["series"] for f in out["result"]["failed"]] == [series]
    got = read_folder(page, "hostile")
    assert set(got) == {"log.json", f"{study}/{series}/instances/{good}.dcm"}
    assert got[f"{study}/{series}/instances/{good}.dcm"]["sha256"] == hashlib.sha256(datas[good]).hexdigest()
    assert page.evaluate("""async () => { const root = await navigator.storage.getDirectory();
        const names = []; for await (const n of root.keys()) names.push(n); return names; }""").count("evil.dcm") == 0

    with page.expect_download(timeout=120_000) as dl:
        out = run(page, site_url, bucket_server.url, HOSTILE_BUCKET, HOSTILE_DS, [study], zip=True)
    assert any(e["instance"] == sop and repr(evil) in e["error"] for e in out["ev"]["error"]), out["ev"]["error"]
    path = tmp_path / "hostile.zip"
    dl.value.save_as(path)
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert f"{series}/instances/{good}.dcm" in names and not [n for n in names if sop in n or ".." in n]
        assert zf.read(f"{series}/instances/{good}.dcm") == datas[good]


TRUNCATE = """
async ([folder, rel]) => {
  let dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(folder);
  const parts = rel.split('/');
  for (const p of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(p);
  const fh = await dir.getFileHandle(parts.at(-1));
  const w = await fh.createWritable({ keepExistingData: true });
  await w.truncate(100);
  await w.close();
}
"""


def test_truncated_logged_file_is_fetched_again(page, site_url, bucket_server, demo_studies):
    fx = demo_studies[0]
    out = run(page, site_url, bucket_server.url, fx.bucket, fx.datastore, [fx.study_uid], folder="trunc")
    assert out["result"]["failed"] == []
    want = expected_files(bucket_server.url, fx)
    victim = sorted(want)[0]
    page.evaluate(TRUNCATE, ["trunc", victim])
    assert read_folder(page, "trunc")[victim]["size"] == 100
    out = run(page, site_url, bucket_server.url, fx.bucket, fx.datastore, [fx.study_uid], folder="trunc")
    assert out["stats"]["totalSavedInstanceCount"] == out["stats"]["totalInstanceCount"] - 1
    assert len(out["stats"]["items"]) == 1
    assert [p["file"]["path"] for p in out["ev"]["save"]] == [victim]
    got = read_folder(page, "trunc")
    got.pop("log.json")
    assert got == want


def _quota(page, site_url, size: int) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": site_url.rstrip("/"), "quotaSize": size})


# download() and start() apart, so a test can change the quota between them.
PREPARE = """
async ({ api, bucket, prefix, uids, folder, zip }) => {
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  const cod = await createCodDownload({ apiBase: api, retry: { attempts: 2, base_delay: 0.01, max_delay: 0.02 } });
  if (!zip) { window.__pickedName = folder; await cod.initDirectory(); }
  cod.initBucket({ bucket, bucketPrefix: prefix, token: 't' });
  try {
    window.__job = await cod.download(uids, !!zip);
  } catch (e) {
    return { name: e.name, kind: e.kind, message: e.message, isError: e instanceof Error };
  }
  return null;
}
"""

START = """
async () => {
  const job = window.__job;
  const ev = { complete: [], error: [] };
  job.onComplete((p) => ev.complete.push(p));
  job.onError((p) => ev.error.push({ ...p, error: p.error.message, isError: p.error instanceof Error }));
  let result;
  try { result = await job.start(); } catch (e) { result = { thrown: String(e) }; }
  return { ev, result, state: job.state, traffic: job.traffic() };
}
"""


def _prepare(page, site_url, api, fx, folder, zip=False):
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    return page.evaluate(PREPARE, {"api": api, "bucket": fx.bucket, "prefix": fx.datastore,
                                   "uids": [fx.study_uid], "folder": folder, "zip": zip})


def test_storage_full_ends_with_a_clear_error_and_a_later_run_completes(page, site_url, bucket_server,
                                                                        demo_studies):
    fx = demo_studies[1]                           # about 10 MB of DICOM
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    # download() checks the space first (navigator.storage.estimate(), which Chromium's CDP
    # override does not change: the refusal is tested in Firefox, test_space_firefox.py);
    # the quota then shrinks under the job, as when another tab fills the storage.
    assert _prepare(page, site_url, bucket_server.url, fx, "full") is None
    _quota(page, site_url, 3_000_000)
    out = page.evaluate(START)
    ev, result = out["ev"], out["result"]
    assert "thrown" not in result, result                  # start() settled with the onComplete payload
    assert len(ev["complete"]) == 1 and result["failed"], result
    full = [e for e in ev["error"] if e["kind"] == "StorageFullError"]
    assert len(full) == 1 and "not enough space" in full[0]["error"] and full[0]["isError"], ev["error"]
    assert out["state"] == "failed"
    # verified-or-absent: every file under its final name is whole, log.json is valid and true
    want = expected_files(bucket_server.url, fx)
    got = read_folder(page, "full")
    log = got.pop("log.json", None)
    bad = {k: v for k, v in got.items() if want.get(k) != v}
    assert not bad, f"partial, empty or stray files under final names: {bad}"
    if log is not None:
        logs = json.loads(page.evaluate("""async () => { const d = await (await navigator.storage.getDirectory())
            .getDirectoryHandle('full'); return await (await (await d.getFileHandle('log.json')).getFile()).text(); }"""))
        assert {k.replace("/instances/", "/")[:-4] for k in got} >= set(logs["logs"])

    _quota(page, site_url, 1_000_000_000)                    # space freed
    out = run(page, site_url, bucket_server.url, fx.bucket, fx.datastore, [fx.study_uid], folder="full")
    assert out["ev"]["error"] == [] and out["result"]["failed"] == []
    got = read_folder(page, "full")
    got.pop("log.json")
    assert got == want


SPOOL = """async () => {
  const root = await navigator.storage.getDirectory();
  let dir;
  try { dir = await root.getDirectoryHandle('cod-retrieve-spool'); } catch { return []; }
  const names = [];
  for await (const n of dir.keys()) names.push(n);
  return names;
}"""


def test_storage_full_in_zip_mode_hands_over_no_zip_and_a_later_run_completes(page, site_url, bucket_server,
                                                                              demo_studies, tmp_path):
    """The quota shrinks under a zip being written (here Chromium refuses the spool
    file's close; Firefox refusing its writes, which the job does not wait for, is
    test_space_firefox.py): the job ends with the StorageFullError, no broken zip
    reaches the browser's downloads, and no spool file is left."""
    fx = demo_studies[1]                           # about 10 MB of DICOM, written into a 3 MB quota
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    assert _prepare(page, site_url, bucket_server.url, fx, None, zip=True) is None
    _quota(page, site_url, 3_000_000)
    out = page.evaluate(START)
    ev, result = out["ev"], out["result"]
    assert "thrown" not in result and result["failed"] and out["state"] == "failed", result
    full = [e for e in ev["error"] if e["kind"] == "StorageFullError"]
    assert full and "not enough space" in full[0]["error"] and full[0]["isError"], ev["error"]
    assert page.evaluate(SPOOL) == []
    assert downloads == []

    _quota(page, site_url, 1_000_000_000)                    # space freed
    assert _prepare(page, site_url, bucket_server.url, fx, None, zip=True) is None
    with page.expect_download() as info:
        out = page.evaluate(START)
    assert out["ev"]["error"] == [] and out["result"]["failed"] == [] and out["state"] == "done", out
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    assert path.name == f"{fx.study_uid}.zip" and downloads == [info.value]
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        got = {}
        for i in zf.infolist():
            data = zf.read(i)
            got[f"{fx.study_uid}/{i.filename}"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert got == expected_files(bucket_server.url, fx)
