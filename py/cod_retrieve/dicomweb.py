"""A DICOMweb server as a source: QIDO-RS says what there is, WADO-RS sends it.

Planning lists each study's series and each series' instances with QIDO-RS
(paged with `limit`/`offset`), and gives every instance the DICOM JSON its
study, series and instance answers carry (names, numbers, dates), so the
pre-download view, the layouts and the DICOMDIR work as they do for a COD
bucket. Sizes and checksums are not known in advance: an instance counts when
its own header carries the SOP Instance UID the listing promised (see
`wado.py`, which fetches).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Collection, Mapping
from urllib.parse import quote, urlsplit

from .errors import BucketError, CodError, HttpError, MetadataError
from .http import Client
from .metadata import Instance, SeriesMetadata
from .uids import check_uid, is_uid

PAGE = 1000                        # QIDO-RS results asked for at once
MAX_PAGES = 10_000
MAX_QIDO_BYTES = 64 * 1024 * 1024
# Attributes kept from each level's answer: what the view, the layouts and a DICOMDIR read.
STUDY_TAGS = ("00100010", "00100020", "00100030", "00100040", "00080020", "00080030", "00081030", "00080050",
              "00200010", "00080005", "00080090")
SERIES_TAGS = ("00080060", "0008103E", "00200011", "0020000E", "00180015", "00080021", "00080031")
INSTANCE_TAGS = ("00080016", "00080018", "00200013", "00280008", "00280010", "00280011")


@dataclass(frozen=True)
class DicomwebServer:
    """A DICOMweb service root (`.../dicom-web`), and the token to send it."""

    root: str
    token: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.root)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BucketError(f"DICOMweb root {self.root!r} is not an http(s) URL")

    def studies_url(self, study: str) -> str:
        return f"{self.root}/studies?StudyInstanceUID={quote(check_uid(study, 'study UID'))}"

    def series_url(self, study: str) -> str:
        """QIDO-RS: the study's series."""
        return f"{self.root}/studies/{check_uid(study, 'study UID')}/series"

    def instances_url(self, study: str, series: str) -> str:
        """QIDO-RS: the series' instances."""
        return f"{self.root}/studies/{study}/series/{check_uid(series, 'series UID')}/instances"

    def retrieve_series_url(self, study: str, series: str) -> str:
        """WADO-RS: the whole series as one multipart answer."""
        return f"{self.root}/studies/{study}/series/{series}"

    def retrieve_instance_url(self, study: str, series: str, sop: str) -> str:
        """WADO-RS: one instance."""
        return f"{self.root}/studies/{study}/series/{series}/instances/{sop}"

    def __repr__(self) -> str:      # never show the token
        return f"DicomwebServer({self.root!r})"


def parse_dicomweb(details: str | Mapping[str, Any]) -> DicomwebServer:
    """`"https://host/dicom-web"` or `{dicomweb: url, token}`."""
    if isinstance(details, str):
        url, token = details, None
    elif isinstance(details, Mapping):
        url, token = details.get("dicomweb") or details.get("url"), details.get("token")
    else:
        raise BucketError(f"DICOMweb details must be a URL or an object, not {type(details).__name__}")
    if not isinstance(url, str) or not url.strip():
        raise BucketError("DICOMweb details need the service root URL (dicomweb: 'https://host/dicom-web')")
    return DicomwebServer(url.strip().rstrip("/"), str(token) if token else None)


def next_offset(offset: int, returned: int, new: int, limit: int) -> int | None:
    """Where the next QIDO-RS page starts, or None when the listing is whole.

    A short page does not prove the end (servers cap `limit` below what was
    asked), so paging goes on until a page is empty; a page that adds nothing
    new ends it too (a server that ignores `offset` sends the same page again)."""
    if returned == 0 or new == 0:
        return None
    return offset + returned


async def qido(client: Client, url: str, what: str, key: str) -> list[dict[str, Any]]:
    """Every answer of a QIDO-RS query, following `limit`/`offset` pages;
    answers are told apart by the UID under `key` (a DICOM JSON tag)."""
    out: dict[str, dict[str, Any]] = {}
    offset = 0
    sep = "&" if "?" in url else "?"
    for _ in range(MAX_PAGES):
        raw = await client.get_bytes(f"{url}{sep}limit={PAGE}&offset={offset}", what, MAX_QIDO_BYTES,
                                     accept="application/dicom+json")
        page = _json_list(raw, what)
        new = 0
        for item in page:
            uid = _uid(item, key)
            if uid and uid not in out:
                out[uid] = item
                new += 1
        following = next_offset(offset, len(page), new, PAGE)
        if following is None:
            break
        offset = following
    return list(out.values())


def _json_list(raw: bytes, what: str) -> list[dict[str, Any]]:
    if not raw.strip():
        return []                   # 204 No Content: nothing matches
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise MetadataError(f"{what}: the answer is not JSON: {e}") from None
    if not isinstance(doc, list) or not all(isinstance(x, dict) for x in doc):
        raise MetadataError(f"{what}: the answer is not a list of DICOM JSON objects")
    return doc


def _uid(item: Mapping[str, Any], tag: str) -> str | None:
    values = (item.get(tag) or {}).get("Value") if isinstance(item.get(tag), dict) else None
    value = values[0] if isinstance(values, list) and values else None
    return value if isinstance(value, str) and is_uid(value) else None


def _keep(item: Mapping[str, Any], tags: Collection[str]) -> dict[str, Any]:
    return {t: item[t] for t in tags if isinstance(item.get(t), dict)}


async def list_study(client: Client, server: DicomwebServer, study: str,
                     wanted: Collection[str] | None, warnings: list[str]) -> list[tuple[str, SeriesMetadata]]:
    """The study's series (those `wanted`, or all) with their instances."""
    try:
        found = await qido(client, server.studies_url(study), f"study {study} (QIDO-RS)", "0020000D")
    except HttpError as e:
        if e.status != 404:
            raise
        found = []
    study_json = _keep(found[0], STUDY_TAGS) if found else {}
    series_list = await qido(client, server.series_url(study), f"series of study {study} (QIDO-RS)", "0020000E")
    out = []
    for item in series_list:
        series = _uid(item, "0020000E")
        if series is None:
            warnings.append(f"study {study}: a series without a valid SeriesInstanceUID in the listing: skipped")
            continue
        if wanted is not None and series not in wanted:
            continue
        base = {**study_json, **_keep(item, SERIES_TAGS)}
        listed = await qido(client, server.instances_url(study, series),
                            f"instances of series {series} (QIDO-RS)", "00080018")
        instances = []
        for inst in listed:
            sop = _uid(inst, "00080018")
            if sop is None:
                warnings.append(f"series {series}: an instance without a valid SOPInstanceUID in the listing: skipped")
                continue
            doc = {**base, **_keep(inst, INSTANCE_TAGS),
                   "0020000D": {"vr": "UI", "Value": [study]}, "0020000E": {"vr": "UI", "Value": [series]}}
            instances.append(Instance(study, series, sop, "", 0, 0, 0, doc, "dicomweb",
                                      server.retrieve_instance_url(study, series, sop), known=False))
        instances.sort(key=_instance_number)
        out.append((series, SeriesMetadata(study, series, instances)))
    return out


def _instance_number(inst: Instance) -> tuple[int, str]:
    values = (inst.dicom_json.get("00200013") or {}).get("Value") or []
    try:
        return int(values[0]), inst.sop_uid
    except (ValueError, TypeError, IndexError):
        return 1 << 31, inst.sop_uid


__all__ = ["DicomwebServer", "parse_dicomweb", "qido", "list_study", "next_offset", "CodError"]
