"""`initDirectory(true)`: the origin-private file system itself as the folder,
through the ES module in headless Chromium, against the real bucket. No folder
picker is involved (the page's picker is a tripwire here)."""

from __future__ import annotations

import json

import pytest

from support.browser import expected_files, read_folder

# Instead of the usual picker substitute: any call is counted, and refused.
TRIPWIRE = """
window.__pickerCalls = 0;
window.showDirectoryPicker = async () => {
  window.__pickerCalls += 1;
  throw new DOMException('no folder picker in this test', 'AbortError');
};
"""

RUN = """
async ({ api, bucket, prefix, uids }) => {
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  const cod = await createCodDownload({ apiBase: api });
  const handle = await cod.initDirectory(true);
  const root = await navigator.storage.getDirectory();
  const where = { isRoot: await handle.isSameEntry(root), name: handle.name, kind: handle.kind,
                  kept: cod.directoryHandle === handle };
  cod.initBucket({ bucket, bucketPrefix: prefix, token: 't' });
  const before = await cod.getStats(uids);
  const job = await cod.download(uids, false);
  const errors = [];
  job.onError(p => errors.push(p.error.message));
  const result = await job.start();
  const after = await cod.getStats(uids);
  const log = await (await (await root.getFileHandle('log.json')).getFile()).text();
  return { where, before, after, result, errors, log, pickerCalls: window.__pickerCalls };
}
"""


@pytest.fixture
def opfs_page(browser):
    """A fresh context (its own, empty OPFS) without the picker substitute."""
    context = browser.new_context()
    context.add_init_script(TRIPWIRE)
    pg = context.new_page()
    yield pg
    context.close()


def test_init_directory_true_downloads_into_the_opfs_root(opfs_page, site_url, bucket_server, demo_studies):
    page = opfs_page
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    assert read_folder(page, None) == {}                       # a fresh, empty OPFS
    uids = [s.study_uid for s in demo_studies]
    out = page.evaluate(RUN, {"api": bucket_server.url, "bucket": demo_studies[0].bucket,
                              "prefix": demo_studies[0].datastore, "uids": uids})
    # The handle is the OPFS root itself, and no picker was asked.
    assert out["where"] == {"isRoot": True, "name": "", "kind": "directory", "kept": True}
    assert out["pickerCalls"] == 0
    n_series = sum(len(s.series) for s in demo_studies)
    n_instances = sum(len(v) for s in demo_studies for v in s.series.values())
    assert out["errors"] == [] and out["result"]["failed"] == []
    assert len(out["result"]["succeeded"]) == n_series
    assert out["before"]["totalSavedInstanceCount"] == 0
    assert out["after"]["totalSavedInstanceCount"] == out["after"]["totalInstanceCount"] == n_instances
    # Everything in OPFS, at the root: every instance as the bucket holds it, and log.json.
    got = read_folder(page, None)
    log = got.pop("log.json")
    want = {}
    for s in demo_studies:
        want.update(expected_files(bucket_server.url, s))
    assert got == want
    logged = json.loads(out["log"])["logs"]
    assert log["size"] == len(out["log"].encode())
    assert sorted(logged) == sorted(p.rsplit(".dcm", 1)[0].replace("/instances/", "/") for p in want)
