"""Faults on the wire between the downloader and the real bucket: each test
ends with the folder checked byte for byte against the bucket, or with a
clear error and no corrupt or partial file."""

from __future__ import annotations

import asyncio

import pytest

from cod_retrieve import CodDownload, RetryPolicy
from support.files import bucket_files, folder_files, largest_tar, tars_by_size
from support.faultproxy import Fault, on_path

# Long enough that a loaded machine never trips it by accident; the stall test's fault is 20 s.
FAST = RetryPolicy(attempts=5, base_delay=0.05, max_delay=0.2, stall_timeout=10.0)


@pytest.fixture
def study(demo_studies):
    return demo_studies[1]      # the study of larger real images (CR, MR, US, CT; ~17 MB)


def download_job(proxy, study, folder, token="tok", provider=None, policy=FAST):
    """Run one download through the proxy: (result, errors, job)."""
    async def go():
        cd = CodDownload(api_base=proxy.url, token_provider=provider, retry=policy)
        await cd.init_directory(folder)
        cd.init_bucket({"bucket": study.bucket, "bucketPrefix": study.datastore, "token": token})
        job = await cd.download([study.study_uid])
        errors = []
        job.on_error(lambda p: errors.append(p))
        result = await job.start()
        return result, errors, job
    return asyncio.run(go())


def download(proxy, study, folder, token="tok", provider=None, policy=FAST):
    result, errors, _ = download_job(proxy, study, folder, token, provider, policy)
    return result, errors


def tar_requests(proxy):
    return [s for s in proxy.seen if s.path.split("?")[0].endswith(".tar")]


def requests_for(proxy, name):
    return [s for s in proxy.seen if s.method == "GET" and s.path.split("?")[0].endswith(name)]


def test_cut_connection_resumes_with_range(fresh_proxy, bucket_server, study, tmp_path):
    tar = largest_tar(bucket_server, study)
    cut_rule = on_path(tar, Fault("cut", at=3_000_000))
    fresh_proxy.rules.append(cut_rule)
    result, errors = download(fresh_proxy, study, tmp_path)
    assert errors == [] and result["failed"] == []
    assert folder_files(tmp_path) == bucket_files(bucket_server, study)
    assert cut_rule.fired == 1
    seen = requests_for(fresh_proxy, tar)
    cut = [i for i, s in enumerate(seen) if s.fault == "cut"]
    assert len(cut) == 1
    assert seen[cut[0] + 1].range.startswith("bytes=3000000-")   # the next request: from where it stopped


def test_error_bursts_are_retried_honouring_retry_after(fresh_proxy, bucket_server, study, tmp_path):
    # Bursts per path, each shorter than the retry budget (5 tries): certain to be got through.
    (t503, _), (t500a, _), (t500b, _), _ = tars_by_size(bucket_server, study)
    rules = [on_path(t503, Fault("status", 503, {"Retry-After": "1"}), times=2),
             on_path("metadata.json", Fault("status", 429), times=2),
             on_path(t500a, Fault("status", 500), times=2),
             on_path(t500b, Fault("status", 500), times=2)]
    fresh_proxy.rules += rules
    result, errors, job = download_job(fresh_proxy, study, tmp_path)
    assert errors == [] and result["failed"] == []
    assert folder_files(tmp_path) == bucket_files(bucket_server, study)
    assert [r.fired for r in rules] == [2, 2, 2, 2]
    assert result["retries"] >= 8
    # The 503s with Retry-After were each followed by a retry of the same tar, which got it.
    assert [s.status for s in requests_for(fresh_proxy, t503)][:3] == [503, 503, 200]
    # ... after waiting what Retry-After asked for: 1 s, twice (every other wait is
    # the policy's backoff, at most max_delay = 0.2 s).
    waits = job.client.traffic.waits
    assert waits.count(1.0) == 2 and all(w <= FAST.max_delay for w in waits if w != 1.0), waits


def test_stall_is_aborted_and_resumed(fresh_proxy, bucket_server, study, tmp_path):
    tar = largest_tar(bucket_server, study)
    stall_rule = on_path(tar, Fault("stall", at=1_000_000, seconds=20))
    fresh_proxy.rules.append(stall_rule)
    result, errors = download(fresh_proxy, study, tmp_path)
    assert errors == [] and result["failed"] == []
    assert folder_files(tmp_path) == bucket_files(bucket_server, study)
    seen = requests_for(fresh_proxy, tar)
    stalled = [i for i, s in enumerate(seen) if s.fault == "stall"]
    assert stall_rule.fired == 1 and len(stalled) == 1
    assert seen[stalled[0]].client_closed is True      # the client hung up: the 20 s were not sat out
    assert seen[stalled[0] + 1].range.startswith("bytes=1000000-")   # and resumed where it stopped


def test_flipped_byte_refetches_only_that_instance(fresh_proxy, bucket_server, study, tmp_path):
    flip_rule = on_path(largest_tar(bucket_server, study), Fault("flip", after=5_000), times=1, ranged=False)
    fresh_proxy.rules.append(flip_rule)
    result, errors = download(fresh_proxy, study, tmp_path)
    assert errors == [] and result["failed"] == []
    assert folder_files(tmp_path) == bucket_files(bucket_server, study)
    assert flip_rule.fired == 1
    flipped = [s for s in tar_requests(fresh_proxy) if s.fault == "flip"][0]
    again = [s for s in tar_requests(fresh_proxy) if s.path == flipped.path and s.range]
    assert len(again) == 1
    start, end = (int(x) for x in again[0].range[len("bytes="):].split("-"))
    assert start == 1536 and end - start + 1 < 10_000_000      # one instance's range, not the tar


def test_refused_token_is_refreshed_by_the_provider(fresh_proxy, bucket_server, study, tmp_path):
    fresh_proxy.required_token = "fresh"
    calls = []

    async def provider():
        calls.append(1)
        return "fresh"
    result, errors = download(fresh_proxy, study, tmp_path, token="expired", provider=provider)
    assert errors == [] and result["failed"] == []
    assert calls == [1]
    assert folder_files(tmp_path) == bucket_files(bucket_server, study)
    assert all("expired" not in s.path and "fresh" not in s.path for s in fresh_proxy.seen)


def test_refused_token_without_provider_is_a_clear_error(fresh_proxy, study, tmp_path):
    fresh_proxy.required_token = "fresh"
    result, errors = download(fresh_proxy, study, tmp_path, token="expired")
    assert result["failed"]
    text = " ".join(str(f["error"]) for f in result["failed"])
    assert "401" in text and "token" in text
    assert folder_files(tmp_path) == {}


def test_body_cut_every_time_is_reported_and_leaves_no_partial_file(fresh_proxy, bucket_server, study, tmp_path):
    series = max(study.series, key=lambda s: len(s))      # any one series
    fresh_proxy.rules.append(on_path(f"{series}.tar", Fault("cut", after=600), times=1000, ranged=False))
    fresh_proxy.rules.append(on_path(f"{series}.tar", Fault("status", 503), times=1000, ranged=True))
    result, errors = download(fresh_proxy, study, tmp_path)
    assert [f["series"] for f in result["failed"]] == [series]
    named = [e for e in errors if e.get("series") == series]
    assert named and all(f"tar of series {series}" in e["error"] for e in named)
    assert any("503" in e["error"] or "transfer failed" in e["error"] for e in named)
    want = {k: v for k, v in bucket_files(bucket_server, study).items() if f"/{series}/" not in k}
    assert folder_files(tmp_path) == want                 # the rest whole, nothing partial
    assert not list(tmp_path.rglob("*.part"))
