"""Check a folder against the bucket's metadata without downloading: every
instance file is read and its size and CRC32C compared, whatever log.json says.

Runtime-neutral: it reads through the Folder protocol, so the same check runs
on a local directory and on a browser folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._compat import new_crc32c
from .folder import Folder
from .plan import Plan
from .sinks import header_names, sizes_of


@dataclass
class FolderReport:
    ok: list[str] = field(default_factory=list)          # paths whose bytes match the metadata
    missing: list[str] = field(default_factory=list)
    changed: list[tuple[str, str]] = field(default_factory=list)   # (path, what is wrong)
    extra: list[str] = field(default_factory=list)       # files in a series folder the metadata does not list
    errors: list[str] = field(default_factory=list)      # series or studies that could not be checked
    not_whole: list[str] = field(default_factory=list)   # log keys of the missing and changed instances

    @property
    def clean(self) -> bool:
        return not (self.missing or self.changed or self.errors)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": len(self.ok), "missing": self.missing,
                "changed": [{"path": p, "problem": why} for p, why in self.changed],
                "extra": self.extra, "errors": self.errors, "clean": self.clean}


async def verify_folder(folder: Folder, plan: Plan) -> FolderReport:
    report = FolderReport()
    report.errors.extend(str(e) for e in plan.errors)
    everywhere = {tuple(i.path) for sp in plan.series for i in sp.instances}   # a layout may share folders
    for sp in plan.series:
        if sp.metadata is None:
            report.errors.append(str(sp.error or f"series {sp.series_uid}: no metadata"))
            continue
        sizes = await sizes_of(folder, sp.instances)
        for inst in sp.instances:
            path = "/".join(inst.path)
            size = sizes.get(tuple(inst.path))
            if size is None:
                report.missing.append(path)
                report.not_whole.append(inst.log_key)
            elif not inst.known:             # nothing promised but the instance's own UID
                if await header_names(folder, inst):
                    report.ok.append(path)
                else:
                    report.changed.append((path, f"its header does not name SOP Instance UID {inst.sop_uid}"))
                    report.not_whole.append(inst.log_key)
            elif size != inst.size:
                report.changed.append((path, f"{size} bytes, metadata says {inst.size}"))
                report.not_whole.append(inst.log_key)
            else:
                crc = new_crc32c()
                async for chunk in folder.iter_bytes(inst.path):
                    crc.update(chunk)
                if crc.value != inst.crc32c:
                    report.changed.append((path, f"CRC32C {crc.value:08x}, metadata says {inst.crc32c:08x}"))
                    report.not_whole.append(inst.log_key)
                else:
                    report.ok.append(path)
        report.extra.extend("/".join(p) for p in sorted(set(sizes) - everywhere))
    report.extra = list(dict.fromkeys(report.extra))    # series sharing a folder see the same extras
    return report
