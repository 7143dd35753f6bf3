"""Faults on the wire, seen from the browser: fetch errors, flipped bytes and
refused tokens go through the same recovery as in CPython."""

from __future__ import annotations

from support.browser import expected_files, read_folder
from support.files import largest_tar
from support.faultproxy import Fault, on_path

RUN = """
async ({ api, bucket, prefix, uids, folder, token, fresh }) => {
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  let asked = 0;
  const cod = await createCodDownload({
    apiBase: api, retry: { base_delay: 0.05, max_delay: 0.2, stall_timeout: 3 },
    getToken: fresh ? async () => { asked += 1; return fresh; } : undefined });
  window.__pickedName = folder;
  await cod.initDirectory();
  cod.initBucket({ bucket, bucketPrefix: prefix, token });
  const job = await cod.download(uids, false);
  const errors = [];
  job.onError(p => errors.push(p.error.message));
  const result = await job.start();
  return { result, errors, asked };
}
"""


def run(page, site_url, proxy, study, folder, token="t", fresh=None):
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    return page.evaluate(RUN, {"api": proxy.url, "bucket": study.bucket, "prefix": study.datastore,
                               "uids": [study.study_uid], "folder": folder, "token": token, "fresh": fresh})


def test_browser_recovers_from_cut_flip_and_bursts(page, site_url, fresh_proxy, bucket_server, demo_studies):
    study = demo_studies[1]
    fresh_proxy.rules += [
        on_path(largest_tar(bucket_server, study), Fault("cut", after=2_000_000), times=1, ranged=False),
        on_path(largest_tar(bucket_server, study), Fault("flip", after=4_000), times=1, ranged=True),
        on_path(".tar", Fault("status", 503, {"Retry-After": "1"}), times=2),
    ]
    out = run(page, site_url, fresh_proxy, study, "faults")
    assert out["errors"] == [] and out["result"]["failed"] == []
    got = read_folder(page, "faults")
    got.pop("log.json")
    assert got == expected_files(bucket_server.url, study)
    tars = [s for s in fresh_proxy.seen if s.method == "GET" and s.path.split("?")[0].endswith(".tar")]
    assert any(s.fault == "cut" for s in tars) and any(s.fault == "flip" for s in tars)
    assert any(s.range and not s.range.startswith("bytes=0-") for s in tars)     # resumed, not restarted


def test_browser_refreshes_a_refused_token(page, site_url, fresh_proxy, bucket_server, demo_studies):
    study = demo_studies[0]
    fresh_proxy.required_token = "fresh-token"
    out = run(page, site_url, fresh_proxy, study, "token", token="expired-token", fresh="fresh-token")
    assert out["errors"] == [] and out["result"]["failed"] == []
    assert out["asked"] == 1
    got = read_folder(page, "token")
    got.pop("log.json")
    assert got == expected_files(bucket_server.url, study)
    assert all("token" not in s.path for s in fresh_proxy.seen)       # only ever in the header


def test_browser_without_provider_names_the_token_problem(page, site_url, fresh_proxy, demo_studies):
    fresh_proxy.required_token = "fresh-token"
    out = run(page, site_url, fresh_proxy, demo_studies[0], "notoken", token="expired-token")
    assert out["result"]["failed"] and out["result"]["succeeded"] == []
    assert any("401" in e and "token" in e for e in out["errors"])


def test_browser_aborts_a_stalled_fetch_and_resumes(page, site_url, fresh_proxy, bucket_server, demo_studies):
    import time
    study = demo_studies[1]
    tar = largest_tar(bucket_server, study)
    fresh_proxy.rules.append(on_path(tar, Fault("stall", after=1_000_000, seconds=60), times=1, ranged=False))
    t0 = time.monotonic()
    out = run(page, site_url, fresh_proxy, study, "stall")
    assert time.monotonic() - t0 < 45                    # the 60 s stall was not sat out
    assert out["errors"] == [] and out["result"]["failed"] == []
    got = read_folder(page, "stall")
    got.pop("log.json")
    assert got == expected_files(bucket_server.url, study)
    again = [s for s in fresh_proxy.seen if s.method == "GET" and s.path.endswith(tar) and s.range]
    assert again and again[0].range.startswith("bytes=1000000-")   # resumed where it stopped
