"""Kill the tab half-way, reopen on the same folder, resume: only what is
missing (plus what was in flight) is fetched again, and the folder ends whole."""

from __future__ import annotations

import threading

from support.browser import expected_files, read_folder
from support.faultproxy import Fault, on_path
from support.files import tars_by_size

# The same folder, bucket and settings on both sides of the kill.
OPEN = """
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  const cod = await createCodDownload({ apiBase: api, concurrency: 2 });
  window.__pickedName = folder;
  await cod.initDirectory();
  cod.initBucket({ bucket, bucketPrefix: prefix, token: 't' });
"""

START = """
async ({ api, bucket, prefix, uids, folder }) => {
""" + OPEN + """  const job = await cod.download(uids, false);
  window.__saved = 0;
  job.onSave(p => { window.__saved += p.size; });
  job.start();            // not awaited: the tab is closed while it runs
  return true;
}
"""

RESUME = """
async ({ api, bucket, prefix, uids, folder }) => {
""" + OPEN + """  const stats = await cod.getStats(uids);
  const job = await cod.download(uids, false);
  const errors = [];
  job.onError(p => errors.push(p.error.message));
  const result = await job.start();
  return { stats, result, errors };
}
"""


def test_kill_half_way_and_resume(browser, site_url, fresh_proxy, bucket_server, resume_study):
    from support.browser import PICKER
    st = resume_study
    args = {"api": fresh_proxy.url, "bucket": st.bucket, "prefix": st.datastore,
            "uids": [st.study_uid], "folder": "resume"}
    # Every tar is held at 3/4 of its bytes until the tab is gone: the kill is
    # certain to come half-way (more than half saved, and not everything).
    release = threading.Event()
    sizes = tars_by_size(bucket_server, st)
    hold = on_path(".tar", Fault("hold", at=sizes[-1][1] * 3 // 4, release=release), times=len(sizes), ranged=False)
    fresh_proxy.rules.append(hold)
    context = browser.new_context()
    context.add_init_script(PICKER)
    try:
        first = context.new_page()
        first.goto(f"{site_url}/index.html")
        first.wait_for_selector("body[data-ready='1']", timeout=60_000)
        first.evaluate(START, args)
        first.wait_for_function(f"window.__saved >= {st.total_dicom_bytes // 2}", timeout=120_000, polling=50)
        fresh_proxy.wait_until(lambda: hold.fired == len(sizes), what="every tar held")
        first.close()                                   # the tab dies mid-download
        # Its held connections are closed with it; nothing of it is under way any more.
        fresh_proxy.wait_until(lambda: all(s.done for s in fresh_proxy.seen), what="the first tab's requests ended")
        release.set()
        n_before = len(fresh_proxy.seen)

        second = context.new_page()
        second.goto(f"{site_url}/index.html")
        second.wait_for_selector("body[data-ready='1']", timeout=60_000)
        out = second.evaluate(RESUME, args)
        stats, result = out["stats"], out["result"]
        assert out["errors"] == [] and result["failed"] == []
        assert 0 < stats["totalSavedSizeBytes"] < stats["totalSizeBytes"]   # it really was half-way

        after = [s for s in fresh_proxy.seen[n_before:]
                 if s.method == "GET" and s.path.split("?")[0].endswith(".tar")]
        refetched = sum(s.body_bytes for s in after)
        missing = stats["totalSizeBytes"] - stats["totalSavedSizeBytes"]
        n_missing = stats["totalInstanceCount"] - stats["totalSavedInstanceCount"]
        untouched = [d for d in stats["seriesDetails"] if d["savedInstances"] == 0]
        partial = [d for d in stats["seriesDetails"] if 0 < d["savedInstances"] < d["instances"]]
        # Missing DICOM bytes plus the tar's own bytes between them (three 512-byte
        # headers and up to 511 bytes of padding per member, and the end-of-archive
        # record of series fetched whole): nothing that was already saved.
        assert refetched <= missing + 2047 * n_missing + 10240 * len(untouched)
        for d in partial:                               # half-done series: Range requests only
            assert all(s.range for s in after if d["seriesUID"] in s.path)
        print(f"\nresume: killed with {stats['totalSavedSizeBytes']} of {stats['totalSizeBytes']} DICOM bytes saved "
              f"({[(d['savedInstances'], d['instances']) for d in stats['seriesDetails']]}); refetched {refetched} "
              f"bytes for {missing} missing ({n_missing} instances) in {len(after)} requests")

        got = read_folder(second, "resume")
        got.pop("log.json")
        assert got == expected_files(bucket_server.url, st)
    finally:
        release.set()
        context.close()
