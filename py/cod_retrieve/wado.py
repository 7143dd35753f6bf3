"""Fetching a series from a DICOMweb server (WADO-RS) inside a Job.

The whole series comes as one `multipart/related; type="application/dicom"`
answer, cut into instances by `MultipartReader` as it streams. Each part is
known by its own header (the SOP Instance UID in its file meta), checked
against the listing and against the part's Content-Length, and written
through the job's sink like an instance of a COD tar. What the series answer
did not bring (a cut connection, a server that left an instance out) is asked
for again alone, by instance-level WADO-RS; what still does not come is
reported per instance.

The stored transfer syntax is asked for (`transfer-syntax=*`: the bytes as the
server holds them); a server that refuses it is asked again without it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .dump import dump_series
from .errors import Cancelled, CodError, HttpError, IntegrityError, StorageFullError
from .headfirst import HeadFirst, settle
from .landing import Pending
from .metadata import Instance
from .multipart import BodyEnd, MultipartReader, PartData, PartEnd, PartStart, boundary_from_content_type
from .plan import SeriesPlan
from .progress import ProgressMeter
from .verify import HEAD_BYTES, dicom_sop_uid, transfer_syntax

if TYPE_CHECKING:
    from .job import Job

ACCEPT_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_ANY = 'multipart/related; type="application/dicom"'
REFUSED_ACCEPT = (400, 406, 415)     # what servers answer to a transfer syntax they will not send


class _Part(HeadFirst):
    """One part of a multipart answer, named by the SOP UID in its file meta."""

    def __init__(self, job: "Job", sp: SeriesPlan, wanted: dict[str, Instance], length: int | None,
                 pending: Pending, number: int) -> None:
        super().__init__(job, length, pending)
        self.sp, self.wanted, self.number = sp, wanted, number

    async def identify(self, final: bool) -> bool:
        where = f"part {self.number} of the answer for series {self.sp.series_uid}"
        if final and not self.head:
            raise IntegrityError(f"{where} is empty")
        if len(self.head) < HEAD_BYTES and not final:
            try:
                sop = dicom_sop_uid(bytes(self.head), where)
            except IntegrityError:
                return False               # not all of the file meta yet
        else:
            sop = dicom_sop_uid(bytes(self.head[:HEAD_BYTES]), where)
        inst = self.wanted.pop(sop, None)
        if inst is None:
            self.skip = True
            if all(i.sop_uid != sop for i in self.sp.instances):
                self.job._error(IntegrityError(f"series {self.sp.series_uid}: the server sent instance {sop}, "
                                               f"which its listing did not name: not saved",
                                               study=self.sp.study_uid, series=self.sp.series_uid), self.sp)
            return False
        self.inst = inst
        _learn_file_meta(inst, bytes(self.head[:HEAD_BYTES]))
        return True

    def mismatch(self) -> str:
        return f"instance {self.inst.sop_uid}: got {self.got} bytes, the part's Content-Length says {self.expected}"


def _learn_file_meta(inst: Instance, head: bytes) -> None:
    """Keep what the file itself says of its encoding (a DICOMDIR record names
    it): the listing does not carry the transfer syntax."""
    ts = transfer_syntax(head)
    if ts and isinstance(inst.dicom_json, dict):
        inst.dicom_json["00020010"] = {"vr": "UI", "Value": [ts]}


async def retrieve(job: "Job", sp: SeriesPlan, url: str, want: list[Instance], what: str) -> int:
    """One WADO-RS request; the instances of `want` it brings are saved.
    Returns the bytes received."""
    wanted = {i.sop_uid: i for i in want}
    info: dict[str, Any] = {}
    pending: Pending = []
    reader: MultipartReader | None = None
    current: _Part | None = None
    got = 0
    meter = ProgressMeter(job, sp)
    try:
        async for chunk in job.client.body(url, what, info=info, accept=job.wado_accept, resumable=False):
            got += len(chunk)
            if reader is None:
                reader = MultipartReader(boundary_from_content_type(info.get("content_type", "")))
            for ev in reader.feed(chunk):
                if isinstance(ev, PartData):
                    await current.data(ev.data)
                elif isinstance(ev, PartStart):
                    current = _Part(job, sp, wanted, ev.content_length, pending, ev.number)
                elif isinstance(ev, PartEnd):
                    part, current = current, None
                    await part.end()
                elif isinstance(ev, BodyEnd):
                    break
            meter.add(len(chunk))
        meter.flush()
        if reader is None:
            reader = MultipartReader(boundary_from_content_type(info.get("content_type", "")))
        reader.end()
    except BaseException:
        if current is not None:
            await current.abort()
        raise
    finally:
        await settle(job, pending)
    return got


async def download_series(job: "Job", sp: SeriesPlan) -> None:
    """The series' missing instances: in one series answer when none is saved,
    else one by one; then each still missing alone, up to the job's retries."""
    job._series_status(sp, "downloading")
    before = set(sp.saved)
    received = 0
    first_error: CodError | None = None
    if not sp.saved:
        try:
            received += await _with_fallback(job, sp, sp.tar_url, sp.missing, f"series {sp.series_uid} (WADO-RS)")
        except (asyncio.CancelledError, Cancelled, StorageFullError):
            raise
        except CodError as e:
            first_error = e          # what is missing is asked for alone below
    for inst in list(sp.missing):
        last: CodError | None = None
        for _ in range(max(1, job.instance_retries)):
            try:
                received += await _with_fallback(job, sp, inst.uri, [inst], f"instance {inst.sop_uid} (WADO-RS)")
            except (asyncio.CancelledError, Cancelled, StorageFullError):
                raise
            except CodError as e:
                last = e
                if getattr(e, "status", None) == 404:
                    break
                continue
            if inst.sop_uid in sp.saved:
                break
        if inst.sop_uid not in sp.saved:
            job._uncount(inst)
            why = last or first_error
            reason = ("the server has no such instance (HTTP 404)" if getattr(why, "status", None) == 404
                      else str(why) if why else "it was in neither the series' answer nor its own")
            job._error(CodError(f"series {sp.series_uid}: the server did not send instance {inst.sop_uid}: {reason}",
                                study=sp.study_uid, series=sp.series_uid, url=inst.uri), sp, inst)
    if job.dump:
        try:
            await dump_series(job, sp, job.dump == "frames")
        except (asyncio.CancelledError, Cancelled, StorageFullError):
            raise
        except CodError as e:
            job._error(CodError(f"series {sp.series_uid}: the dump could not be written: {e}",
                                study=sp.study_uid, series=sp.series_uid), sp)
    job._transferred(sp, received, [i for i in sp.instances if i.sop_uid in sp.saved and i.sop_uid not in before])


async def _with_fallback(job: "Job", sp: SeriesPlan, url: str, want: list[Instance], what: str) -> int:
    try:
        return await retrieve(job, sp, url, want, what)
    except HttpError as e:
        if e.status not in REFUSED_ACCEPT or job.wado_accept != ACCEPT_STORED:
            raise
        job.wado_accept = ACCEPT_ANY     # this server will not send the stored syntax: take what it sends
        return await retrieve(job, sp, url, want, what)


__all__ = ["download_series", "retrieve", "ACCEPT_STORED", "ACCEPT_ANY"]
