"""Expected and actual folder contents for the CPython download tests."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path


def bucket_files(server, study) -> dict[str, str]:
    """path -> sha256 of every instance, read straight from the bucket's tars."""
    out = {}
    for series in study.series:
        base = f"{study.datastore}/studies/{study.study_uid}/series/{series}"
        raw, _ = server.download(study.bucket, base + "/metadata.json", accept_gzip=False)
        meta = json.loads(raw)
        tar, _ = server.download(study.bucket, base + ".tar")
        with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
            for sop, entry in meta["cod"]["instances"].items():
                data = tf.extractfile(entry["uri"].split(".tar://", 1)[1]).read()
                out[f"{study.study_uid}/{series}/instances/{sop}.dcm"] = hashlib.sha256(data).hexdigest()
    return out


def folder_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and p.name != "log.json"}


def tars_by_size(server, study) -> list[tuple[str, int]]:
    """(file name, size) of every series tar, biggest first (ties by name)."""
    items, _ = server.list_objects(study.bucket, study.study_prefix)
    tars = [(o["name"].rsplit("/", 1)[1], int(o["size"])) for o in items if o["name"].endswith(".tar")]
    return sorted(tars, key=lambda t: (-t[1], t[0]))


def largest_tar(server, study) -> str:
    """The biggest series tar's name: a fault placed at byte N must find N bytes."""
    return tars_by_size(server, study)[0][0]
