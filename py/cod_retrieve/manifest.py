"""A selection shared as a file: which studies, and optionally which series;
and the manifest a job leaves beside what it saved.

Two forms are read: a CSV with a `StudyInstanceUID` column and optionally a
`SeriesInstanceUID` column (as IDC's and TCIA's exports have; other columns
are ignored), or plain text with one study UID per line (`#` starts a
comment). Our own manifest (`cod-manifest.csv`) is such a CSV. Pure: text
in, a Selection out; plans in, CSV bytes out.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .crc32c import encode_crc32c
from .errors import CodError
from .uids import is_uid

if TYPE_CHECKING:
    from .plan import SeriesPlan


class ManifestError(CodError):
    """A manifest that cannot be read: the message names the file and the line."""


@dataclass(frozen=True)
class Selection:
    studies: list[str]
    series: list[str] | None = None       # None: whole studies


def read_manifest(text: str, source: str = "manifest") -> Selection:
    lines = [ln for ln in text.lstrip("\ufeff").splitlines()]
    first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
    if "studyinstanceuid" in first.replace(" ", "").lower():
        return _read_csv(text.lstrip("\ufeff"), source)
    studies: list[str] = []
    for n, line in enumerate(lines, 1):
        for word in line.split("#", 1)[0].replace(",", " ").split():
            studies.append(_uid(word, source, n, "study UID"))
    if not studies:
        raise ManifestError(f"{source}: no study UIDs in it")
    return Selection(list(dict.fromkeys(studies)))


def _read_csv(text: str, source: str) -> Selection:
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    study_col = columns.get("studyinstanceuid")
    series_col = columns.get("seriesinstanceuid")
    if study_col is None:
        raise ManifestError(f"{source}: no StudyInstanceUID column (columns: {', '.join(columns)})")
    studies: list[str] = []
    series: list[str] = []
    whole: list[int] = []
    for row in reader:
        n = reader.line_num
        study = (row.get(study_col) or "").strip()
        if not study:
            continue
        studies.append(_uid(study, source, n, "StudyInstanceUID"))
        one = (row.get(series_col) or "").strip() if series_col else ""
        if one:
            series.append(_uid(one, source, n, "SeriesInstanceUID"))
        elif series_col:
            whole.append(n)
    if not studies:
        raise ManifestError(f"{source}: no rows with a StudyInstanceUID")
    if series and whole:
        raise ManifestError(f"{source}: line {whole[0]} names a study but no SeriesInstanceUID while other "
                            f"lines name series; give a SeriesInstanceUID on every line or on none")
    return Selection(list(dict.fromkeys(studies)), list(dict.fromkeys(series)) if series else None)


def _uid(value: str, source: str, line: int, what: str) -> str:
    if not is_uid(value):
        raise ManifestError(f"{source}, line {line}: {what} {value[:80]!r} is not a valid DICOM UID")
    return value


MANIFEST_NAME = "cod-manifest.csv"
MANIFEST_COLUMNS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Path", "SizeBytes", "CRC32C",
                    "Status", "SeriesStatus", "SeriesError")


def write_manifest(plans: "list[SeriesPlan]", path_of: "Callable[[tuple[str, ...]], str]" = "/".join) -> bytes:
    """The manifest a job leaves: a CSV row per instance of the selection (its
    path, size, CRC32C as the bucket's metadata gives it, and whether it is
    saved), with its series' status and error; a series without metadata gets
    one row without an instance. `read_manifest` reads it back as a series
    selection, and so does any tool that reads IDC's or TCIA's exports."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(MANIFEST_COLUMNS)
    for sp in plans:
        if sp.metadata is None:
            w.writerow((sp.study_uid, sp.series_uid, "", "", "", "", "", "failed", str(sp.error or "no metadata")))
            continue
        missing = len(sp.missing)
        status = "saved" if not missing else "incomplete"
        error = "" if not missing else f"{missing} of {len(sp.instances)} instances are not saved"
        for inst in sp.instances:
            saved = inst.sop_uid in sp.saved
            w.writerow((sp.study_uid, sp.series_uid, inst.sop_uid, path_of(inst.path), inst.size,
                        encode_crc32c(inst.crc32c), "saved" if saved else "missing", status, error))
    return out.getvalue().encode()
