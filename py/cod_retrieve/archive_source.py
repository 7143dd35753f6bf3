"""An archive URL as a source: one zip, tar or tar.gz of DICOM files (XNAT's
`.../scans/ALL/files?format=zip`, an NBIA series tar, a colleague's zip).

Nothing says in advance what it holds, so there is nothing to list: the job
streams the archive once, and each file is known by its own header. A DICOM
file (Part 10: `DICM` after the preamble) is placed by its own Study, Series
and SOP Instance UIDs in the chosen layout and written through the job's sink,
its series reported as it is found; anything else is skipped and listed. The
archive policy refuses traversal, links and bombs before a byte is written
from them. The transfer resumes with Range after a cut (a file on a web
server); a rerun skips what log.json already holds.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlsplit

from .archive_read import FileData, FileEnd, FileStart, Unpacker
from .archive_policy import Limits
from .errors import BucketError, CodError
from .headfirst import HeadFirst, settle
from .landing import Pending
from .layout import Placement, claim_instance, record_paths
from .metadata import Instance, SeriesMetadata
from .plan import Plan, SeriesPlan
from .progress import ProgressMeter
from .uids import is_uid

if TYPE_CHECKING:
    from .job import Job

HEAD = 1 << 20          # a DICOM header is read from at most this much of a file
PREAMBLE = 132


@dataclass(frozen=True)
class ArchiveSource:
    url: str
    token: str | None = None
    limits: Limits = Limits()

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BucketError(f"archive URL {self.url!r} is not an http(s) URL")

    def __repr__(self) -> str:      # never show the token
        return f"ArchiveSource({self.url!r})"


def parse_archive(details: str | Mapping[str, Any]) -> ArchiveSource:
    """`{archive: url, token}`."""
    url = details.get("archive") if isinstance(details, Mapping) else details
    if not isinstance(url, str) or not url.strip():
        raise BucketError("archive details need the archive's URL (archive: 'https://host/study.zip')")
    token = details.get("token") if isinstance(details, Mapping) else None
    return ArchiveSource(url.strip(), str(token) if token else None)


def archive_plan(source: ArchiveSource, study_uids: list[str], layout, recorded, saved_keys) -> Plan:
    """A plan that names the archive: its series are found while it streams.
    `study_uids` (optional) keeps only those studies; `saved_keys` are log.json's."""
    plan = Plan([u.strip() for u in study_uids if u and u.strip()], [], layout=layout)
    plan.archive = ArchiveRun(source, dict(recorded or {}), set(saved_keys or ()))
    return plan


@dataclass
class ArchiveRun:
    source: ArchiveSource
    recorded: dict[str, tuple[str, ...]]
    saved_keys: set[str]


class _File(HeadFirst):
    """One file of the archive, named by its DICOM header (read with pydicom)."""

    def __init__(self, job: "Job", run: "_Run", name: str, size: int | None) -> None:
        super().__init__(job, size, run.pending)
        self.run, self.name = run, name

    def _skip(self, why: str) -> bool:
        self.skip = True
        self.run.skipped.append({"name": self.name, "why": why})
        return False

    async def identify(self, final: bool) -> bool:
        if not final and len(self.head) < PREAMBLE:
            return False
        if self.head[128:132] != b"DICM":
            return self._skip("not a DICOM file (no DICM after a 128-byte preamble)")
        if not final and len(self.head) < HEAD and (self.expected is None or len(self.head) < self.expected):
            return False
        from pydicom import dcmread  # noqa: PLC0415 - lazy: importing pydicom costs a second in the browser

        try:
            ds = dcmread(io.BytesIO(bytes(self.head)), stop_before_pixels=True)
            uids = [str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
        except Exception as e:  # noqa: BLE001 - a header pydicom cannot read is not one we can place
            return self._skip(f"its DICOM header does not read: {e}")
        if not all(is_uid(u) for u in uids):
            return self._skip("its DICOM header lacks a valid Study, Series or SOP Instance UID")
        study, series, sop = uids
        if self.run.studies and study not in self.run.studies:
            return self._skip(f"study {study} was not asked for")
        key = f"{study}/{series}/{sop}"
        if key in self.run.seen:
            return self._skip(f"instance {sop} came earlier in the archive")
        self.run.seen.add(key)
        doc = _json(ds)
        self.sp, first = await self.run.series(study, series, doc)
        inst = Instance(study, series, sop, self.name, 0, self.expected or 0, 0, doc, "archive",
                        self.run.archive.source.url, known=False)
        if key in self.run.archive.saved_keys:          # in log.json: read past, not written again
            self.sp.metadata.instances.append(inst)
            self.sp.saved.add(sop)
            self.skip = True
            return False
        self.inst = replace(inst, place=self.run.place(inst, doc, first))
        self.sp.metadata.instances.append(self.inst)
        return True

    def mismatch(self) -> str:
        return f"archive entry {self.name!r}: got {self.got} bytes, its header says {self.expected}"


def _json(ds) -> dict[str, Any]:
    """The header as DICOM JSON (no bulk data): what layouts and a DICOMDIR read."""
    try:
        doc = ds.to_json_dict(bulk_data_threshold=1 << 16, bulk_data_element_handler=lambda _e: "")
    except Exception:  # noqa: BLE001 - a value pydicom cannot express in JSON: keep the rest
        doc = {}
        for elem in ds:
            try:
                doc.update(type(ds)({elem.tag: elem}).to_json_dict(1 << 16, lambda _e: ""))
            except Exception:  # noqa: BLE001
                continue
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        doc["00020010"] = {"vr": "UI", "Value": [str(meta.TransferSyntaxUID)]}
    return doc


class _Run:
    """What one pass over the archive has found: its series, names, skips."""

    def __init__(self, job: "Job", plan: Plan) -> None:
        self.job, self.plan, self.archive = job, plan, plan.archive
        self.studies = set(plan.studies)
        self.placement = Placement(plan.layout)
        record_paths(self.placement, self.archive.recorded)
        self.by_series: dict[tuple[str, str], tuple[SeriesPlan, dict]] = {}
        self.seen: set[str] = set()
        self.skipped: list[dict[str, str]] = []
        self.current: _File | None = None           # the file being read
        self.pending: Pending = []                  # small files in the write pool

    async def series(self, study: str, series: str, doc: dict) -> tuple[SeriesPlan, dict]:
        found = self.by_series.get((study, series))
        if found is None:
            sp = SeriesPlan(study, series, self.archive.source.url, SeriesMetadata(study, series, []), source="archive")
            found = self.by_series[(study, series)] = (sp, doc)
            self.plan.series.append(sp)
            if study not in self.plan.studies:
                self.plan.studies.append(study)
            await self.job.sink.prepare([sp])
            self.job._series_status(sp, "downloading")
        return found

    def place(self, inst: Instance, doc: dict, first: dict) -> tuple[str, ...]:
        if inst.log_key in self.archive.recorded:
            return tuple(self.archive.recorded[inst.log_key])
        return claim_instance(self.placement, inst, doc, first, ("recorded", inst.study_uid))


async def download_archive(job: "Job", plan: Plan) -> None:
    """Stream the archive once; every DICOM file in it lands, everything else is listed."""
    run = _Run(job, plan)
    source = plan.archive.source
    unpacker = Unpacker(source.limits)
    info: dict[str, Any] = {}
    error: CodError | None = None
    meter = ProgressMeter(job, SeriesPlan("", "", source.url))    # the archive as a whole
    try:
        async for chunk in job.client.body(source.url, f"archive {source.url}", info=info):
            await _apply(job, run, unpacker.feed(chunk))
            job.bytes_total = info.get("length") or 0
            meter.add(len(chunk), info.get("length"))
        meter.flush(info.get("length"))
        await _apply(job, run, unpacker.end())
        await settle(job, run.pending)
    except CodError as e:
        if run.current is not None:
            await run.current.abort()
        error = e
        try:
            await settle(job, run.pending)          # what was in the pool lands, or is reported
        except CodError:
            pass
    finally:
        job.archive_skipped = run.skipped
    if error is not None:
        plan.errors.append(error)       # the job did not finish: it says so in onComplete's `failed`
        job._error(error, None)
    for sp, _ in run.by_series.values():
        ok = error is None and not sp.missing
        await job.sink.series_done(sp, ok)
        job._series_status(sp, "saved" if ok else "failed",
                           None if ok else f"the archive could not be read to its end: {error}")
    if not run.by_series and error is None:
        empty = CodError(f"the archive {source.url} holds no DICOM files"
                         + (" of the studies asked for" if run.studies else "")
                         + (f" ({len(run.skipped)} other files skipped)" if run.skipped else ""))
        plan.errors.append(empty)
        job._error(empty, None)


async def _apply(job: "Job", run: _Run, events) -> None:
    """The unpacker's events to the files they belong to (`run.current`: the one open)."""
    for ev in events:
        if isinstance(ev, FileData):
            await run.current.data(ev.data)
        elif isinstance(ev, FileStart):
            run.current = _File(job, run, ev.name, ev.size)
        elif isinstance(ev, FileEnd):
            done, run.current = run.current, None
            await done.end()


__all__ = ["ArchiveSource", "parse_archive", "archive_plan", "download_archive"]
