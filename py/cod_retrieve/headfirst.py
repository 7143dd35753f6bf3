"""A file known only by its own header: a part of a DICOMweb answer, an entry of
an archive. Unlike a tar member of a COD series, nothing names its instance in
advance, so its first bytes are held until `identify()` names it from the DICOM
header; then it is buffered whole (small: written in one piece through the
job's write pool) or streamed into a not-yet-visible file, and the size its
container announced (a part's Content-Length, an entry's size) is checked at
the end. Subclasses say how a head names its instance.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .errors import Cancelled, IntegrityError, StorageFullError
from .landing import Landing, Pending
from .metadata import Instance
from .plan import SeriesPlan

if TYPE_CHECKING:
    from .job import Job


class HeadFirst(Landing):
    def __init__(self, job: "Job", expected: int | None, pending: Pending) -> None:
        self.job, self.expected, self.pending = job, expected, pending
        self.sp: SeriesPlan | None = None
        self.inst: Instance | None = None
        self.skip = False             # not written: not an instance of ours, or saved already
        self.got = 0
        self.head = bytearray()
        self.buf = bytearray()
        self.writer = None

    async def identify(self, final: bool) -> bool:
        """Set `sp` and `inst` from `head` and say True; False while more of the
        head is needed (never when `final`), or with `skip` set."""
        raise NotImplementedError

    def mismatch(self) -> str:
        """What to say when the size announced is not the size received."""
        raise NotImplementedError

    async def data(self, chunk: memoryview) -> None:
        if self.skip:
            return
        self.got += len(chunk)
        if self.inst is None:
            self.head += chunk
            if not await self.identify(final=False):
                return
            self.buf, self.head = self.head, bytearray()
            self.job._count(self.inst, len(self.buf))
        else:
            self.job._count(self.inst, len(chunk))
            self.buf += chunk
        if self.expected is None or self.expected > self.job.small_file:     # streamed
            await self.flush_batch()

    async def end(self) -> None:
        if self.skip:
            return
        if self.inst is None:
            if not await self.identify(final=True):
                return
            self.buf, self.head = self.head, bytearray()
            self.job._count(self.inst, len(self.buf))
        if self.expected is not None and self.got != self.expected:
            await self.abort()
            raise IntegrityError(self.mismatch(), study=self.inst.study_uid, series=self.inst.series_uid)
        await self.land()


async def settle(job: "Job", pending: Pending) -> None:
    """Wait for the writes in the pool: a full disk or a cancel goes on up; any
    other failed write is reported for its instance, which is not saved."""
    for sp, inst, task in pending:
        try:
            await task
        except (asyncio.CancelledError, Cancelled, StorageFullError):
            raise
        except Exception as e:  # noqa: BLE001 - the instance is asked for again, or reported
            job._uncount(inst)
            job._error(e, sp, inst)
    pending.clear()


__all__ = ["HeadFirst", "settle"]
