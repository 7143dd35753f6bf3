"""Failures found from outside that come in pairs: two requests refused with the same
expired token at once. Against the real bucket behind the fault proxy; each test ends
with every file right."""

from __future__ import annotations

import asyncio

from cod_retrieve import CodDownload, RetryPolicy
from cod_retrieve.http import token_after_refusal
from support.faultproxy import Fault
from support.files import bucket_files, folder_files

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, stall_timeout=10.0)


def test_token_after_refusal_decisions():
    # another request already replaced the refused token: use that, ask nobody
    assert token_after_refusal("old", "new") == "new"
    # the refused token is still current: the provider's offer, if it differs
    assert token_after_refusal("old", "old", "new") == "new"
    assert token_after_refusal("old", "old", "old") is None
    assert token_after_refusal("old", "old", None) is None
    assert token_after_refusal(None, None, "first") == "first"


class Provider:
    """A token provider that counts how often it was asked."""

    def __init__(self, token: str) -> None:
        self.token, self.asked = token, 0

    async def __call__(self) -> str:
        self.asked += 1
        await asyncio.sleep(0)
        return self.token


def run(proxy, studies, folder, provider, token="expired", concurrency=3):
    async def go():
        cd = CodDownload(api_base=proxy.url, concurrency=concurrency, token_provider=provider, retry=FAST)
        await cd.init_directory(folder)
        cd.init_bucket({"bucket": studies[0].bucket, "bucketPrefix": studies[0].datastore, "token": token})
        job = await cd.download([s.study_uid for s in studies])
        errors = []
        job.on_error(errors.append)
        return await job.start(), errors
    return asyncio.run(go())


def test_two_listings_refused_together_share_one_refresh(fresh_proxy, bucket_server, demo_studies, tmp_path):
    fresh_proxy.required_token = "fresh"
    provider = Provider("fresh")
    result, errors = run(fresh_proxy, demo_studies, tmp_path, provider)
    assert errors == [] and result["failed"] == [], errors
    assert provider.asked == 1                    # the second refusal took the first one's token
    listings = [s for s in fresh_proxy.seen if "/o?" in s.path and s.status == 401]
    assert len(listings) == 2                     # both studies' listings were refused together
    want = {}
    for s in demo_studies:
        want.update(bucket_files(bucket_server, s))
    assert folder_files(tmp_path) == want


def test_tar_requests_refused_together_share_one_refresh(fresh_proxy, bucket_server, demo_studies, tmp_path):
    """The token expires between planning and the tars: the tar requests in flight are
    refused together and all continue with one new token."""
    study = demo_studies[1]                        # four series: three tars in flight at once

    def tars_need_t2(seen, _i):
        if seen.path.split("?")[0].endswith(".tar") and seen.auth != "Bearer t2":
            return Fault("status", 401)
        return None
    fresh_proxy.rules.append(tars_need_t2)
    provider = Provider("t2")
    result, errors = run(fresh_proxy, [study], tmp_path, provider, token="t1")
    assert errors == [] and result["failed"] == [], errors
    assert provider.asked == 1
    refused = [s for s in fresh_proxy.seen if s.path.split("?")[0].endswith(".tar") and s.status == 401]
    assert len(refused) == 3                      # the three in flight, each retried with t2
    assert folder_files(tmp_path) == bucket_files(bucket_server, study)


def test_a_failing_token_provider_is_a_clear_error(fresh_proxy, demo_studies, tmp_path):
    fresh_proxy.required_token = "fresh"

    def broken():
        raise RuntimeError("the portal's session has ended")
    result, errors = run(fresh_proxy, demo_studies[:1], tmp_path, broken)
    assert result["succeeded"] == [] and result["failed"]
    assert errors and all("the token provider failed: the portal's session has ended" in e["error"] for e in errors)
    assert not any(tmp_path.rglob("*.dcm"))


def test_requests_without_response_headers_are_aborted_and_free_their_connections(fresh_proxy, bucket_server,
                                                                                demo_studies, tmp_path):
    """Six tar requests whose headers never come: each is given up after the stall
    timeout and its connection closed (the proxy sees the client hang up), and the
    retries get every file."""
    from support.faultproxy import on_path
    study = demo_studies[1]
    rule = on_path(".tar", Fault("silent"), times=6)
    fresh_proxy.rules.append(rule)

    async def go():
        cd = CodDownload(api_base=fresh_proxy.url, retry=RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.05,
                                                                      stall_timeout=2.0))
        await cd.init_directory(tmp_path)
        cd.init_bucket({"bucket": study.bucket, "bucketPrefix": study.datastore, "token": "t"})
        job = await cd.download([study.study_uid])
        errors = []
        job.on_error(errors.append)
        return await job.start(), errors

    result, errors = asyncio.run(go())
    assert errors == [] and result["failed"] == [], errors
    assert rule.fired == 6
    silent = [s for s in fresh_proxy.seen if s.fault == "silent"]
    fresh_proxy.wait_until(lambda: all(s.done for s in silent), what="the held requests to end")
    assert len(silent) == 6 and all(s.client_closed is True for s in silent)
    assert folder_files(tmp_path) == bucket_files(bucket_server, study)
