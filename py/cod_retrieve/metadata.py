"""Series metadata.json: decoding, validation, and the instances it promises.

Everything a download plans, checks and names comes from here, so the parser
is strict where a lie could hurt (UIDs, byte ranges, sizes) and lenient where
writers differ (`url` or `uri`, v1 or v2 DICOM JSON, extra keys).
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable

from .crc32c import decode_crc32c
from .errors import MetadataError
from .uids import is_uid

# Real metadata is kilobytes per instance; a series of 20,000 instances stays
# well under this. Anything larger is refused before it can exhaust memory.
MAX_METADATA_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Instance:
    """One DICOM instance of a series, as its metadata describes it."""

    study_uid: str
    series_uid: str
    sop_uid: str
    member: str          # tar member name, e.g. "instances/<sop>.dcm"
    start_byte: int      # data range inside the series tar, end exclusive
    end_byte: int
    crc32c: int
    dicom_json: Any = field(default=None, compare=False, repr=False)
    version: str = ""
    uri: str = field(default="", compare=False, repr=False)   # the metadata's `url` or `uri`, as written
    place: tuple[str, ...] | None = field(default=None, compare=False, repr=False)   # set by a layout
    # Size and CRC32C promised in advance (COD metadata). False: a DICOMweb listing,
    # which names the instance only; it is checked by its own header when it comes.
    known: bool = True

    @property
    def size(self) -> int:
        return self.end_byte - self.start_byte

    @property
    def path(self) -> tuple[str, ...]:
        """Where the instance lands under the chosen folder: the layout's place
        for it, or the original's `<study>/<series>/instances/<sop>.dcm`."""
        return self.place or (self.study_uid, self.series_uid, "instances", f"{self.sop_uid}.dcm")

    @property
    def file_name(self) -> str:
        """The original's `file.name` (js-untar's member name), as a COD writer
        names the member; taken from the UID, never from the tar."""
        return f"instances/{self.sop_uid}.dcm"

    @property
    def log_key(self) -> str:
        return f"{self.study_uid}/{self.series_uid}/{self.sop_uid}"


# What the pre-download view shows of a series and its study (DICOM JSON tags).
DISPLAY_TAGS = (("Modality", "00080060"), ("SeriesDescription", "0008103E"), ("SeriesNumber", "00200011"),
                ("PatientID", "00100020"), ("PatientName", "00100010"), ("StudyDate", "00080020"),
                ("StudyDescription", "00081030"), ("AccessionNumber", "00080050"))


def _display(value: Any) -> str:
    """A DICOM JSON value as text: a person name's alphabetic form with its
    `^` separators as spaces, anything else as it is."""
    if isinstance(value, dict):
        return " ".join(p for p in str(value.get("Alphabetic") or "").split("^") if p.strip())
    return str(value)


@dataclass
class SeriesMetadata:
    study_uid: str
    series_uid: str
    instances: list[Instance]            # ordered by position in the tar
    raw_size: int = 0
    thumbnail: str | None = None         # "thumbnail.jpg" or ".mp4" in the series folder, where the writer made one

    @property
    def size(self) -> int:
        """DICOM bytes (what lands on disk), not tar bytes."""
        return sum(i.size for i in self.instances)

    def by_member(self) -> dict[str, Instance]:
        return {i.member: i for i in self.instances}

    def attributes(self) -> dict[str, str]:
        """A few display attributes from the first instance's DICOM JSON
        (decoded once: the series row and its study's heading both read them)."""
        return dict(self._attributes)

    @cached_property
    def _attributes(self) -> dict[str, str]:
        if not self.instances:
            return {}
        try:
            ds = decode_dicom_json(self.instances[0])
        except MetadataError:
            return {}
        out = {}
        for keyword, tag in DISPLAY_TAGS:
            value = (ds.get(tag) or {}).get("Value") if isinstance(ds, dict) else None
            if value:
                out[keyword] = _display(value[0])
        return out


def decode_body(raw: bytes, name: str, limit: int = MAX_METADATA_BYTES) -> bytes | bytearray:
    """Plain bytes of a metadata body, gunzipping when the server did not.

    GCS sends plain JSON or gzip bytes depending on Accept-Encoding, and some
    mirrors send gzip bytes without saying so: sniff the gzip magic. Inflation
    is bounded so that a gzip bomb is refused, not expanded.
    """
    if len(raw) > limit:
        raise MetadataError(f"{name} is {len(raw)} bytes, more than the {limit} allowed")
    if raw[:2] != b"\x1f\x8b":
        return raw
    d = zlib.decompressobj(wbits=31)
    out = bytearray()
    data = raw
    try:
        # Inflate in bounded steps into one buffer: the peak stays near the limit
        # (one call with max_length builds its result twice over).
        while data and not d.eof:
            out += d.decompress(data, 4 * 1024 * 1024)
            data = d.unconsumed_tail
            if len(out) > limit:
                raise MetadataError(f"{name} inflates past {limit} bytes (a gzip bomb?): refused")
    except zlib.error as e:
        raise MetadataError(f"{name} is gzip data that does not inflate: {e}") from None
    return out   # json.loads takes a bytearray: no second copy


def _int(value: Any, what: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MetadataError(f"{name}: {what} is {value!r}, not a non-negative integer")
    return value


def parse_series_metadata(raw: bytes, study_uid: str, series_uid: str,
                          name: str = "metadata.json") -> SeriesMetadata:
    """Validate a series' metadata against the folder it was found in."""
    body = decode_body(raw, name)
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise MetadataError(f"{name} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise MetadataError(f"{name} is not a JSON object")

    studies = {doc.get("study_uid"), doc.get("deid_study_uid")} - {None}
    series = {doc.get("series_uid"), doc.get("deid_series_uid")} - {None}
    if studies and study_uid not in studies:
        raise MetadataError(f"{name} describes study {sorted(map(str, studies))}, not {study_uid}")
    if series and series_uid not in series:
        raise MetadataError(f"{name} describes series {sorted(map(str, series))}, not {series_uid}")

    cod = doc.get("cod")
    instances = cod.get("instances") if isinstance(cod, dict) else None
    if not isinstance(instances, dict):
        raise MetadataError(f"{name} has no cod.instances object")

    out: list[Instance] = []
    for sop_uid, entry in instances.items():
        if not is_uid(sop_uid):
            raise MetadataError(f"{name}: instance key {sop_uid[:80]!r} is not a valid DICOM UID")
        if not isinstance(entry, dict):
            raise MetadataError(f"{name}: instance {sop_uid} is not an object")
        out.append(_parse_instance(entry, study_uid, series_uid, sop_uid, name))
    out.sort(key=lambda i: i.start_byte)
    _check_ranges(out, name)
    return SeriesMetadata(study_uid, series_uid, out, len(body), _thumbnail_name(doc.get("thumbnail")))


_THUMBNAIL = re.compile(r"thumbnail\.(jpe?g|png|gif|webp|mp4|webm)")


def _thumbnail_name(entry: Any) -> str | None:
    """The series thumbnail's file name, taken from the metadata's `thumbnail.uri`
    only when it is a plain thumbnail name: it is fetched from this series'
    folder in this bucket, never from wherever the URI points."""
    uri = entry.get("uri") if isinstance(entry, dict) else None
    name = uri.rsplit("/", 1)[-1] if isinstance(uri, str) else ""
    return name if _THUMBNAIL.fullmatch(name) else None


def _parse_instance(entry: dict, study_uid: str, series_uid: str, sop_uid: str, name: str) -> Instance:
    where = f"instance {sop_uid}"
    uri = entry.get("url") or entry.get("uri")
    if not isinstance(uri, str) or ".tar://" not in uri:
        raise MetadataError(f"{name}: {where} has no tar uri/url")
    member = uri.split(".tar://", 1)[1]
    headers = entry.get("headers")
    if not isinstance(headers, dict):
        raise MetadataError(f"{name}: {where} has no byte range (headers)")
    start = _int(headers.get("start_byte"), "start_byte", f"{name}: {where}")
    end = _int(headers.get("end_byte"), "end_byte", f"{name}: {where}")
    if end < start:
        raise MetadataError(f"{name}: {where} ends (byte {end}) before it starts (byte {start})")
    size = entry.get("size")
    if size is not None and _int(size, "size", f"{name}: {where}") != end - start:
        raise MetadataError(f"{name}: {where} size {size} disagrees with its byte range {start}..{end}")
    try:
        crc = decode_crc32c(entry.get("crc32c"))
    except ValueError as e:
        raise MetadataError(f"{name}: {where}: {e}") from None
    return Instance(study_uid, series_uid, sop_uid, member, start, end, crc,
                    entry.get("metadata"), str(entry.get("version", "")), uri)


def _check_ranges(instances: Iterable[Instance], name: str) -> None:
    last_end, last = 0, None
    for inst in instances:
        if inst.start_byte < last_end:
            raise MetadataError(f"{name}: instances {last} and {inst.sop_uid} overlap in the tar")
        last_end, last = inst.end_byte, inst.sop_uid


def decode_dicom_json(instance: Instance) -> Any:
    """The instance's DICOM JSON: v1 stores it as is, v2 as base64 of zstd."""
    value = instance.dicom_json
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise MetadataError(f"instance {instance.sop_uid} has no DICOM JSON")
    try:
        packed = base64.b64decode(value)
        return json.loads(_zstd_decompress(packed, 64 * 1024 * 1024))
    except MetadataError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoding failure means the same to a user
        raise MetadataError(f"instance {instance.sop_uid}: DICOM JSON does not decode: {e}") from None


def _zstd_decompress(data: bytes, limit: int) -> bytes:
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14, Pyodide
    except ImportError:
        from backports import zstd  # type: ignore[import-not-found,no-redef]
    d = zstd.ZstdDecompressor()
    out = d.decompress(data, max_length=limit + 1)
    if len(out) > limit:
        raise MetadataError(f"DICOM JSON inflates past {limit} bytes: refused")
    return out
