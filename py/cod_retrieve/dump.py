"""dicomweb-dump's job, as an option of a DICOMweb download: beside the files, a
`dump/` folder with what the server says of each study and series (DICOM JSON),
each instance's frames where asked, and a record of every request.

    dump/<study>/study.json                 QIDO-RS answer for the study
    dump/<study>/<series>/metadata.json     WADO-RS metadata: every instance's DICOM JSON
    dump/<study>/<series>/<sop>/frame-<n>   WADO-RS frames, as the server sends them (`frames`)
    dump/requests.jsonl                     one line per response: URL, status, headers,
                                            time to first and to last byte, bytes (folders only)

In zip mode the same files go into each study's zip (without the request log,
which is only whole once every zip is closed).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .multipart import MultipartReader, PartData, PartEnd, PartStart, boundary_from_content_type
from .plan import SeriesPlan

if TYPE_CHECKING:
    from .job import Job

MAX_METADATA = 256 * 1024 * 1024
FRAMES_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


async def dump_series(job: "Job", sp: SeriesPlan, frames: bool) -> None:
    """The series' metadata (and the study's, with its first series), and its
    frames when asked; written through the job's sink."""
    root = sp.tar_url.rsplit("/studies/", 1)[0]
    if sp.study_uid not in job.dumped_studies:
        job.dumped_studies.add(sp.study_uid)
        raw = await job.client.get_bytes(f"{root}/studies?StudyInstanceUID={sp.study_uid}",
                                         f"study {sp.study_uid} (QIDO-RS, dump)", MAX_METADATA,
                                         accept="application/dicom+json")
        await job.sink.put_extra(("dump", sp.study_uid, "study.json"), raw, sp.study_uid)
    raw = await job.client.get_bytes(f"{sp.tar_url}/metadata", f"metadata of series {sp.series_uid} (WADO-RS, dump)",
                                     MAX_METADATA, accept="application/dicom+json")
    await job.sink.put_extra(("dump", sp.study_uid, sp.series_uid, "metadata.json"), raw, sp.study_uid)
    if not frames:
        return
    for inst in sp.instances:
        if inst.sop_uid not in sp.saved:
            continue
        count = _frames(inst.dicom_json)
        url = f"{inst.uri}/frames/{','.join(str(n) for n in range(1, count + 1))}"
        for n, data in enumerate(await _parts(job, url, f"frames of instance {inst.sop_uid} (WADO-RS, dump)"), 1):
            await job.sink.put_extra(("dump", sp.study_uid, sp.series_uid, inst.sop_uid, f"frame-{n}"),
                                     data, sp.study_uid)


def _frames(doc) -> int:
    values = ((doc or {}).get("00280008") or {}).get("Value") or [1]
    try:
        return max(1, int(values[0]))
    except (TypeError, ValueError):
        return 1


async def _parts(job: "Job", url: str, what: str) -> list[bytes]:
    """The parts of a multipart answer (frames are small enough to hold one instance's)."""
    info: dict = {}
    reader = None
    parts: list[bytes] = []
    current = bytearray()
    async for chunk in job.client.body(url, what, info=info, accept=FRAMES_ACCEPT, resumable=False):
        if reader is None:
            reader = MultipartReader(boundary_from_content_type(info.get("content_type", "")))
        for ev in reader.feed(chunk):
            if isinstance(ev, PartStart):
                current = bytearray()
            elif isinstance(ev, PartData):
                current += ev.data
            elif isinstance(ev, PartEnd):
                parts.append(bytes(current))
    if reader is not None:
        reader.end()
    return parts


def request_log(job: "Job") -> bytes:
    """dump/requests.jsonl: one JSON object per response."""
    lines = [json.dumps({k: v for k, v in rec.items() if not k.startswith("_")}) for rec in job.client.traffic.log or []]
    return ("\n".join(lines) + "\n").encode() if lines else b""


__all__ = ["dump_series", "request_log"]
