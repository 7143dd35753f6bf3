"""What a person watching a job wants to read: bytes, percent, rate, time
left and one row per series, computed from the job's events.

Pure: fed events and a clock, it does no I/O, so every front end (the command
line today) draws the same figures, and tests drive it with scripted events.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class SeriesRow:
    key: str
    study: str
    series: str
    status: str = "waiting"       # waiting, downloading, saved, failed, cancelled
    instances: int = 0
    saved_instances: int = 0
    size: int = 0
    error: str | None = None


@dataclass
class Snapshot:
    bytes_done: int
    bytes_total: int
    rate: float | None             # bytes/s over the recent window; None before two samples
    seconds_left: float | None
    rows: list[SeriesRow] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return min(1.0, self.bytes_done / self.bytes_total) if self.bytes_total else 1.0


class JobView:
    """Job events in, a Snapshot out. The rate is measured over the last
    `window` seconds, so a stall shows at once and a burst does not last."""

    def __init__(self, bytes_total: int = 0, window: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bytes_total = bytes_total
        self.bytes_done = 0
        self.rows: dict[str, SeriesRow] = {}
        self._window = window
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._sample()

    def _sample(self) -> None:
        now = self._clock()
        self._samples.append((now, self.bytes_done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.popleft()

    def apply(self, event: str, payload: dict[str, Any]) -> SeriesRow | None:
        """Take one job event; returns the series row it changed, if any."""
        if event == "progress":
            self.bytes_done = payload.get("jobBytesDone", self.bytes_done)
            self.bytes_total = payload.get("jobBytesTotal", self.bytes_total) or self.bytes_total
            self._sample()
            return None
        if event == "series":
            key = payload["key"]
            row = self.rows.get(key) or SeriesRow(key, payload["study"], payload["series"])
            row.status = payload["status"]
            row.instances = payload.get("instances", row.instances)
            row.saved_instances = payload.get("savedInstances", row.saved_instances)
            row.size = payload.get("size", row.size)
            row.error = payload.get("error")
            self.rows[key] = row
            return row
        if event == "complete":
            self.bytes_done = payload.get("bytesDone", self.bytes_done)
            self._sample()
        return None

    def snapshot(self) -> Snapshot:
        rate = None
        if len(self._samples) >= 2:
            (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
            if t1 > t0:
                rate = (b1 - b0) / (t1 - t0)
        left = None
        if rate and rate > 0:
            left = max(0.0, self.bytes_total - self.bytes_done) / rate
        return Snapshot(self.bytes_done, self.bytes_total, rate, left, list(self.rows.values()))


def format_bytes(n: float | None) -> str:
    """Decimal units, as the page shows them (1.5 MB, 320 KB)."""
    if n is None:
        return ""
    units = ["B", "KB", "MB", "GB", "TB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.1f} {units[i]}" if i else f"{int(n)} B"


def format_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    if s < 10:
        return f"{max(0.0, s):.1f} s"
    s = round(s)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def summary_line(snap: Snapshot) -> str:
    """`12.5 MB of 40.0 MB (31 %) at 8.2 MB/s, 3 s left`; where the total is
    not known in advance (a DICOMweb source), `12.5 MB at 8.2 MB/s`."""
    if not snap.bytes_total and snap.bytes_done:
        return format_bytes(snap.bytes_done) + (f" at {format_bytes(snap.rate)}/s" if snap.rate is not None else "")
    text = f"{format_bytes(snap.bytes_done)} of {format_bytes(snap.bytes_total)} ({int(snap.fraction * 100)} %)"
    if snap.rate is not None:
        text += f" at {format_bytes(snap.rate)}/s, {format_seconds(snap.seconds_left)} left"
    return text


def row_line(row: SeriesRow) -> str:
    """One series as a line: status, UID, instances, size, error."""
    text = f"{row.status:<11} {row.series}  {row.saved_instances}/{row.instances} instances, {format_bytes(row.size)}"
    if row.error:
        text += f": {row.error}"
    return text


class ProgressMeter:
    """The original's per-chunk progress event, coalesced: at most one per
    `progress_interval`, carrying the bytes since the last (every source's reader)."""

    def __init__(self, job: Any, sp: Any) -> None:
        self.job, self.sp = job, sp
        self.unreported = 0
        self.last = time.monotonic()

    def add(self, n: int, total: int | None = None) -> None:
        self.unreported += n
        if time.monotonic() - self.last >= self.job.progress_interval:
            self.flush(total)

    def flush(self, total: int | None = None) -> None:
        if self.unreported:
            self.job._progress(self.sp, self.unreported, total)
            self.unreported, self.last = 0, time.monotonic()
