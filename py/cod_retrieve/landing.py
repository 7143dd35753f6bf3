"""Where one instance's checked bytes go, for every source: held whole, they
are written in one piece through the job's write pool (the fastest way into a
folder or zip, and bounded); streamed, the writer already open is finished.
Shared by a COD tar member (`job._Receiver`) and a file known only by its own
header (`headfirst.HeadFirst`)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .metadata import Instance
from .plan import SeriesPlan

if TYPE_CHECKING:
    from .job import Job

Pending = list[tuple[SeriesPlan, Instance, asyncio.Task]]


class Landing:
    job: "Job"
    sp: SeriesPlan | None
    inst: Instance | None
    pending: Pending
    buf: bytearray
    writer: Any

    async def flush_batch(self) -> None:
        """A streamed instance: once a write batch is held, write it into its
        not-yet-visible file (opened by the first batch)."""
        if len(self.buf) >= self.job.write_batch:
            if self.writer is None:
                self.writer = await self.job.sink.open(self.inst)
            await self.writer.write(self.buf)
            self.buf = bytearray()

    async def land(self) -> None:
        """The instance is whole and checked: write it, or finish its file."""
        if self.writer is None:
            data, self.buf = self.buf, bytearray()
            task = await self.job.pool.submit(len(data), self._put(data))
            self.pending.append((self.sp, self.inst, task))
        else:
            if self.buf:
                await self.writer.write(self.buf)
            await self.writer.commit()
            await self.job._saved(self.sp, self.inst)

    async def abort(self) -> None:
        if self.writer is not None:
            await self.writer.abort()
            self.writer = None

    async def _put(self, data: bytearray) -> None:
        await self.job.sink.put(self.inst, data)
        await self.job._saved(self.sp, self.inst, data)


__all__ = ["Landing", "Pending"]
