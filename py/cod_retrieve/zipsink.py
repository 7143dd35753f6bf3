"""Zip output: one `<StudyInstanceUID>.zip` per study, written while its series
stream in, into a disk-backed spool, then handed to the user's Downloads.

- Spool: `cod-retrieve-spool/<job-id>-<study>.zip` in the origin-private
  folder (OPFS in the browser, a temp directory in CPython), written through
  the folder's ordinary `FileWriter` (append only; `ZipStream` needs no seek).
- Series of a study arrive in parallel: entry writes are serialised per study
  by an `asyncio.Lock`; a large instance streamed in chunks holds it from
  `open()` to `commit()`/`abort()`. An aborted entry stays as unreferenced
  bytes in the spool but never appears in the zip's directory.
- When every series of a study has finished, its zip is closed (with a
  `MISSING.txt` entry naming series that did not arrive complete) and handed
  over through `_compat.deliver_file`, studies one after another. A study
  without a single saved instance gives no zip. Problems are raised from
  `close()` as one `CodError`, which the job reports through `on_error`.
- Spool files of earlier jobs (interrupted, crashed, or delivered long ago)
  are removed when the next `ZipSink` is created; a delivered file is kept a
  while first, because the browser reads it asynchronously.

Engines without a usable OPFS (WebKitGTK under automation): the zip streams
straight into the browser's download through the service worker `cod-sw.js`
(`_compat.service_worker_downloads`; each write waits until the browser pulls,
so memory stays at a chunk or two), and where that is impossible either, it is
built in memory (`MemoryFolder`, at most `MEMORY_LIMIT`). `cod.zip_spool`
("opfs" | "service-worker" | "memory"; the JS option `zipSpool`) forces one.
A streamed zip starts downloading with its study's first entry, so zips of
studies whose series interleave download at the same time.

Memory stays flat: entry data passes straight to the spool (small writes are
batched up to a few MiB); only the zip's central-directory records stay.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from typing import Any

from . import _compat
from .errors import CodError
from .folder import FileWriter, Folder, free_space, space_label
from .layout import Layout, parse_layout
from .metadata import Instance
from .plan import SeriesPlan
from .sidecars import sidecar_files
from .space import zip_bytes_needed
from .zipstream import ZipStream

SPOOL_DIR = "cod-retrieve-spool"
MISSING_NAME = "MISSING.txt"
KEEP_AFTER_HANDOFF = 120.0          # seconds a delivered spool file is kept (browser)
KEEP_PER_BYTE = 1 / 20e6            # ... plus this per byte (slow disks, big zips)
HANDOFF_GAP = 0.5 if _compat.IN_PYODIDE else 0.0   # pause between two downloads
OUT_BATCH = 4 << 20                 # small pieces are gathered up to this before a write
DIRECT = 1 << 20                    # pieces at least this big are written as they are

# Job id -> monotonic time after which its spool files may be removed
# (infinity while the job runs). Per runtime: one page, or one process.
_LIVE: dict[str, float] = {}
_TIMERS: set[asyncio.Task] = set()


def _new_job_id() -> str:
    return f"j{time.time_ns():x}{os.urandom(3).hex()}"


def _job_of(name: str) -> str:
    return name.lstrip(".").partition("-")[0]


MEMORY_LIMIT = 1 << 30   # bytes of zips a job may build in memory (no disk-backed spool)


class _MemoryWriter:
    def __init__(self, folder: "MemoryFolder", name: tuple[str, ...]) -> None:
        self._folder, self._name = folder, name
        self._chunks: list[bytes] = []

    async def write(self, data) -> None:
        self._chunks.append(bytes(data))

    async def commit(self) -> None:
        self._folder.files[self._name] = self._chunks

    async def abort(self) -> None:
        self._chunks = []


class MemoryFolder:
    """The spool of last resort, for engines without a usable origin-private
    file system (WebKitGTK under automation): files as lists of chunks in
    memory. Only used below `MEMORY_LIMIT` bytes per job."""

    name = "memory"

    def __init__(self) -> None:
        self.files: dict[tuple[str, ...], list[bytes]] = {}

    async def size(self, parts):
        c = self.files.get(tuple(parts))
        return None if c is None else sum(len(x) for x in c)

    async def sizes(self, parts) -> dict[str, int]:
        n = len(parts)
        return {k[n]: sum(len(x) for x in c) for k, c in self.files.items()
                if len(k) == n + 1 and k[:n] == tuple(parts)}

    async def read_bytes(self, parts, limit):
        c = self.files.get(tuple(parts))
        return None if c is None else b"".join(c)

    async def iter_bytes(self, parts):
        for chunk in self.files.get(tuple(parts), []):
            yield chunk

    def pop_chunks(self, parts) -> list[bytes]:
        return self.files.pop(tuple(parts), [])

    async def create(self, parts):
        return _MemoryWriter(self, tuple(parts))

    async def write_atomic(self, parts, data) -> None:
        self.files[tuple(parts)] = [bytes(data)]

    async def remove(self, parts) -> None:
        self.files.pop(tuple(parts), None)

    async def list(self, parts) -> list[str]:
        n = len(parts)
        return sorted(k[n] for k in self.files if len(k) == n + 1 and k[:n] == tuple(parts))


async def _disk_spool() -> Folder | None:
    """The origin-private folder, if this engine really lets us write to it."""
    try:
        folder = await _compat.private_folder()
        await folder.list((SPOOL_DIR,))
        probe = await folder.create((SPOOL_DIR, ".probe"))
        await probe.write(b"cod")
        await probe.commit()
        await folder.remove((SPOOL_DIR, ".probe"))
        return folder
    except Exception:  # noqa: BLE001 - e.g. WebKitGTK under WebDriver: UnknownError
        return None


ZIP_SPOOLS = ("opfs", "service-worker", "memory")


async def _choose_spool(force: str | None = None):
    """Where zips are built, best first: the origin-private folder (a disk
    spool, then a disk-backed `File` to Downloads); else, in the browser, a
    download streamed through the service worker with backpressure; else
    memory (`MEMORY_LIMIT`). `force` (`CodDownload.zip_spool`, the JS option
    `zipSpool`) picks one and fails clearly where it is not available."""
    if force not in (None, "", "auto") and force not in ZIP_SPOOLS:
        raise CodError(f"zip_spool must be one of {', '.join(ZIP_SPOOLS)} (or unset), not {force!r}")
    if force in (None, "", "auto", "opfs"):
        folder = await _disk_spool()
        if folder is not None or force == "opfs":
            if folder is None:
                raise CodError("zip_spool 'opfs': this browser offers no usable origin-private file system")
            return folder
    if force in (None, "", "auto", "service-worker"):
        folder = await _compat.service_worker_downloads()
        if folder is not None or force == "service-worker":
            if folder is None:
                raise CodError("zip_spool 'service-worker': this page cannot use a service worker "
                               "(none in this browser, not a secure context, or the module on another origin)")
            return folder
    return MemoryFolder()


def _planned_bytes(cod: Any) -> int:
    plan = getattr(cod, "last_plan", None)
    if plan is None:
        return 0
    return sum(i.size + 200 for s in plan.series for i in s.missing)


class _Study:
    def __init__(self, study_uid: str) -> None:
        self.uid = study_uid
        self.expected = 0           # series to wait for
        self.done = 0
        self.missing: list[tuple[str, str]] = []     # (series UID, why)
        self.plans: list[SeriesPlan] = []             # its series, for the DICOMDIR and the manifest
        self.lock = asyncio.Lock()
        self.stream: ZipStream | None = None
        self.writer: FileWriter | None = None
        self.out = bytearray()
        self.entries = 0
        self.error: BaseException | None = None
        self.finished = False


class _EntryWriter:
    """One large instance streamed into its study's zip; holds the study lock."""

    def __init__(self, sink: "ZipSink", st: _Study) -> None:
        self._sink, self._st = sink, st
        self._open = True

    async def write(self, data) -> None:
        if not self._open:
            raise ValueError("entry already closed")
        await self._sink._emit(self._st, self._st.stream.write(data))

    async def commit(self) -> None:
        if not self._open:
            return
        try:
            await self._sink._emit(self._st, self._st.stream.finish())
            self._st.entries += 1
        finally:
            self._release()

    async def abort(self) -> None:
        if not self._open:
            return
        try:
            if self._st.error is None:
                await self._sink._emit(self._st, self._st.stream.discard())
        except Exception:  # noqa: BLE001 - the study is marked broken by _emit
            pass
        finally:
            self._release()

    def _release(self) -> None:
        self._open = False
        if self._st.lock.locked():
            self._st.lock.release()


class ZipSink:
    """Sink for `download(uids, zip_output=True)`."""

    def __init__(self, folder: Folder, job_id: str | None = None,
                 downloads_dir: str | os.PathLike | None = None, layout: Layout | None = None,
                 manifest: bool = False) -> None:
        self.folder = folder
        self.layout = layout or parse_layout()
        self.manifest = manifest
        self.job_id = job_id or _new_job_id()
        self.downloads_dir = downloads_dir
        self.studies: dict[str, _Study] = {}
        self.delivered: list[dict[str, Any]] = []
        self.problems: list[tuple[str, str]] = []      # (study UID, message)
        self._handoff: asyncio.Future | None = None

    @classmethod
    async def create(cls, cod: Any = None, layout: Layout | None = None, manifest: bool = False) -> "ZipSink":
        """The sink for a CodDownload: spool in `cod.spool_folder` (default the
        origin-private folder), zips to `cod.downloads_dir` (CPython; default a
        temp directory). Removes stale spool files of earlier jobs."""
        folder = getattr(cod, "spool_folder", None) or await _choose_spool(getattr(cod, "zip_spool", None))
        if isinstance(folder, MemoryFolder):
            need = _planned_bytes(cod)
            if need > MEMORY_LIMIT:
                raise CodError(
                    f"This browser offers no disk-backed storage to build zip files in (no usable "
                    f"origin-private file system), so zips are built in memory, at most "
                    f"{MEMORY_LIMIT / 1e9:.1f} GB per download; these studies need {need / 1e9:.1f} GB. "
                    f"Download fewer studies at a time, or use Chrome, Edge or Firefox.")
        sink = cls(folder, downloads_dir=getattr(cod, "downloads_dir", None), layout=layout, manifest=manifest)
        _LIVE[sink.job_id] = math.inf
        await sink.remove_stale()
        if cod is not None:
            cod.last_zips = sink.delivered
        return sink

    async def remove_stale(self) -> list[str]:
        """Remove spool files of jobs that no longer need them; their names."""
        now = time.monotonic()
        for jid, until in list(_LIVE.items()):
            if until <= now:
                del _LIVE[jid]
        removed = []
        for name in await self.folder.list((SPOOL_DIR,)):
            if _LIVE.get(_job_of(name), 0.0) > now:
                continue
            try:
                await self.folder.remove((SPOOL_DIR, name))
                removed.append(name)
            except Exception:  # noqa: BLE001 - still open elsewhere: next time
                pass
        return removed

    # -- Sink protocol ---------------------------------------------------
    async def prepare(self, plans: list[SeriesPlan]) -> None:
        for sp in plans:
            st = self.studies.setdefault(sp.study_uid, _Study(sp.study_uid))
            st.plans.append(sp)
            if sp.metadata is None:
                st.missing.append((sp.series_uid, f"not downloaded: {sp.error or 'no metadata'}"))
            elif sp.missing:
                st.expected += 1

    async def put_extra(self, parts: tuple[str, ...], data: bytes, study: str) -> None:
        """A file that is not an instance (a dump's metadata or frames) into the study's zip."""
        st = self.studies[study]
        async with st.lock:
            await self._ensure_open(st)
            await self._emit(st, st.stream.add("/".join(parts), data))

    async def put(self, instance: Instance, data: bytes | bytearray) -> None:
        st = self.studies[instance.study_uid]
        async with st.lock:
            await self._ensure_open(st)
            await self._emit(st, st.stream.add(self.entry_name(instance), data))
            st.entries += 1

    async def open(self, instance: Instance) -> FileWriter:
        st = self.studies[instance.study_uid]
        await st.lock.acquire()
        try:
            await self._ensure_open(st)
            await self._emit(st, st.stream.start(self.entry_name(instance), instance.size))
        except BaseException:
            st.lock.release()
            raise
        return _EntryWriter(self, st)

    async def saved(self, instance: Instance) -> None:
        return None

    async def series_done(self, plan: SeriesPlan, ok: bool) -> None:
        st = self.studies.get(plan.study_uid)
        if st is None:
            return
        st.done += 1
        if not ok:
            n = len(plan.missing)
            st.missing.append((plan.series_uid, f"{n} of {len(plan.instances)} instances could not be downloaded"))
        if st.done >= st.expected:
            await self._finish(st)

    async def close(self, ok: bool) -> None:
        for st in self.studies.values():
            if st.finished:
                continue
            if st.done >= st.expected:
                await self._finish(st)
            else:   # cancelled, or a series ended without reporting: no zip
                await self._drop(st)
                self.problems.append((st.uid, f"study {st.uid}: download did not finish, no zip was made"))
        if self._handoff is not None:
            await self._handoff
        _LIVE[self.job_id] = time.monotonic() + KEEP_AFTER_HANDOFF + \
            KEEP_PER_BYTE * sum(d["size"] for d in self.delivered)
        if self.problems:
            studies = {s for s, _ in self.problems}
            raise CodError("; ".join(msg for _, msg in self.problems),
                           study=next(iter(studies)) if len(studies) == 1 else None)

    def describe(self, instance: Instance) -> str:
        return f"{instance.study_uid}.zip:{self.entry_name(instance)}"

    def bytes_needed(self, plans: list[SeriesPlan]) -> int:
        """The spool holds each study's whole zip until it is handed over."""
        usable = [sp for sp in plans if sp.metadata is not None]
        return zip_bytes_needed(((self.entry_name(i), i.size) for sp in usable for i in sp.missing),
                                len({sp.study_uid for sp in usable}))

    async def free_space(self) -> int | None:
        return await free_space(self.folder)

    @property
    def where(self) -> str:
        return f"{space_label(self.folder)}, where the zips are built,"

    # -- inside ----------------------------------------------------------
    def entry_name(self, instance: Instance) -> str:
        """The instance's path in the layout; the classic layout leaves out the
        study folder (the zip is the study's), as the original did."""
        return "/".join(instance.path[self.layout.zip_strip:])

    def spool_parts(self, study_uid: str) -> tuple[str, str]:
        return (SPOOL_DIR, f"{self.job_id}-{study_uid}.zip")

    async def _ensure_open(self, st: _Study) -> None:
        if st.error is not None:
            raise CodError(f"the zip of study {st.uid} could not be written: {st.error}")
        if st.finished:
            raise CodError(f"the zip of study {st.uid} is already closed")
        if st.stream is None:
            if getattr(self.folder, "streams_directly", False):   # the download starts now
                st.writer = await self.folder.create_download(f"{st.uid}.zip")
            else:
                st.writer = await self.folder.create(self.spool_parts(st.uid))
            st.stream = ZipStream()

    async def _emit(self, st: _Study, pieces: list) -> None:
        """Append pieces to the spool; gathers small ones into one write."""
        try:
            for p in pieces:
                n = p.nbytes if isinstance(p, memoryview) else len(p)
                if n >= DIRECT:
                    if st.out:
                        await self._flush(st)
                    await st.writer.write(p)
                else:
                    st.out += p
                    if len(st.out) >= OUT_BATCH:
                        await self._flush(st)
        except Exception as e:
            st.error = e
            raise

    async def _flush(self, st: _Study) -> None:
        data, st.out = st.out, bytearray()
        await st.writer.write(data)

    async def _finish(self, st: _Study) -> None:
        """Close the study's zip and queue its hand-over (never raises)."""
        async with st.lock:
            if st.finished:
                return
            st.finished = True
            try:
                if st.error is not None or st.stream is None or st.entries == 0:
                    await self._drop(st)
                    if st.error is not None:
                        why = f"its zip could not be written: {st.error}"
                    elif st.missing:
                        why = f"none of its {len(st.missing)} series could be downloaded"
                    else:
                        why = "it has no instances"
                    self.problems.append((st.uid, f"study {st.uid}: no zip, {why}"))
                    return
                if st.missing:
                    await self._emit(st, st.stream.add(MISSING_NAME, self._missing_text(st)))
                for name, data in self._sidecars(st):
                    await self._emit(st, st.stream.add(name, data))
                await self._emit(st, st.stream.close())
                await self._flush(st)
                size = st.stream.position
                await st.writer.commit()
                st.writer = None
            except Exception as e:  # noqa: BLE001 - reported from close()
                await self._drop(st)
                self.problems.append((st.uid, f"study {st.uid}: no zip, it could not be written: {e}"))
                return
        info = {"study": st.uid, "name": f"{st.uid}.zip", "size": size, "entries": st.entries,
                "missingSeries": [s for s, _ in st.missing], "path": None}
        if st.missing:
            self.problems.append((st.uid, f"study {st.uid}: the zip lacks {len(st.missing)} series "
                                          f"({', '.join(s for s, _ in st.missing)}); see {MISSING_NAME} in it"))
        self._handoff = asyncio.ensure_future(self._hand_over(st, info, self._handoff))

    def _sidecars(self, st: _Study) -> list[tuple[str, bytes]]:
        """The study's DICOMDIR (media layout) and manifest; one that cannot be
        made is a problem reported at the end, not a reason to lose the zip."""
        try:
            return sidecar_files(st.plans, self.layout, self.manifest,
                                 lambda parts: "/".join(parts[self.layout.zip_strip:]))
        except CodError as e:
            self.problems.append((st.uid, f"study {st.uid}: {e}"))
            return []

    def _missing_text(self, st: _Study) -> bytes:
        lines = [f"This zip of study {st.uid} is incomplete.",
                 f"{len(st.missing)} series could not be downloaded completely:", ""]
        lines += [f"{series}: {why}" for series, why in st.missing]
        return ("\n".join(lines) + "\n").encode()

    async def _hand_over(self, st: _Study, info: dict[str, Any], previous: asyncio.Future | None) -> None:
        if previous is not None:
            await previous
            if HANDOFF_GAP:
                await asyncio.sleep(HANDOFF_GAP)
        parts = self.spool_parts(st.uid)
        try:
            info["path"] = await _compat.deliver_file(self.folder, parts, info["name"], self.downloads_dir)
        except Exception as e:  # noqa: BLE001 - reported from close()
            self.problems.append((st.uid, f"study {st.uid}: the zip could not be handed over: {e}"))
            await self._remove(parts)
            return
        self.delivered.append(info)
        delay = KEEP_AFTER_HANDOFF + KEEP_PER_BYTE * info["size"]
        _LIVE[self.job_id] = max(_LIVE.get(self.job_id, 0.0), time.monotonic() + delay)
        if _compat.IN_PYODIDE:
            t = asyncio.ensure_future(self._remove_later(parts, delay))
            _TIMERS.add(t)
            t.add_done_callback(_TIMERS.discard)
        else:
            await self._remove(parts)   # moved already; nothing is reading it

    async def _remove_later(self, parts: tuple[str, str], delay: float) -> None:
        await asyncio.sleep(delay)
        await self._remove(parts)

    async def _remove(self, parts: tuple[str, str]) -> None:
        try:
            await self.folder.remove(parts)
        except Exception:  # noqa: BLE001 - the next job's clean-up tries again
            pass

    async def _drop(self, st: _Study) -> None:
        st.finished = True
        st.out = bytearray()
        if st.writer is not None:
            w, st.writer = st.writer, None
            try:
                await w.abort()
            except Exception:  # noqa: BLE001
                pass
        await self._remove(self.spool_parts(st.uid))


__all__ = ["ZipSink", "MemoryFolder", "MEMORY_LIMIT", "ZIP_SPOOLS", "SPOOL_DIR", "MISSING_NAME"]
