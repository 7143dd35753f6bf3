"""The ES module as a portal would use it: createCodDownload, initDirectory,
initBucket, getStats, download, Job callbacks; against the real bucket."""

from __future__ import annotations

import copy

import pytest

from support.browser import expected_files, read_folder

RUN = """
async ({ api, bucket, prefix, uids, folder, options }) => {
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  const cod = await createCodDownload({ apiBase: api, concurrency: 3, ...options });
  window.__pickedName = folder;
  await cod.initDirectory();
  cod.initBucket({ bucket, bucketPrefix: prefix, token: 'secret-token' });
  const stats1 = await cod.getStats(uids);
  const stats2 = await cod.getStats(uids);
  const job = await cod.download(uids, false);
  const ev = { progress: 0, lastProgress: null, downloads: [], extracts: [], saves: [], errors: [], series: [] };
  ev.perUrl = {};
  job.onProgress(p => { ev.progress += 1; ev.lastProgress = p;
    const u = (ev.perUrl[p.url] ??= { sum: 0, total: p.bytesTotal }); u.sum += p.bytesDownloaded; });
  job.onDownload(p => ev.downloads.push(p.url));
  job.onExtract(p => ev.extracts.push(p.files.length));
  job.onSave(p => ev.saves.push(p.file.path));
  job.onError(p => ev.errors.push({ message: p.error.message, isError: p.error instanceof Error,
                                     study: p.study, series: p.series, url: p.url }));
  job.onSeries(p => ev.series.push(p.status));
  const result = await job.start();
  const traffic1 = job.traffic();
  const job2 = await cod.download(uids, false);
  const result2 = await job2.start();
  return { stats1, stats2, ev, result, requests2: result2.requests, tars2: job2.traffic().bodyBytes,
           traffic1, ranOnPage: job._rt.local === true };
}
"""


def run(page, site_url, server, bucket, prefix, uids, folder, options=None):
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    return page.evaluate(RUN, {"api": server.url, "bucket": bucket, "prefix": prefix,
                               "uids": uids, "folder": folder, "options": options or {}})


@pytest.mark.parametrize("where", ["worker", "page"])
def test_module_downloads_multi_series_study(page, site_url, bucket_server, demo_studies, where):
    """The default runs Python in the module's Worker; {worker: false} on the page's thread."""
    uids = [s.study_uid for s in demo_studies]
    options = {"worker": False} if where == "page" else {}
    out = run(page, site_url, bucket_server, demo_studies[0].bucket, demo_studies[0].datastore, uids,
              f"mod-{where}", options)
    assert out["ranOnPage"] == (where == "page")
    assert out["stats1"] == out["stats2"]                       # getStats twice: same figures
    assert out["stats1"]["totalSeriesCount"] == 7
    total = sum(s.total_dicom_bytes for s in demo_studies)
    assert out["stats1"]["totalSizeBytes"] == total
    ev, result = out["ev"], out["result"]
    assert ev["errors"] == []
    assert len(result["succeeded"]) == 7 and result["failed"] == []
    assert ev["lastProgress"]["jobBytesDone"] == ev["lastProgress"]["jobBytesTotal"] == total
    assert len(ev["saves"]) == sum(len(v) for s in demo_studies for v in s.series.values())
    assert len(ev["downloads"]) == 7
    # Per tar, the progress deltas add up to its Content-Length; all tars to the study's tar bytes.
    assert all(u["sum"] == u["total"] for u in ev["perUrl"].values()), ev["perUrl"]
    assert sum(u["sum"] for u in ev["perUrl"].values()) == sum(s.total_tar_bytes for s in demo_studies)
    got = read_folder(page, f"mod-{where}")
    got.pop("log.json")
    want = {}
    for s in demo_studies:
        want.update(expected_files(bucket_server.url, s))
    assert got == want
    # Second run: listing and metadata only, not one tar byte.
    assert out["tars2"] < 100_000 and out["requests2"] == 2 + 7


@pytest.fixture(scope="module")
def broken_study(bucket_server, demo_studies):
    """A copy of the multi-series demo study in its own bucket, one series tar missing."""
    src = demo_studies[0]
    bucket = "cod-broken"
    bucket_server.create_bucket(bucket)
    items, _ = bucket_server.list_objects(src.bucket, src.study_prefix)
    for obj in items:
        name = obj["name"]
        data, headers = bucket_server.download(src.bucket, name, accept_gzip=True)
        bucket_server.upload(bucket, name, data, content_type=headers.get("content-type", "application/octet-stream"),
                             content_encoding=headers.get("content-encoding"))
    missing = sorted(src.series)[0]
    bucket_server.delete(bucket, src.tar_name(missing))
    fx = copy.copy(src)
    fx.bucket = bucket
    return fx, missing


def test_module_reports_missing_tar_and_saves_the_rest(page, site_url, bucket_server, broken_study):
    study, missing = broken_study
    out = run(page, site_url, bucket_server, study.bucket, study.datastore, [study.study_uid], "broken")
    ev, result = out["ev"], out["result"]
    assert len(ev["errors"]) == 1
    err = ev["errors"][0]
    assert err["isError"] and err["series"] == missing and err["study"] == study.study_uid
    assert "404" in err["message"] and missing in err["message"]
    assert [f["series"] for f in result["failed"]] == [missing]
    assert len(result["succeeded"]) == len(study.series) - 1
    got = read_folder(page, "broken")
    got.pop("log.json")
    want = {k: v for k, v in expected_files(bucket_server.url, study, "cod-demo").items()
            if f"/{missing}/" not in k}
    assert got == want
