"""Where each instance lands: the folder layouts and their file names.

A layout is a path template, one component per folder level and one for the
file: `classic` (the original library's `<study>/<series>/instances/<sop>.dcm`),
`descriptive` (names people can read), `media` (a DICOM PS3.10 file set with
8-character IDs, see `dicomdir.py`) or a custom template such as
`%PatientID/%StudyInstanceUID/%Modality_%SeriesInstanceUID`, where `%Keyword`
is any DICOM keyword. Pure: metadata in, relative paths out.

Every component is made safe on Windows, macOS and Linux, and two different
studies, series or instances that would land on the same name get `name (2)`,
`name (3)`, ... in the order of the plan. Paths already recorded in log.json
keep their names, so a resumed or widened download never writes over a file
of another instance.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import CodError
from .metadata import Instance, _display, decode_dicom_json

PATIENT, STUDY, SERIES, INSTANCE = range(4)

# Keywords whose value is the same for a whole patient, study or series. Any
# other keyword is read per instance.
_LEVELS = {
    **dict.fromkeys(("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "IssuerOfPatientID",
                     "OtherPatientIDs"), PATIENT),
    **dict.fromkeys(("StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber",
                     "StudyID", "ReferringPhysicianName"), STUDY),
    **dict.fromkeys(("SeriesInstanceUID", "SeriesNumber", "Modality", "SeriesDescription", "SeriesDate",
                     "SeriesTime", "BodyPartExamined", "ProtocolName", "Manufacturer",
                     "ManufacturerModelName", "StationName", "Laterality", "FrameOfReferenceUID"), SERIES),
}
# Tags of the keywords the built-in layouts use (others are looked up in pydicom's dictionary).
_TAGS = {"PatientID": "00100020", "PatientName": "00100010", "StudyDate": "00080020",
         "StudyDescription": "00081030", "SeriesNumber": "00200011", "Modality": "00080060",
         "SeriesDescription": "0008103E", "InstanceNumber": "00200013", "AccessionNumber": "00080050"}
_UIDS = {"StudyInstanceUID": "study_uid", "SeriesInstanceUID": "series_uid", "SOPInstanceUID": "sop_uid"}

BUILT_IN = {
    "classic": "%StudyInstanceUID/%SeriesInstanceUID/instances/%SOPInstanceUID.dcm",
    "descriptive": "%PatientID %PatientName/%StudyDate %StudyDescription/"
                   "%SeriesNumber %Modality %SeriesDescription/%InstanceNumber.dcm",
}
MEDIA = "media"
MEDIA_PREFIXES = ("PT", "ST", "SE", "IM")
WINDOWS_MAX_PATH = 260
MAX_COMPONENT_BYTES = 255

_FIELD = re.compile(r"%([A-Za-z][A-Za-z0-9]*)|%%")
_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


class LayoutError(CodError, ValueError):
    """A layout name or template that cannot be used: the message says which part."""


@dataclass(frozen=True)
class Field:
    keyword: str
    tag: str           # DICOM JSON key, e.g. "00100020"; "" for the UIDs the metadata names

    @property
    def level(self) -> int:
        return _LEVELS.get(self.keyword, INSTANCE) if self.keyword not in _UIDS else \
            (STUDY, SERIES, INSTANCE)[list(_UIDS).index(self.keyword)]


@dataclass(frozen=True)
class Component:
    pieces: tuple[str | Field, ...]
    level: int          # the deepest level it names: whose it is when two would share a name


@dataclass(frozen=True)
class Layout:
    name: str                           # "classic", "descriptive", "media" or the template
    components: tuple[Component, ...]   # the last one names the file
    zip_strip: int = 0                  # leading components a study zip leaves out (classic: the study)

    @property
    def media(self) -> bool:
        return self.name == MEDIA

    @property
    def needs_instance_json(self) -> bool:
        """Whether names need each instance's DICOM JSON, not only its series'."""
        return any(isinstance(p, Field) and p.tag and p.level == INSTANCE
                   for c in self.components for p in c.pieces)


def parse_layout(spec: str | None = None) -> Layout:
    """`classic` (default), `descriptive`, `media`, or a `%Keyword` template.
    A template whose last component names no instance gets `%SOPInstanceUID.dcm`."""
    spec = (spec or "classic").strip()
    if spec == MEDIA:
        comps = tuple(Component((p,), lvl) for lvl, p in enumerate(MEDIA_PREFIXES))
        return Layout(MEDIA, comps)
    template = BUILT_IN.get(spec, spec)
    if "%" not in template:
        raise LayoutError(f"layout {spec!r} is neither classic, descriptive, media nor a template "
                          f"with %Keyword fields (for example %PatientID/%StudyInstanceUID/%SeriesInstanceUID)")
    parts = [p for p in template.replace("\\", "/").split("/")]
    if any(not p.strip() for p in parts):
        raise LayoutError(f"layout template {spec!r} has an empty folder name (two / in a row, or one at an end)")
    comps = []
    level = PATIENT
    for text in parts:
        pieces = _pieces(text, spec)
        level = max([level, *(p.level for p in pieces if isinstance(p, Field))])
        comps.append(Component(pieces, level))
    if comps[-1].level < INSTANCE:
        comps.append(Component((Field("SOPInstanceUID", ""), ".dcm"), INSTANCE))
    if len(comps) > 16:
        raise LayoutError(f"layout template {spec!r} has {len(comps)} levels; at most 16")
    return Layout(spec, tuple(comps), zip_strip=1 if spec == "classic" else 0)


def _pieces(text: str, spec: str) -> tuple[str | Field, ...]:
    out: list[str | Field] = []
    pos = 0
    for m in _FIELD.finditer(text):
        if m.start() > pos:
            out.append(text[pos:m.start()])
        out.append("%" if m.group(0) == "%%" else _field(m.group(1), spec))
        pos = m.end()
    if pos < len(text):
        out.append(text[pos:])
    if any(isinstance(p, str) and "%" in p for p in out if p != "%"):
        raise LayoutError(f"layout template {spec!r}: a % must start a DICOM keyword (or be written %%)")
    return tuple(out)


def _field(keyword: str, spec: str) -> Field:
    if keyword in _UIDS:
        return Field(keyword, "")
    tag = _TAGS.get(keyword)
    if tag is None:
        from pydicom.datadict import tag_for_keyword  # lazy: only custom templates need the dictionary
        number = tag_for_keyword(keyword)
        if number is None:
            raise LayoutError(f"layout template {spec!r}: %{keyword} is not a DICOM keyword")
        tag = f"{number:08X}"
    return Field(keyword, tag)


# -- names ----------------------------------------------------------------

def safe_name(text: str, fallback: str = "_") -> str:
    """One path component that every common file system takes: no forbidden or
    control characters, no trailing dot or space, no reserved device name, not
    hidden (no leading dot), at most 255 UTF-8 bytes (the extension kept), NFC
    (as macOS stores names)."""
    name = unicodedata.normalize("NFC", text)
    name = " ".join(name.split())             # tabs, new lines and runs of spaces: one space
    name = _FORBIDDEN.sub("_", name)
    name = name.rstrip(". ")
    if not name or set(name) <= {"."}:
        name = fallback
    elif name.startswith("."):                # not a hidden file (an empty %Field before .dcm)
        name = "_" + name
    if name.split(".", 1)[0].upper().rstrip() in _RESERVED:
        name = "_" + name
    return _limit(name)


def _limit(name: str, limit: int = MAX_COMPONENT_BYTES) -> str:
    if len(name.encode()) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        stem, ext = name, ""
    tail = f".{ext}" if ext else ""
    room = limit - len(tail.encode())
    cut = stem.encode()[:room].decode(errors="ignore").rstrip(". ")
    return (cut or "_") + tail


def with_number(name: str, n: int, is_file: bool) -> str:
    """The n-th name for a component whose plain name is taken: `x (2).dcm`."""
    stem, dot, ext = name.rpartition(".") if is_file else ("", "", "")
    if not dot or not stem:
        stem, ext = name, ""
    tail = f".{ext}" if ext else ""
    suffix = f" ({n}){tail}"
    return _limit(stem, MAX_COMPONENT_BYTES - len(suffix.encode())) + suffix


def _value(element: Any) -> str:
    """A DICOM JSON element as text: values joined by spaces, a person name's
    `^` separators as spaces, a whole number without `.0`."""
    values = element.get("Value") if isinstance(element, dict) else None
    out = []
    for v in values or []:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        out.append(_display(v))
    return " ".join(s for s in out if s)


# -- placement ------------------------------------------------------------

@dataclass(frozen=True)
class Placed:
    instance: Instance
    parts: tuple[str, ...]
    identity: tuple[Any, ...]    # per component: whose name it is (None: shared by anyone with that name)


class Placement:
    """Names handed out so far, per folder, case-insensitively (as Windows and
    macOS compare them). Deterministic: the same claims in the same order give
    the same names."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._owner: dict[tuple[str, ...], Any] = {}
        self._next: dict[tuple[tuple[str, ...], str], int] = {}     # where the next search starts
        self._named: dict[tuple[tuple[str, ...], Any], str] = {}     # what an identity got, per folder

    def record(self, parts: tuple[str, ...], identity: tuple[Any, ...]) -> None:
        """A path log.json already names: keep it, whoever would claim it next."""
        prefix: tuple[str, ...] = ()
        for name, ident in zip(parts, identity):
            if self._owner.setdefault((*prefix, name.casefold()), ident) == ident and ident is not None:
                self._named.setdefault((prefix, ident), name)
            prefix = (*prefix, name.casefold())

    def claim(self, names: tuple[str, ...], identity: tuple[Any, ...]) -> tuple[str, ...]:
        out: list[str] = []
        prefix: tuple[str, ...] = ()
        last = len(names) - 1
        for k, (base, ident) in enumerate(zip(names, identity)):
            known = self._named.get((prefix, ident)) if ident is not None else None
            if known is not None:
                out.append(known)
                prefix = (*prefix, known.casefold())
                continue
            n = 1
            hint = (prefix, base.casefold())
            if ident is not None and hint in self._next:
                n = self._next[hint]
            name = self._nth(base, n, k, k == last)
            while True:
                key = (*prefix, name.casefold())
                owner = self._owner.get(key, _FREE)
                if owner is _FREE:
                    self._owner[key] = ident
                    break
                if owner == ident:
                    break
                n += 1
                name = self._nth(base, n, k, k == last)
            if ident is not None:
                self._next[hint] = n
                self._named[(prefix, ident)] = name
            out.append(name)
            prefix = (*prefix, name.casefold())
        return tuple(out)

    def _nth(self, base: str, n: int, level: int, is_file: bool) -> str:
        if self.layout.media:        # PT000000, PT000001, ...: the n-th patient, study, series, image
            return f"{base}{n - 1:06d}"
        return base if n == 1 else with_number(base, n, is_file)


_FREE = object()


def place(layout: Layout, series: Iterable[tuple[list[Instance], Mapping[str, Any]]],
          recorded: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, tuple[str, ...]]:
    """Path parts per instance log key, for every instance of every series
    (`(instances, first instance's DICOM JSON)` in plan order). `recorded`:
    paths log.json already holds, kept as they are."""
    series = list(series)
    placement = Placement(layout)
    patients = {}
    for instances, first in series:
        if instances:
            patients.setdefault(instances[0].study_uid, _value(first.get("00100020")) or instances[0].study_uid)
    recorded = dict(recorded or {})
    for key, parts in recorded.items():
        study, series_uid, sop = (key.split("/") + ["", "", ""])[:3]
        patient = patients.get(study, ("recorded", study))
        ids = _identities(layout, patient, study, series_uid, sop)
        placement.record(tuple(parts), ids[:len(parts)])
    out: dict[str, tuple[str, ...]] = {}
    for instances, first in series:
        for inst in instances:
            if inst.log_key in recorded:
                out[inst.log_key] = tuple(recorded[inst.log_key])
                continue
            ds = first
            if layout.needs_instance_json and inst is not instances[0]:
                ds = _instance_json(inst)
            out[inst.log_key] = claim_instance(placement, inst, ds, first, patients.get(inst.study_uid))
    return out


def claim_instance(placement: Placement, inst: Instance, ds: Mapping[str, Any], first: Mapping[str, Any],
                   patient: Any = None) -> tuple[str, ...]:
    """One instance's path, claimed now: for sources that find their instances
    one by one (an archive), where `first` is the DICOM JSON of the first
    instance seen of its series and `patient` says whose files these are."""
    layout = placement.layout
    names = tuple(_render(c, inst, ds, first, layout) for c in layout.components)
    return placement.claim(names, _identities(layout, patient, inst.study_uid, inst.series_uid, inst.sop_uid))


def record_paths(placement: Placement, recorded: Mapping[str, tuple[str, ...]]) -> None:
    """Paths log.json holds, kept by every claim that follows."""
    for key, parts in recorded.items():
        study, series_uid, sop = (key.split("/") + ["", "", ""])[:3]
        placement.record(tuple(parts), _identities(placement.layout, ("recorded", study), study,
                                                   series_uid, sop)[:len(parts)])


def _instance_json(inst: Instance) -> Mapping[str, Any]:
    try:
        ds = decode_dicom_json(inst)
    except CodError:
        return {}
    return ds if isinstance(ds, dict) else {}


def _identities(layout: Layout, patient: Any, study: str, series: str, sop: str) -> tuple[Any, ...]:
    by_level = {PATIENT: ("patient", patient) if layout.media else None,
                STUDY: ("study", study), SERIES: ("series", series), INSTANCE: ("instance", sop)}
    return tuple(by_level[c.level] for c in layout.components)


def _render(comp: Component, inst: Instance, ds: Mapping[str, Any], first: Mapping[str, Any],
            layout: Layout) -> str:
    if layout.media:
        return str(comp.pieces[0])
    text = []
    for p in comp.pieces:
        if isinstance(p, str):
            text.append(p)
        elif not p.tag:
            text.append(getattr(inst, _UIDS[p.keyword]))
        else:
            source = ds if p.level == INSTANCE else first
            text.append(_value(source.get(p.tag)))
    return safe_name("".join(text))


def series_json(instances: list[Instance]) -> Mapping[str, Any]:
    """The DICOM JSON that names a series' folders: its first instance's."""
    return _instance_json(instances[0]) if instances else {}


def too_long(paths: Iterable[tuple[str, ...]], root_length: int, limit: int = WINDOWS_MAX_PATH) -> tuple[int, str]:
    """How many paths pass Windows' 260-character limit under a root of
    `root_length` characters, and the longest path."""
    count, longest = 0, ""
    for parts in paths:
        path = "/".join(parts)
        if root_length + len(path) >= limit:
            count += 1
        if len(path) > len(longest):
            longest = path
    return count, longest


__all__ = ["Layout", "LayoutError", "parse_layout", "place", "Placement", "claim_instance", "record_paths", "safe_name", "with_number", "too_long",
           "series_json", "WINDOWS_MAX_PATH", "MEDIA"]
