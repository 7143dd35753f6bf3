"""Files a job writes beside the instances, once they are in place: the
DICOMDIR of a `media` layout, and the manifest (what was asked for, where
each instance went, and how each series ended). The folder sink writes them
at the folder's root, the zip sink into each study's zip."""

from __future__ import annotations

from typing import Callable

from .dicomdir import NAME as DICOMDIR_NAME, dicomdir_bytes
from .layout import Layout
from .manifest import MANIFEST_NAME, write_manifest
from .plan import SeriesPlan

PathOf = Callable[[tuple[str, ...]], str]


def sidecar_files(plans: list[SeriesPlan], layout: Layout, manifest: bool,
                  path_of: PathOf = "/".join) -> list[tuple[str, bytes]]:
    """(name, bytes) of each file to write, for the saved instances of `plans`.
    `path_of` turns an instance's path parts into the path the manifest gives
    (inside a zip, the entry name)."""
    out: list[tuple[str, bytes]] = []
    if layout.media:
        saved = [(i, i.path) for sp in plans for i in sp.instances if i.sop_uid in sp.saved]
        if saved:
            out.append((DICOMDIR_NAME, dicomdir_bytes(saved)))
    if manifest:
        out.append((MANIFEST_NAME, write_manifest(plans, path_of)))
    return out


__all__ = ["sidecar_files", "DICOMDIR_NAME", "MANIFEST_NAME"]
