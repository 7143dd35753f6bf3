"""Cut a Range response (bytes [start, end) of a series tar) into instances
by the byte ranges the metadata gives, emitting the tar reader's events.

Used to fetch only what is missing: the bytes between instances (tar
headers, instances already saved) are skipped, never interpreted.
"""

from __future__ import annotations

from .metadata import Instance
from .tarstream import Event, MemberData, MemberEnd, MemberStart


class SpanReader:
    def __init__(self, instances: list[Instance], start: int) -> None:
        self._todo = sorted(instances, key=lambda i: i.start_byte)
        self._i = 0
        self.offset = start
        self._open = False

    @property
    def done(self) -> bool:
        return self._i >= len(self._todo)

    def feed(self, data: bytes | memoryview) -> list[Event]:
        events: list[Event] = []
        view = memoryview(data).cast("B")
        lo, hi = self.offset, self.offset + len(view)
        while self._i < len(self._todo):
            inst = self._todo[self._i]
            if inst.start_byte >= hi and inst.size:
                break
            if not self._open:
                if inst.start_byte < lo:
                    raise ValueError(f"span of {inst.sop_uid} starts before the data fed")
                events.append(MemberStart(inst.member, inst.size, "file", inst.start_byte))
                self._open = True
            a, b = max(inst.start_byte, lo), min(inst.end_byte, hi)
            if a < b:
                events.append(MemberData(view[a - lo:b - lo]))
            if inst.end_byte <= hi:
                events.append(MemberEnd(inst.member))
                self._open = False
                self._i += 1
            else:
                break
        self.offset = hi
        return events


def coalesce(missing: list[Instance], gap: int = 64 * 1024) -> list[list[Instance]]:
    """Group instances whose tar ranges are neighbours (only headers or a
    little data between them) so one Range request fetches each group."""
    runs: list[list[Instance]] = []
    for inst in sorted(missing, key=lambda i: i.start_byte):
        if runs and inst.start_byte - runs[-1][-1].end_byte <= gap:
            runs[-1].append(inst)
        else:
            runs.append([inst])
    return runs
