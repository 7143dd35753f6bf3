"""Pause, resume and cancel on a real download: nothing lost, nothing partial."""

from __future__ import annotations

import asyncio
import threading

from cod_retrieve import CodDownload, _compat
from support.faultproxy import Fault, on_path
from support.files import bucket_files, folder_files

HOLD_AT = 256 * 1024        # below the smallest tar of the study: every tar reaches it


class WatchedOpener:
    """The real opener, with every open and body read counted, and any of them
    begun while the job is paused written down (instrumentation, not a mock)."""

    def __init__(self) -> None:
        self.job = None
        self.pending_reads = 0
        self.read_bytes: dict[str, int] = {}
        self.while_paused: list[tuple[str, str]] = []

    def _note(self, what: str, url: str) -> None:
        if self.job is not None and self.job.state == "paused":
            self.while_paused.append((what, url))

    async def __call__(self, url: str, headers: dict[str, str]):
        self._note("open", url)
        return _Watched(await _compat.open_url(url, headers), self, url)


class _Watched:
    def __init__(self, resp, watch: WatchedOpener, url: str) -> None:
        self._resp, self._watch, self._url = resp, watch, url
        self.status, self.headers = resp.status, resp.headers

    async def read(self):
        w = self._watch
        w._note("read", self._url)
        w.pending_reads += 1
        try:
            data = await self._resp.read()
        finally:
            w.pending_reads -= 1
        w.read_bytes[self._url] = w.read_bytes.get(self._url, 0) + len(data or b"")
        return data

    async def aclose(self) -> None:
        await self._resp.aclose()


async def until(predicate, what: str, timeout: float = 120.0) -> None:
    """Poll a condition that is certain to become true; `timeout` is a safety net."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"not reached in {timeout} s: {what}"
        await asyncio.sleep(0.01)


def test_pause_holds_and_resume_loses_no_bytes(fresh_proxy, bucket_server, demo_studies, tmp_path):
    """The proxy holds the first tar at HOLD_AT bytes, so the job is certainly
    mid-transfer when paused, with one read waiting on the wire. Paused, the
    hold is released: that read lands, and then nothing is opened or read and
    no byte is taken until resume; the folder ends whole, nothing fetched twice."""
    study = demo_studies[1]
    release = threading.Event()
    hold = on_path(".tar", Fault("hold", at=HOLD_AT, release=release), times=1, ranged=False)
    fresh_proxy.rules.append(hold)
    watch = WatchedOpener()

    async def go():
        cd = CodDownload(api_base=fresh_proxy.url, concurrency=1, opener=watch)
        await cd.init_directory(tmp_path)
        cd.init_bucket({"bucket": study.bucket, "bucketPrefix": study.datastore, "token": "t"})
        job = await cd.download([study.study_uid])
        watch.job = job
        run = asyncio.ensure_future(job.start())
        snaps = {}
        try:
            # Every byte sent before the hold taken, and the next read waiting for more.
            await until(lambda: hold.fired == 1 and watch.pending_reads == 1
                        and HOLD_AT in watch.read_bytes.values(), "transfer held at HOLD_AT")
            job.pause()
            snaps["paused"] = (len(fresh_proxy.seen), job.client.traffic.requests)
            release.set()
            await until(lambda: watch.pending_reads == 0 and job.client.traffic.gated == 1,
                        "the read under way landed, and the series parked at the paused gate")
            landed = (len(fresh_proxy.seen), job.client.traffic.requests, job.client.traffic.body_bytes)
            for _ in range(200):      # let every runnable task run: a job that did not hold would read on
                await asyncio.sleep(0)
            snaps["landed"], snaps["later"] = landed, (len(fresh_proxy.seen), job.client.traffic.requests,
                                                       job.client.traffic.body_bytes)
            job.resume()
            result = await run
        finally:
            release.set()
            if not run.done():
                job.cancel()
                await asyncio.gather(run, return_exceptions=True)
        return job, result, snaps

    job, result, snaps = asyncio.run(go())
    assert result["failed"] == [] and not result["cancelled"]
    assert watch.while_paused == []                               # nothing opened or read while paused
    assert snaps["landed"][:2] == snaps["paused"]                 # no request: at the proxy, or in the client
    assert snaps["later"] == snaps["landed"]                      # and not a byte taken after the read landed
    assert folder_files(tmp_path) == bucket_files(bucket_server, study)
    t = job.client.traffic           # one listing, metadata and tar per series; nothing twice
    assert t.requests == 1 + 2 * len(study.series) and t.retries == 0 and 206 not in t.statuses
    assert study.total_tar_bytes <= t.body_bytes <= study.total_tar_bytes + 64 * 1024
    tars = [s for s in fresh_proxy.seen if s.path.split("?")[0].endswith(".tar")]
    assert len(tars) == len(study.series) and all(s.range is None and s.status == 200 for s in tars)


async def _cancel_at_first_save(server, study, folder, then_again: bool):
    cd = CodDownload(api_base=server.url, concurrency=1)
    await cd.init_directory(folder)
    cd.init_bucket({"bucket": study.bucket, "bucketPrefix": study.datastore, "token": "t"})
    job = await cd.download([study.study_uid])
    job.on_save(lambda p: job.cancel())
    first = await job.start()
    again = await (await cd.download([study.study_uid])).start() if then_again else None
    return job, first, again


def test_cancel_stops_promptly_and_leaves_only_verified_files(bucket_server, demo_studies, tmp_path):
    study = demo_studies[1]
    want = bucket_files(bucket_server, study)
    job, first, again = asyncio.run(_cancel_at_first_save(bucket_server, study, tmp_path, True))
    assert first["cancelled"] and job.state == "cancelled"
    assert first["bytesDone"] < first["bytesTotal"]
    assert again["failed"] == [] and not again["cancelled"]
    assert folder_files(tmp_path) == want                      # the rest came on the next run
    assert not list(tmp_path.rglob("*.part"))


def test_cancelled_folder_holds_no_partial_file(bucket_server, demo_studies, tmp_path):
    study = demo_studies[1]
    want = bucket_files(bucket_server, study)
    _, result, _ = asyncio.run(_cancel_at_first_save(bucket_server, study, tmp_path, False))
    got = folder_files(tmp_path)
    assert result["cancelled"] and 0 < len(got) < len(want)
    assert all(want[path] == digest for path, digest in got.items())   # whole and verified, or absent
    assert not list(tmp_path.rglob("*.part"))
