"""CodDownload: the original library's entry point, runtime-neutral."""

from __future__ import annotations

import mimetypes
from typing import Any, Collection, Mapping

from . import _compat
from .bucket import DEFAULT_API, Bucket, parse_bucket
from .errors import CodError
from .folder import Folder
from .folder_check import FolderReport, verify_folder
from .http import Auth, Client, Opener, RetryPolicy, TokenProvider
from .job import Job
from .journal import LOG_NAME, Journal
from .layout import Layout, parse_layout, too_long
from .archive_source import ArchiveSource, archive_plan, parse_archive
from .dicomweb import DicomwebServer, parse_dicomweb
from .plan import Plan, make_dicomweb_plan, make_plan
from .sinks import FolderSink, Sink, mark_saved_in_folder
from .space import not_enough_space, shortfall


MAX_THUMBNAIL_BYTES = 16 * 1024 * 1024


class CodDownload:
    """Pick a place, name a bucket, look at the stats, download.

    `get_stats` never accumulates: each call plans afresh from the bucket and
    the folder, so calling it twice gives the same figures.
    """

    def __init__(self, api_base: str = DEFAULT_API, concurrency: int = 3, *,
                 token_provider: TokenProvider | None = None, retry: RetryPolicy | None = None,
                 opener: Opener | None = None, log_name: tuple[str, ...] = LOG_NAME,
                 layout: str | None = None, manifest: bool = False, **job_options: Any) -> None:
        self.api_base = api_base
        self.concurrency = concurrency
        self.token_provider = token_provider
        self.retry = retry or RetryPolicy()
        self.opener = opener or _compat.open_url
        self.job_options = job_options
        self.log_name = log_name      # where in the folder log.json lives
        self.layout = parse_layout(layout)     # checked now: a bad template fails at creation
        self.manifest = manifest               # write cod-manifest.csv after each job
        self.folder: Folder | None = None
        self.bucket: Bucket | None = None
        self.source: Bucket | DicomwebServer | ArchiveSource | None = None     # where bytes come from
        self.last_plan: Plan | None = None
        self.client: Client | None = None
        self._journal: Journal | None = None     # the folder's log.json, as the last plan read it

    async def init_directory(self, folder: Any = None, use_private_storage: bool = False) -> Folder:
        """Choose where files go: a folder adapter, a path or handle, or the
        origin-private file system. (The browser picker lives in the JS shim:
        it needs the page's user gesture.)"""
        if folder is None or use_private_storage:
            self.folder = await _compat.private_folder()
        elif hasattr(folder, "create") and hasattr(folder, "write_atomic"):
            self.folder = folder
        else:
            self.folder = _compat.NativeFolder(folder)
        self.last_plan = None
        return self.folder

    def init_bucket(self, details: str | Mapping[str, Any] | Bucket) -> Bucket:
        self.bucket = details if isinstance(details, Bucket) else parse_bucket(details, self.api_base)
        self.source = self.bucket
        self.last_plan = None
        self.client = None            # a token refreshed for another bucket does not carry over
        return self.bucket

    def init_source(self, details: Any) -> Bucket | DicomwebServer | ArchiveSource:
        """Where to download from, as `init_bucket` takes a bucket: an object
        with `dicomweb` (a DICOMweb service root) or `archive` (the URL of a
        zip, tar or tar.gz), each with an optional `token`; or any bucket form."""
        for kind, key, parse in ((DicomwebServer, "dicomweb", parse_dicomweb), (ArchiveSource, "archive", parse_archive)):
            if isinstance(details, kind) or (isinstance(details, Mapping) and details.get(key)):
                self.source = details if isinstance(details, kind) else parse(details)
                self.bucket = self.last_plan = self.client = None
                return self.source
        return self.init_bucket(details)

    def _client(self) -> Client:
        if self.source is None:
            raise CodError("no bucket: call init_bucket() (or init_source()) first")
        auth = Auth(self.source.token, self.token_provider)
        if self.client is not None:
            auth.token = self.client.auth.token or auth.token   # keep a refreshed token
        self.client = Client(self.opener, auth, self.retry)
        return self.client

    async def plan(self, study_uids: list[str], zip_output: bool = False,
                   series: Collection[str] | None = None, layout: str | Layout | None = None) -> Plan:
        """List, read metadata, place, mark what is saved. Writes nothing: files
        found verified but not logged are logged by the download that follows."""
        client = self._client()
        chosen = layout if isinstance(layout, Layout) else parse_layout(layout) if layout else self.layout
        folder, self._journal = self.folder, None
        if not zip_output and folder is not None:
            self._journal = Journal(folder, name=self.log_name)
            await self._journal.load()
            _same_layout(self._journal, chosen, folder)
            self._journal.layout = chosen.name
        journal = self._journal

        async def mark(sp) -> None:
            await mark_saved_in_folder(folder, journal, sp)
        self.last_plan = await self._make_plan(client, list(study_uids), mark if journal is not None else None,
                                               series=series, layout=chosen,
                                               recorded=journal.paths if journal else None)
        if not zip_output and folder is not None and chosen.name != "classic":
            _warn_long_paths(self.last_plan, folder)
        return self.last_plan

    async def _make_plan(self, client: Client, study_uids: list[str], mark, **kw) -> Plan:
        """The plan from the chosen source: a COD bucket's listing and metadata,
        or a DICOMweb server's QIDO-RS answers."""
        if isinstance(self.source, DicomwebServer):
            return await make_dicomweb_plan(client, self.source, study_uids, mark, **kw)
        if isinstance(self.source, ArchiveSource):
            journal = self._journal
            return archive_plan(self.source, study_uids, kw.get("layout"), kw.get("recorded"),
                                journal.keys() if journal is not None else ())
        return await make_plan(client, self.bucket, study_uids, mark, **kw)

    async def verify_folder(self, study_uids: list[str], series: Collection[str] | None = None) -> FolderReport:
        """Check the chosen folder against the bucket's metadata, downloading
        nothing: every instance file is read and its size and CRC32C compared,
        whatever log.json says. Instances found missing or changed are taken
        out of log.json, so the next download fetches them again."""
        if self.folder is None:
            raise CodError("no folder chosen: call init_directory() first")
        if isinstance(self.source, ArchiveSource):
            raise CodError("an archive says what it holds only as it is read: a folder can be verified "
                           "against a COD bucket or a DICOMweb server, not against an archive")
        journal = Journal(self.folder, name=self.log_name)
        await journal.load()        # the folder's layout, and where each file went
        plan = await self._make_plan(self._client(), list(study_uids), None, series=series,
                                     layout=parse_layout(journal.layout), recorded=journal.paths)
        report = await verify_folder(self.folder, plan)
        if report.not_whole:
            for key in report.not_whole:
                journal.discard(key)
            await journal.flush()
        return report

    async def thumbnail(self, study_uid: str, series_uid: str) -> tuple[bytes, str] | None:
        """The series thumbnail (bytes and media type) where the last plan's
        metadata names one, else None. Fetched only when asked: the view shows
        it when its row is on screen and never waits for it."""
        plan = self.last_plan
        sp = next((s for s in plan.series if s.study_uid == study_uid and s.series_uid == series_uid), None) \
            if plan else None
        name = sp.metadata.thumbnail if sp and sp.metadata else None
        if name is None or self.bucket is None:
            return None
        url = self.bucket.object_url(self.bucket.series_folder(study_uid, series_uid) + name)
        # Its own client on the same token: a paused or cancelled job does not hold it up.
        auth = self.client.auth if self.client else Auth(self.bucket.token, self.token_provider)
        client = Client(self.opener, auth, self.retry)
        data = await client.get_bytes(url, f"thumbnail of series {series_uid}", MAX_THUMBNAIL_BYTES)
        return data, mimetypes.guess_type(name)[0] or "application/octet-stream"

    async def get_stats(self, study_uids: list[str], series: Collection[str] | None = None,
                        layout: str | None = None) -> dict[str, Any]:
        return (await self.plan(study_uids, series=series, layout=layout)).stats()

    async def download(self, study_uids: list[str], zip_output: bool = False,
                       sink: Sink | None = None, series: Collection[str] | None = None,
                       layout: str | None = None, manifest: bool | None = None,
                       dump: bool | str | None = None) -> Job:
        """A Job, not started (as in the original): register callbacks, then start().
        `series` narrows it to those series UIDs; None downloads whole studies.
        `layout` and `manifest` override the ones given at creation. `dump`
        (DICOMweb): True writes the server's study and series metadata and a
        log of every request under dump/, "frames" each instance's frames too."""
        plan = await self.plan(study_uids, zip_output, series, layout)
        manifest = self.manifest if manifest is None else bool(manifest)
        if sink is None:
            if zip_output:
                from .zipsink import ZipSink  # noqa: PLC0415 - zip mode only
                sink = await ZipSink.create(self, plan.layout, manifest)
            else:
                if self.folder is None or self._journal is None:
                    raise CodError("no folder chosen: call init_directory() first, or use zip output")
                sink = FolderSink(self.folder, self._journal, plan.layout, manifest)
        await check_space(sink, plan)
        options = {**self.job_options, **({"dump": dump} if dump is not None else {})}
        return Job(plan, self.client, sink, concurrency=self.concurrency, **options)


async def check_space(sink: Sink, plan: Plan) -> None:
    """Refuse, before anything is fetched, a download that cannot fit where it
    goes (a StorageFullError that says how much is needed and how much is free)."""
    needed = sink.bytes_needed(plan.series)
    free = await sink.free_space()
    if shortfall(needed, free) is not None:
        raise not_enough_space(needed, free, sink.where)


def _same_layout(journal: Journal, layout: Layout, folder: Folder) -> None:
    """One layout per folder: files of another layout would be fetched again
    under other names, and log.json could not say where either went."""
    if len(journal) and journal.layout != layout.name:
        raise CodError(f"the folder {getattr(folder, 'name', '')!r} holds a download in the layout "
                       f"{journal.layout!r} (see its log.json); download into it with that layout, "
                       f"or choose another folder for the layout {layout.name!r}")


def _warn_long_paths(plan: Plan, folder: Folder) -> None:
    """Say before the download when paths pass Windows' 260 characters: the
    files land here, but Explorer and many tools cannot open them there."""
    root = getattr(folder, "path_length", None)
    known = root is not None
    count, longest = too_long((i.path for sp in plan.series for i in sp.instances),
                              (root if known else len(getattr(folder, "name", "") or "")) + 1)
    if count:
        plan.warnings.append(
            f"{count} paths are {'' if known else 'at least '}260 characters or longer with the folder's "
            f"own path, past what Windows opens by default (the longest: {longest[:120]}...); "
            f"choose a shorter layout or a folder nearer the drive's root")
