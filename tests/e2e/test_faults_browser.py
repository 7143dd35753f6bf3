"""Faults on the wire, seen from the browser: fetch errors, flipped bytes and
refused tokens go through the same recovery as in CPython."""

from __future__ import annotations

import threading

from support.browser import expected_files, finish_run, read_folder, run_through, start_run, wait_in
from support.files import largest_tar, tars_by_size
from support.faultproxy import Fault, on_path

CUT_AT = 2_000_000


# The stall timeout is long enough that a loaded machine never trips it by accident (a
# spurious stall would add a Range request the tests count); the stall test's fault is 60 s.
def run(page, site_url, proxy, study, folder, token="t", fresh=None):
    return run_through(page, site_url, proxy.url, [study], folder, token=token, fresh=fresh, stall=10)


def gets(proxy, name):
    return [s for s in proxy.seen if s.method == "GET" and s.path.split("?")[0].endswith(name)]


def test_browser_recovers_from_cut_flip_and_bursts(page, site_url, fresh_proxy, bucket_server, demo_studies):
    """Each fault on a request that is certain to happen, and counted only when it
    fired: the cut on the largest tar, the flip on another, 503 bursts on the rest.

    The cut waits until the page has read every byte sent before it: a stream that
    errors drops what the page had not yet read, and a resume from 0 would then be
    right too, but would not show a resume from a byte it had got."""
    study = demo_studies[1]
    (cut_tar, _), (flip_tar, _), *rest = tars_by_size(bucket_server, study)
    release = threading.Event()
    cut = on_path(cut_tar, Fault("cut", at=CUT_AT, release=release), ranged=False)
    flip = on_path(flip_tar, Fault("flip", at=4_000))          # inside the tar's first instance
    bursts = [on_path(name, Fault("status", 503, {"Retry-After": "1"})) for name, _ in rest]
    fresh_proxy.rules += [cut, flip, *bursts]
    try:
        # A stall timeout far beyond the hold: the page never gives up on the held tar itself.
        worker = start_run(page, site_url, fresh_proxy.url, [study], "faults", stall=600)
        fresh_proxy.wait_until(lambda: cut.fired == 1, what="the largest tar held at the cut")
        wait_in(worker, """([tar, at]) => Object.entries(globalThis.__reads).some(([path, r]) =>
            path.endsWith(tar) && r.bytes === at && r.pending === 1)""", [cut_tar, CUT_AT],
                what="Python has read every byte before the cut")
    finally:
        release.set()
    out = finish_run(page)
    assert out["errors"] == [] and out["result"]["failed"] == []
    got = read_folder(page, "faults")
    got.pop("log.json")
    assert got == expected_files(bucket_server.url, study)
    assert cut.fired == flip.fired == 1 and [b.fired for b in bursts] == [1] * len(rest)
    # The cut tar resumed with Range from a byte it had got, not from 0.
    after_cut = gets(fresh_proxy, cut_tar)
    i = next(i for i, s in enumerate(after_cut) if s.fault == "cut")
    start = int(after_cut[i + 1].range[len("bytes="):].split("-")[0])
    assert 0 < start <= CUT_AT
    # The flipped instance alone was fetched again, by Range.
    again = [s for s in gets(fresh_proxy, flip_tar) if s.range]
    assert len(again) == 1 and not again[0].range.startswith("bytes=0-")
    # Each 503 was followed by a retry of the same tar, which got it.
    for name, _ in rest:
        assert [s.status for s in gets(fresh_proxy, name)][:2] == [503, 200]


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
    study = demo_studies[1]
    tar = largest_tar(bucket_server, study)
    stall = on_path(tar, Fault("stall", at=1_000_000, seconds=60))
    fresh_proxy.rules.append(stall)
    out = run(page, site_url, fresh_proxy, study, "stall")
    assert out["errors"] == [] and out["result"]["failed"] == []
    got = read_folder(page, "stall")
    got.pop("log.json")
    assert got == expected_files(bucket_server.url, study)
    seen = gets(fresh_proxy, tar)
    i = next(i for i, s in enumerate(seen) if s.fault == "stall")
    assert stall.fired == 1
    assert seen[i].client_closed is True                 # the page hung up: the 60 s stall was not sat out
    assert seen[i + 1].range.startswith("bytes=1000000-")   # resumed where it stopped
