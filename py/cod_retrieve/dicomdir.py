"""The DICOMDIR of a `media` layout (a DICOM PS3.10 file set), built by pydicom.

pydicom's `FileSet` makes the directory records from each instance's
attributes; here they come from the series metadata (the DICOM JSON the COD
writer stored, file meta included), so the DICOMDIR is written without
reading back a byte of the instance files. `FileSet.write()` also writes the
instances under its own IDs; those copies are metadata-only stubs in a
temporary folder, and only the DICOMDIR is kept, its records pointed at the
IDs the layout gave (`PT000000/ST000000/SE000000/IM000000`, the same shape as
pydicom's, so every record keeps its length and every offset stays right).
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any, Iterable

from .errors import CodError
from .metadata import Instance, decode_dicom_json

NAME = "DICOMDIR"
# Value representations that hold bulk data: never needed for a directory record.
_BULK_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
# Type 1 record keys pydicom insists on, with what a record says when the instance lacks one.
_REQUIRED = {"00200010": ("SH", "1"), "00080020": ("DA", "19000101"), "00080030": ("TM", "000000"),
             "00200011": ("IS", 0), "00200013": ("IS", 0), "00080060": ("CS", "OT")}


def _record_json(inst: Instance) -> dict[str, Any]:
    """The instance's DICOM JSON without bulk data, private tags or pixel data,
    with placeholders for record keys it lacks (a directory record needs them)."""
    ds = decode_dicom_json(inst)
    if not isinstance(ds, dict):
        raise CodError(f"instance {inst.sop_uid}: no DICOM JSON for its DICOMDIR record")
    out = {}
    for tag, element in ds.items():
        if not isinstance(element, dict) or len(tag) != 8 or int(tag[3], 16) % 2:
            continue
        if element.get("vr") in _BULK_VRS or "BulkDataURI" in element or tag.upper() == "7FE00010":
            continue
        values = element.get("Value")
        if isinstance(values, list) and any(isinstance(v, dict) and "uri" in v for v in values):
            continue
        out[tag.upper()] = element
    for tag, (vr, value) in _REQUIRED.items():
        if not (out.get(tag) or {}).get("Value"):
            out[tag] = {"vr": vr, "Value": [value]}
    out["00080018"] = {"vr": "UI", "Value": [inst.sop_uid]}
    out["0020000D"] = {"vr": "UI", "Value": [inst.study_uid]}
    out["0020000E"] = {"vr": "UI", "Value": [inst.series_uid]}
    return out


def dicomdir_bytes(entries: Iterable[tuple[Instance, tuple[str, ...]]]) -> bytes:
    """A DICOMDIR listing each `(instance, path parts)`; raises CodError naming
    the instance pydicom cannot make a record for."""
    from pydicom import Dataset, dcmread  # lazy: only media layouts pay for pydicom's import
    from pydicom.dataset import FileMetaDataset
    from pydicom.fileset import FileSet

    paths: dict[str, tuple[str, ...]] = {}
    fs = FileSet()
    for inst, parts in entries:
        try:
            doc = _record_json(inst)
            meta = {t: e for t, e in doc.items() if t.startswith("0002")}
            ds = Dataset.from_json({t: e for t, e in doc.items() if not t.startswith("0002")})
            ds.file_meta = FileMetaDataset(Dataset.from_json(meta))
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = inst.sop_uid
            if "TransferSyntaxUID" not in ds.file_meta:
                ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
            fs.add(ds)
        except CodError:
            raise
        except Exception as e:  # noqa: BLE001 - pydicom's reasons are many; the user needs which instance
            raise CodError(f"instance {inst.sop_uid} cannot be listed in a DICOMDIR: {e}",
                           study=inst.study_uid, series=inst.series_uid) from None
        paths[inst.sop_uid] = tuple(parts)
    with tempfile.TemporaryDirectory(prefix="cod-dicomdir-") as tmp:
        fs.write(tmp)
        with open(os.path.join(tmp, NAME), "rb") as f:
            dicomdir = dcmread(f)
    for record in dicomdir.DirectoryRecordSequence:
        sop = record.get("ReferencedSOPInstanceUIDInFile")
        if sop is None:
            continue
        ours = list(paths[str(sop)])
        theirs = record.ReferencedFileID
        theirs = [theirs] if isinstance(theirs, str) else list(theirs)
        if [len(p) for p in theirs] != [len(p) for p in ours]:
            raise CodError(f"instance {sop} needs a DICOMDIR record of another shape "
                           f"({'/'.join(theirs)}) than the media layout's path {'/'.join(ours)}")
        record.ReferencedFileID = ours
    out = io.BytesIO()
    dicomdir.save_as(out, enforce_file_format=True)
    return out.getvalue()


__all__ = ["dicomdir_bytes", "NAME"]
