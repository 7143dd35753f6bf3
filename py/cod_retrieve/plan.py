"""What a download will do: the series of each study, their metadata, what is
already saved, and the figures a user sees before pressing Download."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Collection

from .bucket import Bucket
from .errors import CodError, HttpError, MetadataError
from .http import Client
from .layout import Layout, parse_layout, place, series_json
from .metadata import MAX_METADATA_BYTES, Instance, SeriesMetadata, parse_series_metadata
from .uids import check_uid, is_uid

if TYPE_CHECKING:
    from .dicomweb import DicomwebServer

MAX_LISTING_PAGE = 32 * 1024 * 1024


@dataclass
class SeriesPlan:
    study_uid: str
    series_uid: str
    tar_url: str
    metadata: SeriesMetadata | None = None
    error: CodError | None = None
    saved: set[str] = field(default_factory=set)     # SOP UIDs verified in place
    source: str = "cod"                               # how it is fetched: "cod" (a tar) or "dicomweb"

    @property
    def key(self) -> str:
        return f"{self.study_uid}/{self.series_uid}"

    @property
    def instances(self) -> list[Instance]:
        return self.metadata.instances if self.metadata else []

    @property
    def size(self) -> int:
        return self.metadata.size if self.metadata else 0

    @property
    def saved_size(self) -> int:
        return sum(i.size for i in self.instances if i.sop_uid in self.saved)

    @property
    def missing(self) -> list[Instance]:
        return [i for i in self.instances if i.sop_uid not in self.saved]

    @property
    def complete(self) -> bool:
        return self.metadata is not None and not self.missing

    def describe(self) -> dict[str, Any]:
        attrs = self.metadata.attributes() if self.metadata else {}
        return {
            "studyUID": self.study_uid, "seriesUID": self.series_uid, "url": self.tar_url,
            "instances": len(self.instances), "savedInstances": len(self.saved),
            "sizeBytes": self.size, "savedSizeBytes": self.saved_size,
            "status": "failed" if self.error else ("saved" if self.complete else "waiting"),
            "error": str(self.error) if self.error else None,
            "modality": attrs.get("Modality"), "description": attrs.get("SeriesDescription"),
            "seriesNumber": attrs.get("SeriesNumber"),
            "thumbnail": self.metadata.thumbnail if self.metadata else None,
            "sizeKnown": all(i.known for i in self.instances),   # False: a DICOMweb listing gives no sizes
        }


@dataclass
class Plan:
    studies: list[str]
    series: list[SeriesPlan]
    warnings: list[str] = field(default_factory=list)
    errors: list[CodError] = field(default_factory=list)   # whole studies that could not be listed
    layout: Layout = field(default_factory=parse_layout)    # where each instance lands
    archive: Any = None     # an archive source's run: its series are found while it streams

    def study_details(self) -> list[dict[str, Any]]:
        """One entry per study asked for, in order: its UID, the patient and
        study context its metadata carries, and its totals."""
        out = []
        for uid in self.studies:
            series = [s for s in self.series if s.study_uid == uid]
            out.append({"studyUID": uid, **_study_context(series), **_study_totals(series)})
        return out

    def stats(self) -> dict[str, Any]:
        """The original's DownloadStats, plus counts, per-series details and warnings.

        As in the original, `series` and `items` list only what is still to be
        fetched: a display string per series (the tar URL after `studies/`, each
        `/` followed by a space) and the metadata's `url`/`uri` per instance."""
        usable = [s for s in self.series if s.metadata is not None]
        todo = [s for s in usable if not s.complete]
        return {
            "totalSeriesCount": len(usable),
            "totalSavedSeriesCount": sum(1 for s in usable if s.complete),
            "totalSizeBytes": sum(s.size for s in usable),
            "totalSavedSizeBytes": sum(s.saved_size for s in usable),
            "series": [series_display_name(s.study_uid, s.series_uid) for s in todo],
            "items": [i.uri for s in todo for i in s.missing],
            "totalInstanceCount": sum(len(s.instances) for s in usable),
            "totalSavedInstanceCount": sum(len(s.saved) for s in usable),
            "seriesKeys": [s.key for s in usable],
            "seriesDetails": [s.describe() for s in self.series],
            "studyDetails": self.study_details(),
            "warnings": list(self.warnings) + [str(e) for e in self.errors],
        }


# DICOM keyword -> the studyDetails key that shows it.
STUDY_CONTEXT = {"PatientName": "patientName", "PatientID": "patientID", "StudyDate": "studyDate",
                 "StudyDescription": "studyDescription", "AccessionNumber": "accessionNumber"}


def _study_context(series: list["SeriesPlan"]) -> dict[str, str | None]:
    """The study's context, each value from the first series whose metadata carries it."""
    out: dict[str, str | None] = dict.fromkeys(STUDY_CONTEXT.values())
    for sp in series:
        attrs = sp.metadata.attributes() if sp.metadata else {}
        for keyword, key in STUDY_CONTEXT.items():
            if out[key] is None and attrs.get(keyword):
                out[key] = attrs[keyword]
    return out


def _study_totals(series: list["SeriesPlan"]) -> dict[str, int]:
    usable = [s for s in series if s.metadata is not None]
    return {"seriesCount": len(series), "instances": sum(len(s.instances) for s in usable),
            "sizeBytes": sum(s.size for s in usable), "savedSizeBytes": sum(s.saved_size for s in usable)}


def series_display_name(study_uid: str, series_uid: str) -> str:
    """The original's label of a series still to fetch: its tar's object name
    after `studies/`, each `/` followed by a space."""
    return f"{study_uid}/series/{series_uid}.tar".replace("/", "/ ")


SavedCheck = Callable[[SeriesPlan], Awaitable[None]]


async def make_plan(client: Client, bucket: Bucket, study_uids: list[str],
                    mark_saved: SavedCheck | None = None, concurrency: int = 6,
                    series: Collection[str] | None = None, layout: Layout | None = None,
                    recorded: dict[str, tuple[str, ...]] | None = None) -> Plan:
    """List every study, read every series' metadata, place every instance in
    the layout (keeping the paths log.json `recorded`), mark what is saved.

    `series` narrows the plan to those series UIDs (a basket, a manifest);
    None means every series of every study. A selected series found in none
    of the studies is a warning, not an error: the rest still downloads."""
    uids, wanted = _selection(study_uids, series)
    plan = Plan(uids, [], layout=layout or parse_layout())
    sem = asyncio.Semaphore(concurrency)

    async def one_series(study: str, series: str) -> SeriesPlan:
        sp = SeriesPlan(study, series, bucket.tar_url(study, series))
        url = bucket.metadata_url(study, series)
        async with sem:
            try:
                raw = await client.get_bytes(url, f"metadata of series {series} (study {study})", MAX_METADATA_BYTES)
                sp.metadata = parse_series_metadata(raw, study, series, f"metadata.json of series {series} (study {study})")
            except HttpError as e:
                if e.status == 404:
                    sp.error = MetadataError(f"series {series} of study {study} has no metadata.json "
                                             f"(a writer may still be working on it): skipped", study=study, series=series)
                else:
                    sp.error = e
                plan.warnings.append(str(sp.error))
            except CodError as e:
                e.study, e.series = study, series
                sp.error = e
                plan.warnings.append(str(e))
        return sp

    async def one_study(study: str) -> list[SeriesPlan]:
        try:
            series = await list_series(client, bucket, study, plan.warnings)
        except CodError as e:
            e.study = study
            plan.errors.append(e)
            return []
        if not series:
            plan.warnings.append(f"study {study} has no series in this bucket")
        if wanted is not None:
            series = [s for s in series if s in wanted]
        return list(await asyncio.gather(*(one_series(study, s) for s in series)))

    for found in await asyncio.gather(*(one_study(u) for u in uids)):
        plan.series.extend(found)
    await _finish(plan, wanted, recorded, mark_saved, sem)
    return plan


def _selection(study_uids: list[str], series: Collection[str] | None) -> tuple[list[str], set[str] | None]:
    """The studies asked for (each once, checked) and the series wanted (None: all)."""
    uids = list(dict.fromkeys(u.strip() for u in study_uids if u and u.strip()))
    for uid in uids:
        check_uid(uid, "study UID")
    wanted = None if series is None else {check_uid(s.strip(), "series UID") for s in series if s and s.strip()}
    return uids, wanted


async def _finish(plan: Plan, wanted: set[str] | None, recorded: dict[str, tuple[str, ...]] | None,
                  mark_saved: SavedCheck | None, sem: asyncio.Semaphore) -> None:
    """What every source's plan ends with: the selection's leftovers named,
    every instance placed in the layout, what is saved marked."""
    if wanted is not None:
        listed = {sp.series_uid for sp in plan.series}
        plan.warnings.extend(f"series {s} is in none of the studies {', '.join(plan.studies)}: skipped"
                             for s in sorted(wanted - listed))
    place_instances(plan, recorded)
    if mark_saved is not None:
        async def mark(sp: SeriesPlan) -> None:
            async with sem:
                await mark_saved(sp)
        await asyncio.gather(*(mark(sp) for sp in plan.series if sp.metadata is not None))


async def make_dicomweb_plan(client: Client, server: "DicomwebServer", study_uids: list[str],
                             mark_saved: SavedCheck | None = None, concurrency: int = 6,
                             series: Collection[str] | None = None, layout: Layout | None = None,
                             recorded: dict[str, tuple[str, ...]] | None = None) -> Plan:
    """As `make_plan`, from a DICOMweb server's QIDO-RS answers."""
    from .dicomweb import list_study  # noqa: PLC0415 - DICOMweb sources only

    uids, wanted = _selection(study_uids, series)
    plan = Plan(uids, [], layout=layout or parse_layout())
    for uid in uids:
        try:
            found = await list_study(client, server, uid, wanted, plan.warnings)
        except CodError as e:
            e.study = uid
            plan.errors.append(e)
            continue
        if not found and wanted is None:
            plan.warnings.append(f"study {uid} has no series on this DICOMweb server")
        plan.series.extend(SeriesPlan(uid, series_uid, server.retrieve_series_url(uid, series_uid), md,
                                      source="dicomweb") for series_uid, md in found)
    await _finish(plan, wanted, recorded, mark_saved, asyncio.Semaphore(concurrency))
    return plan


def place_instances(plan: Plan, recorded: dict[str, tuple[str, ...]] | None = None) -> None:
    """Give every instance its path in the plan's layout (the classic layout
    needs no placing: its paths are the UIDs)."""
    if plan.layout.name == "classic":
        return
    usable = [sp for sp in plan.series if sp.metadata is not None]
    paths = place(plan.layout, ((sp.instances, series_json(sp.instances)) for sp in usable), recorded)
    for sp in usable:
        sp.metadata.instances = [replace(i, place=paths[i.log_key]) for i in sp.instances]


async def list_series(client: Client, bucket: Bucket, study: str, warnings: list[str],
                      page_size: int | None = None) -> list[str]:
    """Every series folder of a study, following nextPageToken."""
    prefix = bucket.series_folder(study)
    found: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        raw = await client.get_bytes(bucket.list_url(study, token, page_size), f"listing of study {study}", MAX_LISTING_PAGE)
        series, token = parse_listing_page(raw, prefix, warnings)
        found.extend(series)
        pages += 1
        if not token or pages > 10_000:
            return list(dict.fromkeys(found))


def parse_listing_page(raw: bytes, prefix: str, warnings: list[str]) -> tuple[list[str], str | None]:
    """Series UIDs from one GCS listing page (its `prefixes`), and the next page token."""
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise MetadataError(f"listing under {prefix} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise MetadataError(f"listing under {prefix} is not a JSON object")
    out = []
    for p in doc.get("prefixes") or []:
        if not isinstance(p, str) or not p.startswith(prefix) or not p.endswith("/"):
            continue
        uid = p[len(prefix):-1]
        if not is_uid(uid):
            warnings.append(f"series folder {p[:120]!r} is not named by a valid DICOM UID: skipped")
            continue
        out.append(uid)
    token = doc.get("nextPageToken")
    return out, token if isinstance(token, str) and token else None
