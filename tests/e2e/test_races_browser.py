"""Failures found from outside, seen from headless Chromium through the fault proxy in front
of the real bucket: two requests refused with the same expired token at once, and
requests whose response headers never come (each must free its connection)."""

from __future__ import annotations

from support.browser import expected_files, read_folder, run_through
from support.faultproxy import Fault

def run(page, site_url, proxy, studies, folder, token="expired", fresh=None, stall=20):
    return run_through(page, site_url, proxy.url, studies, folder, token=token, fresh=fresh, stall=stall)


def want_for(server, studies) -> dict:
    want = {}
    for s in studies:
        want.update(expected_files(server.url, s))
    return want


def test_two_listings_refused_together_share_one_refresh(page, site_url, fresh_proxy, bucket_server, demo_studies):
    fresh_proxy.required_token = "fresh"
    out = run(page, site_url, fresh_proxy, demo_studies, "race-list", fresh="fresh")
    assert out["errors"] == [] and out["result"]["failed"] == [], out["errors"]
    assert out["asked"] == 1
    assert len([s for s in fresh_proxy.seen if "/o?" in s.path and s.status == 401]) == 2
    got = read_folder(page, "race-list")
    got.pop("log.json")
    assert got == want_for(bucket_server, demo_studies)


def test_tar_requests_refused_together_share_one_refresh(page, site_url, fresh_proxy, bucket_server, demo_studies):
    study = demo_studies[1]

    def tars_need_t2(seen, _i):
        if seen.method == "GET" and seen.path.split("?")[0].endswith(".tar") and seen.auth != "Bearer t2":
            return Fault("status", 401)
        return None
    fresh_proxy.rules.append(tars_need_t2)
    out = run(page, site_url, fresh_proxy, [study], "race-tar", token="t1", fresh="t2")
    assert out["errors"] == [] and out["result"]["failed"] == [], out["errors"]
    assert out["asked"] == 1
    assert len([s for s in fresh_proxy.seen if s.path.split("?")[0].endswith(".tar") and s.status == 401]) == 3
    got = read_folder(page, "race-tar")
    got.pop("log.json")
    assert got == want_for(bucket_server, [study])


REJECTING = """
async ({ api, bucket, prefix, uids, how }) => {
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  const reasons = { string: () => 'session over', dom: () => new DOMException('session over', 'QuotaExceededError'),
                    error: () => new Error('session over') };
  const cod = await createCodDownload({ apiBase: api, retry: { attempts: 2, base_delay: 0.01 },
                                        getToken: async () => { throw reasons[how](); } });
  window.__pickedName = 'rejecting-' + how;
  await cod.initDirectory();
  cod.initBucket({ bucket, bucketPrefix: prefix, token: 'expired' });
  const job = await cod.download(uids, false);
  const errors = [];
  job.onError(p => errors.push(p.error.message));
  const result = await job.start();
  return { result, errors };
}
"""


def test_a_rejecting_get_token_is_a_clear_error(page, site_url, fresh_proxy, demo_studies):
    """Whatever getToken rejects with (a string, a DOMException of the kind that once killed
    Pyodide, an Error), start() settles and each error names the token provider."""
    fresh_proxy.required_token = "fresh"
    study = demo_studies[0]
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    for how in ("string", "dom", "error"):
        out = page.evaluate(REJECTING, {"api": fresh_proxy.url, "bucket": study.bucket, "prefix": study.datastore,
                                        "uids": [study.study_uid], "how": how})
        assert out["result"]["succeeded"] == [] and out["result"]["failed"], how
        assert out["errors"] and all("the token provider failed" in e and "session over" in e
                                     for e in out["errors"]), (how, out["errors"])


def test_requests_without_response_headers_are_aborted_and_free_their_connections(page, site_url, fresh_proxy,
                                                                                bucket_server, demo_studies):
    """Six tar requests whose headers never come (as many as Chromium's connections per
    host): each fetch is aborted after the stall timeout, so the connection is freed and
    later requests reach the bucket; every file lands."""
    from support.faultproxy import on_path
    study = demo_studies[1]
    rule = on_path(".tar", Fault("silent"), times=6)
    fresh_proxy.rules.append(rule)
    out = run(page, site_url, fresh_proxy, [study], "silent", token="t", stall=2)
    assert out["errors"] == [] and out["result"]["failed"] == [], out["errors"]
    assert rule.fired == 6
    silent = [s for s in fresh_proxy.seen if s.fault == "silent"]
    fresh_proxy.wait_until(lambda: all(s.done for s in silent), what="the held requests to end")
    assert len(silent) == 6 and all(s.client_closed is True for s in silent)
    got = read_folder(page, "silent")
    got.pop("log.json")
    assert got == want_for(bucket_server, [study])
