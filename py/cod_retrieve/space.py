"""Space before time: does a download fit where it goes? Decided before a
single byte is fetched, so a user with a 5 GB study and 2 GB free learns it
at once, not at 40 %. Pure: the sinks supply the free space."""

from __future__ import annotations

from typing import Iterable

from .errors import StorageFullError
from .metadata import Instance
from .progress import format_bytes

# log.json lists `<study>/<series>/<sop>` per instance, and is replaced
# atomically (old and new side by side for a moment).
LOG_BYTES_PER_INSTANCE = 2 * 200
# A stored zip entry beyond its bytes: local header (30) and data descriptor
# (24, ZIP64 form), central directory record (46), ZIP64 extras (20 + 28),
# and its name twice.
ZIP_ENTRY_OVERHEAD = 30 + 24 + 46 + 20 + 28
ZIP_END_OVERHEAD = 22 + 56 + 20 + 4096      # end records, and MISSING.txt at most


def folder_bytes_needed(missing: Iterable[Instance]) -> int:
    """Bytes a folder download still writes: the missing instances and log.json."""
    n = total = 0
    for inst in missing:
        n += 1
        total += inst.size
    return total + n * LOG_BYTES_PER_INSTANCE


def zip_bytes_needed(entries: Iterable[tuple[str, int]], studies: int) -> int:
    """An upper bound of the zips' size: every (entry name, size) stored, plus
    the per-entry records and one end per study zip."""
    total = 0
    for name, size in entries:
        total += size + ZIP_ENTRY_OVERHEAD + 2 * len(name.encode("utf-8"))
    return total + studies * ZIP_END_OVERHEAD


def shortfall(needed: int, free: int | None) -> int | None:
    """How many bytes are missing, or None when it fits or nobody can tell
    (a picked folder: the browser says nothing of its disk)."""
    if free is None or needed <= free:
        return None
    return needed - free


def not_enough_space(needed: int, free: int, where: str) -> StorageFullError:
    return StorageFullError(
        f"not enough space: this download needs {format_bytes(needed)} and {where} has "
        f"{format_bytes(max(free, 0))} free; free {format_bytes(needed - free)} or more "
        f"(or download fewer studies or series at a time) and start again. Nothing was downloaded.")


__all__ = ["folder_bytes_needed", "zip_bytes_needed", "shortfall", "not_enough_space"]
