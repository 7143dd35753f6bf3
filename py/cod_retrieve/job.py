"""A download job: series in parallel (bounded), each tar streamed through the
tar reader, every instance verified, written with bounded writes in flight,
retried alone when it fails, and every outcome reported through callbacks.

Bytes walk one way: bucket -> Client.body -> TarReader/SpanReader ->
_Receiver (size, CRC32C, DICOM UID) -> sink -> events.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from ._compat import new_crc32c
from .errors import Cancelled, CodError, IntegrityError, StorageFullError, TarError
from .http import Client
from .landing import Landing, Pending
from .metadata import Instance
from .plan import Plan, SeriesPlan
from .progress import JobView, ProgressMeter, summary_line
from .dump import request_log
from .sinks import FolderSink, Sink
from .spans import SpanReader, coalesce
from .tarstream import MemberData, MemberEnd, MemberStart, TarReader, member_name_problem
from .verify import HEAD_BYTES, check_instance
from . import wado

Callback = Callable[[dict[str, Any]], Any]
EVENTS = ("progress", "download", "extract", "save", "complete", "error", "series")


class WritePool:
    """Bounds writes in flight (count and bytes): a slow disk makes `submit`
    wait, which stops the reader, which stops the network. Backpressure."""

    def __init__(self, max_tasks: int = 8, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._max_tasks, self._max_bytes = max_tasks, max_bytes
        self._tasks = 0
        self._bytes = 0
        self._cond = asyncio.Condition()

    async def submit(self, nbytes: int, coro) -> asyncio.Task:
        async with self._cond:
            await self._cond.wait_for(lambda: self._tasks < self._max_tasks and
                                      (self._bytes + nbytes <= self._max_bytes or self._tasks == 0))
            self._tasks += 1
            self._bytes += nbytes
        return asyncio.ensure_future(self._run(nbytes, coro))

    async def _run(self, nbytes: int, coro):
        try:
            return await coro
        finally:
            async with self._cond:
                self._tasks -= 1
                self._bytes -= nbytes
                self._cond.notify_all()


class _Skip:
    async def data(self, chunk) -> None:
        return None


SKIP = _Skip()


class _Receiver(Landing):
    """One instance's bytes: checked on the fly, buffered when small (one write
    per file is fastest), streamed into a not-yet-visible file when large."""

    def __init__(self, job: "Job", sp: SeriesPlan, inst: Instance, pending: Pending) -> None:
        self.job, self.sp, self.inst, self.pending = job, sp, inst, pending
        self.crc = new_crc32c()
        self.size = 0
        self.small = inst.size <= job.small_file
        # Small instances fill one buffer of their known size: no reallocation,
        # and one write per file (the fastest way into OPFS).
        self.buf = bytearray(inst.size) if self.small else bytearray()
        self.head = self.buf if self.small else bytearray()
        self.writer = None

    async def data(self, chunk: memoryview) -> None:
        n = len(chunk)
        if self.size + n > self.inst.size:
            raise IntegrityError(f"instance {self.inst.sop_uid}: more bytes than the {self.inst.size} the metadata says")
        self.job._count(self.inst, n)
        if self.small:    # checksummed whole at the end: one call instead of one per chunk
            self.buf[self.size:self.size + n] = chunk
            self.size += n
            return
        self.crc.update(chunk)
        self.size += n
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]
        self.buf += chunk
        await self.flush_batch()

    async def end(self) -> None:
        if self.small:
            self.crc.update(self.buf)
        try:
            check_instance(self.inst, self.size, self.crc.value, bytes(self.head[:HEAD_BYTES]))
        except IntegrityError:
            await self.abort()
            raise
        await self.land()


class Job:
    def __init__(self, plan: Plan, client: Client, sink: Sink, *, concurrency: int = 3,
                 instance_retries: int = 3, writes_in_flight: int = 8,
                 small_file: int = 16 * 1024 * 1024, write_batch: int = 8 * 1024 * 1024,
                 progress_interval: float = 0.05, dump: bool | str = False) -> None:
        self.plan = plan
        self.client = client
        self.sink = sink
        self.concurrency = max(1, concurrency)
        self.instance_retries = instance_retries
        self.small_file = small_file
        self.write_batch = write_batch
        self.progress_interval = progress_interval
        self.pool = WritePool(writes_in_flight)
        self.state = "new"
        self._callbacks: dict[str, list[Callback]] = {e: [] for e in EVENTS}
        self._gate = asyncio.Event()
        self._gate.set()
        client.gate = self._gate
        self._tasks: list[asyncio.Task] = []
        todo = [s for s in plan.series if s.metadata is not None]
        self.bytes_total = sum(i.size for s in todo for i in s.missing)
        self.bytes_done = 0
        self._counted: dict[str, int] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.started_at = 0.0
        self.stopped_by: CodError | None = None    # what ended the job early (a full disk)
        self.view = JobView(self.bytes_total)      # rate over the last 10 s, time left, rows
        self.wado_accept = wado.ACCEPT_STORED      # DICOMweb: what multipart answers to ask for
        self.archive_skipped: list[dict[str, str]] = []   # an archive's files that are not DICOM instances
        # DICOMweb: write what the server says of each study and series (True), and each
        # instance's frames ("frames"), under dump/, and log every request (dump.py).
        self.dump = dump
        self.dumped_studies: set[str] = set()
        if dump:
            client.traffic.log = []

    # -- callbacks (the original's names) --------------------------------
    def on(self, event: str, callback: Callback) -> None:
        if event not in self._callbacks:
            raise ValueError(f"unknown event {event!r}; known: {', '.join(EVENTS)}")
        self._callbacks[event].append(callback)

    def on_progress(self, cb: Callback) -> None: self.on("progress", cb)
    def on_download(self, cb: Callback) -> None: self.on("download", cb)
    def on_extract(self, cb: Callback) -> None: self.on("extract", cb)
    def on_save(self, cb: Callback) -> None: self.on("save", cb)
    def on_complete(self, cb: Callback) -> None: self.on("complete", cb)
    def on_error(self, cb: Callback) -> None: self.on("error", cb)
    def on_series(self, cb: Callback) -> None: self.on("series", cb)

    def _emit(self, event: str, payload: dict[str, Any]) -> None:
        self.view.apply(event, payload)
        if event == "progress":         # what a person watching reads, the same on every front end
            snap = self.view.snapshot()
            payload = {**payload, "jobRate": snap.rate, "jobSecondsLeft": snap.seconds_left,
                       "jobSummary": summary_line(snap)}
        for cb in list(self._callbacks[event]):
            try:
                cb(payload)
            except Exception as e:  # noqa: BLE001 - a host's callback must not kill the job
                if event != "error":
                    self._emit("error", {"url": None, "error": f"{event} callback failed: {e}", "kind": "callback"})

    # -- control ---------------------------------------------------------
    def pause(self) -> None:
        if self.state == "running":
            self.state = "paused"
            self._gate.clear()

    def resume(self) -> None:
        if self.state == "paused":
            self.state = "running"
            self._gate.set()

    def cancel(self) -> None:
        if self.state in ("new", "running", "paused"):
            self.state = "cancelled"
            self.client.cancelled = True
            self._gate.set()
            for t in self._tasks:
                t.cancel()

    def _stop(self, err: CodError) -> None:
        """An error no series can get past (no space left): report it once,
        stop every series, keep what is saved."""
        if self.stopped_by is not None or self.state not in ("running", "paused"):
            return
        self.stopped_by = err
        self.state = "failed"
        self._error(err, None)
        self.client.cancelled = True
        self._gate.set()
        for t in self._tasks:
            if t is not asyncio.current_task():
                t.cancel()

    # -- run -------------------------------------------------------------
    async def start(self) -> dict[str, Any]:
        if self.state != "new":
            raise RuntimeError(f"job already {self.state}")
        self.state = "running"
        self.started_at = time.monotonic()
        for err in self.plan.errors:
            self._error(err, None)
        await self.sink.prepare(self.plan.series)
        sem = asyncio.Semaphore(self.concurrency)
        if self.plan.archive is not None:      # one stream: its series are found as it is read
            from .archive_source import download_archive  # noqa: PLC0415 - archive sources only
            self._tasks = [asyncio.ensure_future(download_archive(self, self.plan))]
        else:
            self._tasks = [asyncio.ensure_future(self._series(sp, sem)) for sp in self.plan.series]
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            ok = all(r["status"] == "saved" for r in self.results.values()) and not self.plan.errors
            if self.dump and isinstance(self.sink, FolderSink):    # a zip is closed by now: folders only
                try:
                    await self.sink.put_extra(("dump", "requests.jsonl"), request_log(self), "")
                except CodError as e:
                    self._error(e, None)
            try:
                await self.sink.close(ok and self.state != "cancelled")
            except StorageFullError as e:
                if self.stopped_by is None:      # else said once already (log.json could not be written either)
                    self._error(e, None)
            except CodError as e:
                self._error(e, None)
        if self.state == "running":
            self.state = "done"
        return self._complete()

    def _complete(self) -> dict[str, Any]:
        ok = [r for r in self.results.values() if r["status"] == "saved"]
        bad = [r for r in self.results.values() if r["status"] != "saved"]
        payload = {
            "files": [{"url": r["url"], "size": r["size"]} for r in ok],
            "succeeded": [r["key"] for r in ok],
            "failed": [{"study": r["study"], "series": r["series"], "error": r.get("error")} for r in bad]
                      + [{"study": e.study, "series": None, "error": str(e)} for e in self.plan.errors],
            "cancelled": self.state == "cancelled",
            "bytesTotal": self.bytes_total,
            "bytesDone": self.bytes_done,
            "seconds": round(time.monotonic() - self.started_at, 3),
            "requests": self.client.traffic.requests,
            "retries": self.client.traffic.retries,
        }
        if self.plan.archive is not None:      # what an archive held besides DICOM files
            payload["skipped"] = list(self.archive_skipped)
        self._emit("complete", payload)
        return payload

    def _series_status(self, sp: SeriesPlan, status: str, error: str | None = None) -> None:
        result = {"key": sp.key, "study": sp.study_uid, "series": sp.series_uid, "url": sp.tar_url,
                  "size": sp.size, "status": status, "instances": len(sp.instances),
                  "savedInstances": len(sp.saved), "error": error}
        if status in ("saved", "failed", "cancelled"):
            self.results[sp.key] = result
        self._emit("series", dict(result))

    def _error(self, err: BaseException, sp: SeriesPlan | None, inst: Instance | None = None) -> None:
        self._emit("error", {
            "url": getattr(err, "url", None) or (sp.tar_url if sp else None),
            "error": str(err),
            "kind": type(err).__name__,
            "study": sp.study_uid if sp else getattr(err, "study", None),
            "series": sp.series_uid if sp else getattr(err, "series", None),
            "instance": inst.sop_uid if inst else None,
        })

    def _count(self, inst: Instance, n: int) -> None:
        self._counted[inst.sop_uid] = self._counted.get(inst.sop_uid, 0) + n
        self.bytes_done += n

    def _uncount(self, inst: Instance) -> None:
        self.bytes_done -= self._counted.pop(inst.sop_uid, 0)

    async def _saved(self, sp: SeriesPlan, inst: Instance, data: bytes | bytearray | None = None) -> None:
        """An instance is verified and in place. `data` is the instance's bytes
        when it was written in one piece: handed to onSave listeners as the
        original's `file.buffer`, and not kept after the callbacks."""
        sp.saved.add(inst.sop_uid)
        await self.sink.saved(inst)
        self._emit("save", {"url": sp.tar_url, "size": inst.size,
                            "file": {"name": inst.file_name, "size": inst.size,
                                     "path": self.sink.describe(inst), "buffer": data},
                            "study": sp.study_uid, "series": sp.series_uid, "instance": inst.sop_uid})

    async def _series(self, sp: SeriesPlan, sem: asyncio.Semaphore) -> None:
        if sp.metadata is None:
            self._error(sp.error or CodError("series has no metadata"), sp)
            self._series_status(sp, "failed", str(sp.error))
            return
        if sp.complete:
            self._series_status(sp, "saved")
            return
        self._series_status(sp, "waiting")
        try:
            async with sem:
                await self._download_series(sp)
        except (asyncio.CancelledError, Cancelled):
            if self.stopped_by is not None:
                self._series_status(sp, "failed", str(self.stopped_by))
            else:
                self._series_status(sp, "cancelled", "cancelled")
            return
        except StorageFullError as e:
            self._stop(e)
            self._series_status(sp, "failed", str(e))
            return
        missing = sp.missing
        ok = not missing
        await self.sink.series_done(sp, ok)
        if ok:
            self._series_status(sp, "saved")
        else:
            self._series_status(sp, "failed", f"{len(missing)} of {len(sp.instances)} instances could not be saved")

    def _refuse_members(self, sp: SeriesPlan) -> set[str]:
        """Instances whose tar member name is not a plain relative path: refused
        before a byte is fetched, even though the metadata lists them."""
        refused = set()
        for inst in sp.missing:
            problem = member_name_problem(inst.member)
            if problem:
                refused.add(inst.sop_uid)
                self._error(TarError(f"series {sp.series_uid}: tar member {inst.member[:200]!r} {problem}: "
                                     f"refused, nothing written for it", study=sp.study_uid, series=sp.series_uid),
                            sp, inst)
        return refused

    async def _download_series(self, sp: SeriesPlan) -> None:
        if sp.source == "dicomweb":
            await wado.download_series(self, sp)
            return
        self._series_status(sp, "downloading")
        failed: dict[str, tuple[Instance, BaseException]] = {}
        refused = self._refuse_members(sp)
        before = set(sp.saved)
        todo = [i for i in sp.missing if i.sop_uid not in refused]
        received = 0
        try:
            if len(todo) == len(sp.instances):
                received += await self._stream(sp, todo, None, failed)
            else:
                for run in coalesce(todo):
                    received += await self._stream(sp, run, run, failed)
        except (asyncio.CancelledError, Cancelled, StorageFullError):
            raise
        except CodError as e:
            self._error(e, sp)
            if not isinstance(e, TarError):
                return   # the request itself failed after its retries: per-instance ones would too
        for inst in sp.missing:
            if inst.sop_uid not in refused:
                failed.setdefault(inst.sop_uid, (inst, TarError(f"instance {inst.sop_uid} was not received")))
        # Fetch each failed instance again, alone, by its byte range.
        for sop, (inst, err) in list(failed.items()):
            if sop in sp.saved:
                continue
            last: BaseException = err
            for _ in range(self.instance_retries):
                local: dict[str, tuple[Instance, BaseException]] = {}
                try:
                    received += await self._stream(sp, [inst], [inst], local)
                except (asyncio.CancelledError, Cancelled, StorageFullError):
                    raise
                except CodError as e:
                    last = e
                    if getattr(e, "status", None) in (404, 416):
                        break
                    continue
                if sop in sp.saved:
                    break
                if sop in local:
                    last = local[sop][1]
            if sop not in sp.saved:
                self._uncount(inst)
                if str(last) != str(err):   # name the first cause too: a retry's error can hide it
                    kind = IntegrityError if isinstance(err, IntegrityError) else CodError
                    last = kind(f"{err}; fetched again alone: {last}", study=sp.study_uid, series=sp.series_uid)
                self._error(last, sp, inst)
        self._transferred(sp, received, [i for i in sp.instances if i.sop_uid in sp.saved and i.sop_uid not in before])

    def _transferred(self, sp: SeriesPlan, received: int, saved: list[Instance]) -> None:
        """The original's onDownload and onExtract, once per series: `size` is
        the series' DICOM bytes; the tar's bytes are never held, so `file` is
        null and `files` lists names and sizes without buffers."""
        self._emit("download", {"url": sp.tar_url, "size": sp.size, "file": None, "bytesReceived": received,
                                "study": sp.study_uid, "series": sp.series_uid})
        self._emit("extract", {"url": sp.tar_url, "size": sp.size, "study": sp.study_uid, "series": sp.series_uid,
                               "files": [{"name": i.file_name, "size": i.size} for i in saved]})

    async def _stream(self, sp: SeriesPlan, want: list[Instance], span: list[Instance] | None,
                      failed: dict[str, tuple[Instance, BaseException]]) -> int:
        """One request: the whole tar (span None) or one Range over `span`.
        Returns the bytes received."""
        if span is None:
            reader: TarReader | SpanReader = TarReader()
            start, end = 0, None
            what = f"tar of series {sp.series_uid}"
        else:
            start, end = span[0].start_byte, span[-1].end_byte
            reader = SpanReader(span, start)
            what = f"bytes {start}-{end} of the tar of series {sp.series_uid}"
        wanted = {i.member: i for i in want}
        by_member = sp.metadata.by_member() if sp.metadata else {}
        pending: Pending = []
        current: Any = SKIP
        got = 0
        meter = ProgressMeter(self, sp)
        info: dict[str, Any] = {}
        try:
            async for chunk in self.client.body(sp.tar_url, what, start, end, info):
                got += len(chunk)
                for ev in reader.feed(chunk):
                    if isinstance(ev, MemberData):
                        try:
                            await current.data(ev.data)
                        except IntegrityError as e:
                            failed[current.inst.sop_uid] = (current.inst, e)
                            await current.abort()
                            current = SKIP
                    elif isinstance(ev, MemberStart):
                        current = self._member(sp, ev, wanted, by_member, failed, pending)
                    elif isinstance(ev, MemberEnd):
                        if current is not SKIP:
                            try:
                                await current.end()
                            except IntegrityError as e:
                                failed[current.inst.sop_uid] = (current.inst, e)
                                self._uncount(current.inst)
                        current = SKIP
                meter.add(len(chunk), info.get("length"))
            meter.flush(info.get("length"))
            if isinstance(reader, TarReader):
                reader.finish()
        except BaseException:
            if current is not SKIP:
                await current.abort()
            raise
        finally:
            full: StorageFullError | None = None
            for _sp, inst, task in pending:
                try:
                    await task
                except (asyncio.CancelledError, Cancelled):
                    raise
                except StorageFullError as e:
                    full = full or e
                    self._uncount(inst)
                except Exception as e:  # noqa: BLE001 - a failed write is retried, then reported
                    failed[inst.sop_uid] = (inst, e)
                    self._uncount(inst)
            if full is not None:
                raise full
        return got

    def _progress(self, sp: SeriesPlan, delta: int, total: int | None) -> None:
        """The original's per-chunk event, coalesced: `bytesDownloaded` is the
        delta since the last event (tar bytes), `bytesTotal` the size of the
        request (the tar's Content-Length, or the Range)."""
        self._emit("progress", {"url": sp.tar_url, "bytesDownloaded": delta, "bytesTotal": total,
                                "study": sp.study_uid, "series": sp.series_uid,
                                "jobBytesDone": self.bytes_done, "jobBytesTotal": self.bytes_total})

    def _member(self, sp: SeriesPlan, ev: MemberStart, wanted: dict[str, Instance],
                by_member: dict[str, Instance], failed: dict, pending: list):
        inst = by_member.get(ev.name)
        if ev.kind != "file":
            self._error(TarError(f"tar member {ev.name[:200]!r} is a {ev.kind}, not a file: refused"), sp)
            return SKIP
        if inst is None:
            self._error(TarError(f"tar member {ev.name[:200]!r} is not in the series metadata: refused"), sp)
            return SKIP
        if ev.name not in wanted:   # saved already, or refused by name before the request
            return SKIP
        if ev.size != inst.size:
            err = IntegrityError(f"tar member {ev.name!r} has {ev.size} bytes, metadata says {inst.size}")
            failed[inst.sop_uid] = (inst, err)
            return SKIP
        if inst.sop_uid in self._counted:
            self._uncount(inst)
        return _Receiver(self, sp, inst, pending)
