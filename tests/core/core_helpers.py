"""Shared builders for the core tests: real DICOM bytes, COD tars with honest
metadata, and an opener that records requests (instrumentation, not a mock)."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path

import crc32c as _crc32c

from cod_retrieve import _compat
from support.codbuild import build_tar, crc_b64, dicom_bytes  # noqa: F401 - re-exported for the core tests

SAMPLES = Path("/work/shared/samples")
SAMPLE_TAR = SAMPLES / "series-1.2.826.0.1.3680043.8.498.11.tar"
SAMPLE_META = SAMPLES / "series-metadata-v2.json"
SAMPLE_STUDY = "1.2.826.0.1.3680043.8.498.1"
SAMPLE_SERIES = "1.2.826.0.1.3680043.8.498.11"


def instance_entry(bucket: str, datastore: str, study: str, series: str, member: str,
                   start: int, end: int, data: bytes) -> dict:
    return {
        "uri": f"gs://{bucket}/{datastore}/studies/{study}/series/{series}.tar://{member}",
        "headers": {"start_byte": start, "end_byte": end},
        "size": end - start,
        "crc32c": crc_b64(data),
        "metadata": {},
        "version": "1.0",
    }


def metadata_doc(study: str, series: str, instances: dict[str, dict]) -> dict:
    return {"study_uid": study, "series_uid": series, "cod": {"instances": instances}}


class Recorder:
    """Wraps the real opener and records (url, headers, status) of every request."""

    def __init__(self, inner=None) -> None:
        self.inner = inner or _compat.open_url
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.statuses: list[int] = []

    async def __call__(self, url, headers):
        self.calls.append((url, dict(headers)))
        resp = await self.inner(url, headers)
        self.statuses.append(resp.status)
        return resp

    def tar_calls(self):
        return [(u, h) for u, h in self.calls if u.split("?", 1)[0].endswith(".tar")]

    def clear(self) -> None:
        self.calls.clear()
        self.statuses.clear()


# -- real server helpers ----------------------------------------------------------------

def fetch_tar_members(server, bucket: str, datastore: str, study: str, series: str) -> dict[str, bytes]:
    """The series tar straight from the server (path-style GET), read with tarfile."""
    status, _, body = server.request("GET", f"/{bucket}/{datastore}/studies/{study}/series/{series}.tar")
    assert status == 200, status
    with tarfile.open(fileobj=io.BytesIO(body)) as tf:
        return {ti.name: tf.extractfile(ti).read() for ti in tf.getmembers() if ti.isfile()}


def fetch_metadata(server, bucket: str, datastore: str, study: str, series: str) -> dict:
    data, _ = server.download(bucket, f"{datastore}/studies/{study}/series/{series}/metadata.json",
                              accept_gzip=False)
    return json.loads(data)


def copy_study(server, fx, dest_bucket: str, skip=lambda name: False) -> None:
    """Copy every object of a study (as stored: gzip metadata stays gzip) to another bucket."""
    server.create_bucket(dest_bucket)
    items, _ = server.list_objects(fx.bucket, fx.study_prefix)
    for it in items:
        if skip(it["name"]):
            continue
        data, _ = server.download(fx.bucket, it["name"], accept_gzip=True)
        server.upload(dest_bucket, it["name"], data, it.get("contentType") or "application/octet-stream",
                      it.get("contentEncoding") or None)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file()}


async def run_download(cd, studies: list[str], before_start=None):
    """download() + start(), collecting every callback; `before_start()` runs
    between the two (after the space check, before a tar is fetched)."""
    job = await cd.download(studies)
    if before_start is not None:
        before_start()
    events: dict[str, list] = {e: [] for e in ("error", "save", "progress", "complete", "series")}
    for name, lst in events.items():
        job.on(name, lst.append)
    result = await job.start()
    return job, result, events
