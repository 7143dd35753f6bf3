"""Pause, resume and cancel on a real download: nothing lost, nothing partial."""

from __future__ import annotations

import asyncio

from cod_retrieve import CodDownload
from support.files import bucket_files, folder_files


def test_pause_holds_and_resume_loses_no_bytes(bucket_server, demo_studies, tmp_path):
    study = demo_studies[1]

    async def go():
        cd = CodDownload(api_base=bucket_server.url, concurrency=1)
        await cd.init_directory(tmp_path)
        cd.init_bucket({"bucket": study.bucket, "bucketPrefix": study.datastore, "token": "t"})
        job = await cd.download([study.study_uid])
        seen = {}
        loop = asyncio.get_running_loop()

        def on_save(p):
            if "paused" not in seen:
                job.pause()
                seen["paused"] = True
                # Reads already under way may still land; after that, nothing moves.
                loop.call_later(0.3, lambda: seen.__setitem__("held_at", job.client.traffic.body_bytes))
                loop.call_later(1.3, lambda: (seen.__setitem__("before_resume", job.client.traffic.body_bytes),
                                              job.resume()))
        job.on_save(on_save)
        result = await job.start()
        return job, result, seen

    job, result, seen = asyncio.run(go())
    assert result["failed"] == [] and not result["cancelled"]
    assert seen["before_resume"] == seen["held_at"]            # not a byte read while paused
    assert folder_files(tmp_path) == bucket_files(bucket_server, study)
    t = job.client.traffic           # one listing, metadata and tar per series; nothing twice
    assert t.requests == 1 + 2 * len(study.series) and t.retries == 0 and 206 not in t.statuses
    assert study.total_tar_bytes <= t.body_bytes <= study.total_tar_bytes + 64 * 1024


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
