"""Where verified instances go: a folder (with log.json), or study zips."""

from __future__ import annotations

from typing import Protocol

from .folder import FileWriter, Folder, free_space, space_label
from .journal import Journal
from .layout import Layout, parse_layout
from .metadata import Instance
from .plan import SeriesPlan
from ._compat import new_crc32c
from .sidecars import sidecar_files
from .space import folder_bytes_needed
from .errors import IntegrityError
from .verify import HEAD_BYTES, dicom_sop_uid


class Sink(Protocol):
    async def prepare(self, plans: list[SeriesPlan]) -> None: ...
    async def put(self, instance: Instance, data: bytes | bytearray) -> None: ...
    async def put_extra(self, parts: tuple[str, ...], data: bytes, study: str) -> None: ...
    async def open(self, instance: Instance) -> FileWriter: ...
    async def saved(self, instance: Instance) -> None: ...
    async def series_done(self, plan: SeriesPlan, ok: bool) -> None: ...
    async def close(self, ok: bool) -> None: ...
    def describe(self, instance: Instance) -> str: ...
    def bytes_needed(self, plans: list[SeriesPlan]) -> int: ...
    async def free_space(self) -> int | None: ...
    where: str       # how a shortfall names the place ("the folder ...")


class FolderSink:
    """Each instance at its layout's path (classic: `<root>/<study>/<series>/
    instances/<sop>.dcm`) plus `<root>/log.json`; at the end the DICOMDIR of
    a media layout and, when asked, the manifest."""

    def __init__(self, folder: Folder, journal: Journal, layout: Layout | None = None,
                 manifest: bool = False) -> None:
        self.folder = folder
        self.journal = journal
        self.layout = layout or parse_layout()
        self.manifest = manifest
        self.plans: list[SeriesPlan] = []

    async def prepare(self, plans: list[SeriesPlan]) -> None:
        """Remove what a killed writer left: hidden `.part` files in the
        folders of series still to fetch (a process killed mid-write)."""
        self.plans.extend(p for p in plans if p not in self.plans)   # an archive adds series as it finds them
        await self._remove_leftovers(sp for sp in plans if sp.metadata is not None and not sp.complete)

    async def put(self, instance: Instance, data: bytes | bytearray) -> None:
        await self.folder.write_atomic(instance.path, data)

    async def put_extra(self, parts: tuple[str, ...], data: bytes, study: str) -> None:
        """A file that is not an instance (a dump's metadata, frames, request log), written whole."""
        await self.folder.write_atomic(parts, data)

    async def open(self, instance: Instance) -> FileWriter:
        return await self.folder.create(instance.path)

    async def saved(self, instance: Instance) -> None:
        self.journal.add(instance.log_key, instance.place)
        await self.journal.flush_if_due()

    async def series_done(self, plan: SeriesPlan, ok: bool) -> None:
        await self.journal.flush()

    async def close(self, ok: bool) -> None:
        await self.journal.flush()
        if not ok:          # stopped early: no writer of this job is left, so no .part is anyone's
            await self._remove_leftovers(sp for sp in self.plans if sp.metadata is not None and not sp.complete)
        for name, data in sidecar_files(self.plans, self.layout, self.manifest):
            await self.folder.write_atomic((name,), data)

    async def _remove_leftovers(self, plans) -> None:
        for where in folders_of(i for sp in plans for i in sp.missing):
            for name in await self.folder.list(where):
                if is_leftover(name):
                    await self.folder.remove((*where, name))

    def describe(self, instance: Instance) -> str:
        return "/".join(instance.path)

    def bytes_needed(self, plans: list[SeriesPlan]) -> int:
        return folder_bytes_needed(i for sp in plans if sp.metadata is not None for i in sp.missing)

    async def free_space(self) -> int | None:
        return await free_space(self.folder)

    @property
    def where(self) -> str:
        return space_label(self.folder)


def is_leftover(name: str) -> bool:
    """A file being written (`.<name>.<random>.part`), left by a process that died."""
    return name.startswith(".") and name.endswith(".part")


async def header_names(folder: Folder, inst: Instance) -> bool:
    """Does the file at the instance's path carry its SOP Instance UID in its header?"""
    head = bytearray()
    try:
        async for chunk in folder.iter_bytes(inst.path):
            head += chunk
            if len(head) >= HEAD_BYTES:
                break
        return dicom_sop_uid(bytes(head[:HEAD_BYTES]), inst.sop_uid) == inst.sop_uid
    except (IntegrityError, OSError):
        return False


def folders_of(instances) -> list[tuple[str, ...]]:
    """The folders instances land in, each once, in order."""
    return list(dict.fromkeys(i.path[:-1] for i in instances))


async def sizes_of(folder: Folder, instances) -> dict[tuple[str, ...], int]:
    """path parts -> size of every file in the folders of `instances`, one
    listing per folder."""
    out: dict[tuple[str, ...], int] = {}
    for where in folders_of(instances):
        out.update({(*where, name): size for name, size in (await folder.sizes(where)).items()})
    return out


async def mark_saved_in_folder(folder: Folder, journal: Journal, plan: SeriesPlan) -> None:
    """Mark instances already in place. A logged file counts when its size is
    right (a file truncated by another tool does not); a file present but not
    logged (saved just before a crash) counts when its size and CRC32C are."""
    if plan.metadata is None:
        return
    sizes = await sizes_of(folder, plan.instances)
    for inst in plan.instances:
        if not inst.known:                  # a DICOMweb listing promises no size: the file's own header
            if sizes.get(tuple(inst.path)) and (inst.log_key in journal or await header_names(folder, inst)):
                plan.saved.add(inst.sop_uid)
                journal.add(inst.log_key, inst.place)
            continue
        if sizes.get(tuple(inst.path)) != inst.size:
            continue
        if inst.log_key in journal:
            plan.saved.add(inst.sop_uid)
            continue
        crc = new_crc32c()
        async for chunk in folder.iter_bytes(inst.path):
            crc.update(chunk)
        if crc.value == inst.crc32c:
            plan.saved.add(inst.sop_uid)
            journal.add(inst.log_key, inst.place)   # written by the job that follows, never by planning


__all__ = ["Sink", "FolderSink", "mark_saved_in_folder", "folders_of", "sizes_of", "header_names"]
