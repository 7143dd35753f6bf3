"""Paged listings in the browser: the JS module against the bucket server
behind the re-paging proxy (items and prefixes sharing pages of 2, an opaque
nextPageToken), in headless Chromium."""

from __future__ import annotations

import pytest

from support.browser import expected_files, read_folder
from support.repager import RepagingProxy, check_paged

RUN = """
async ({ api, bucket, prefix, uids }) => {
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  const cod = await createCodDownload({ apiBase: api });
  window.__pickedName = 'paged';
  await cod.initDirectory();
  cod.initBucket({ bucket, bucketPrefix: prefix, token: 't' });
  const stats = await cod.getStats(uids);
  const job = await cod.download(uids, false);
  const errors = [];
  job.onError(p => errors.push(p.error.message));
  const result = await job.start();
  return { stats, result, errors };
}
"""


@pytest.fixture(scope="module")
def repager(bucket_server):
    p = RepagingProxy("127.0.0.1", bucket_server.port, page_size=2)
    yield p
    p.stop()


def test_module_follows_listing_pages(page, site_url, repager, bucket_server, demo_studies):
    study = demo_studies[0]                                   # 3 series: 3 pages of 2 per listing
    repager.reset(2)
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    out = page.evaluate(RUN, {"api": repager.url, "bucket": study.bucket, "prefix": study.datastore,
                              "uids": [study.study_uid]})
    assert out["errors"] == [] and out["stats"]["warnings"] == []
    assert out["stats"]["totalSeriesCount"] == len(study.series)
    assert out["result"]["failed"] == [] and len(out["result"]["succeeded"]) == len(study.series)
    got = read_folder(page, "paged")
    got.pop("log.json")
    assert got == expected_files(bucket_server.url, study)
    check_paged(repager.pages, study, 2, n_listings=2)        # getStats, then download
