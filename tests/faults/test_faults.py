"""Faults on the wire between the downloader and the real bucket: each test
ends with the folder checked byte for byte against the bucket, or with a
clear error and no corrupt or partial file."""

from __future__ import annotations

import asyncio
import time

import pytest

from cod_retrieve import CodDownload, RetryPolicy
from support.files import bucket_files, folder_files, largest_tar
from support.faultproxy import Fault, on_path

FAST = RetryPolicy(attempts=5, base_delay=0.05, max_delay=0.2, stall_timeout=3.0)


@pytest.fixture
def study(demo_studies):
    return demo_studies[1]      # the study of larger real images (CR, MR, US, CT; ~17 MB)


def download(proxy, study, folder, token="tok", provider=None, policy=FAST):
    async def go():
        cd = CodDownload(api_base=proxy.url, token_provider=provider, retry=policy)
        await cd.init_directory(folder)
        cd.init_bucket({"bucket": study.bucket, "bucketPrefix": study.datastore, "token": token})
        job = await cd.download([study.study_uid])
        errors = []
        job.on_error(lambda p: errors.append(p))
        result = await job.start()
        return result, errors
    return asyncio.run(go())


def tar_requests(proxy):
    return [s for s in proxy.seen if s.path.split("?")[0].endswith(".tar")]


def test_cut_connection_resumes_with_range(fresh_proxy, bucket_server, study, tmp_path):
    fresh_proxy.rules.append(on_path(largest_tar(bucket_server, study), Fault("cut", after=3_000_000),
                                     times=1, ranged=False))
    result, errors = download(fresh_proxy, study, tmp_path)
    assert errors == [] and result["failed"] == []
    assert folder_files(tmp_path) == bucket_files(bucket_server, study)
    cut = [s for s in tar_requests(fresh_proxy) if s.fault == "cut"]
    assert len(cut) == 1
    resumed = [s for s in tar_requests(fresh_proxy) if s.range and s.path == cut[0].path]
    assert resumed and resumed[0].range.startswith("bytes=3000000-")   # from where it stopped


def test_error_bursts_are_retried_honouring_retry_after(fresh_proxy, bucket_server, study, tmp_path):
    fresh_proxy.rules.append(on_path(".tar", Fault("status", 503, {"Retry-After": "1"}), times=2))
    fresh_proxy.rules.append(on_path("metadata.json", Fault("status", 429), times=2))
    fresh_proxy.rules.append(on_path(".tar", Fault("status", 500), times=4))
    t0 = time.monotonic()
    result, errors = download(fresh_proxy, study, tmp_path)
    elapsed = time.monotonic() - t0
    assert errors == [] and result["failed"] == []
    assert folder_files(tmp_path) == bucket_files(bucket_server, study)
    assert result["retries"] >= 8
    assert elapsed >= 1.0        # Retry-After: 1 was waited for (at least once)


def test_stall_is_aborted_and_resumed(fresh_proxy, bucket_server, study, tmp_path):
    fresh_proxy.rules.append(on_path(largest_tar(bucket_server, study), Fault("stall", after=1_000_000, seconds=20),
                                     times=1, ranged=False))
    t0 = time.monotonic()
    result, errors = download(fresh_proxy, study, tmp_path)
    assert time.monotonic() - t0 < 15          # the 20 s stall was not sat out
    assert errors == [] and result["failed"] == []
    assert folder_files(tmp_path) == bucket_files(bucket_server, study)
    assert any(s.range and s.range.startswith("bytes=1000000-") for s in tar_requests(fresh_proxy))


def test_flipped_byte_refetches_only_that_instance(fresh_proxy, bucket_server, study, tmp_path):
    fresh_proxy.rules.append(on_path(largest_tar(bucket_server, study), Fault("flip", after=5_000),
                                     times=1, ranged=False))
    result, errors = download(fresh_proxy, study, tmp_path)
    assert errors == [] and result["failed"] == []
    assert folder_files(tmp_path) == bucket_files(bucket_server, study)
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
