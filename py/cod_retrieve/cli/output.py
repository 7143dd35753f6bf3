"""How a running job is shown: a redrawn bar on a terminal, plain lines when
the output is a file or a pipe, JSON lines for scripts. All three read the
same JobView, so the figures never differ between them."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable, TextIO

from ..progress import JobView, row_line, summary_line

FINAL = ("saved", "failed", "cancelled")


class Output:
    """Shows job events. `event` is called for every event the job emits;
    `view` is the job's own (Job.view, fed before any listener), so the bar,
    the page and the element read the same figures."""

    def __init__(self, stream: TextIO, view: JobView) -> None:
        self.stream = stream
        self.view = view

    def event(self, name: str, payload: dict[str, Any]) -> None:
        """Finished series and errors as lines; everything else to `tick`."""
        row = self.view.rows.get(payload.get("key", "")) if name == "series" else None
        if row is not None and row.status in FINAL:
            self.message(row_line(row))
        elif name == "error":
            self.message(f"error: {payload.get('error')}")
        else:
            self.tick(name)

    def tick(self, name: str) -> None:
        """An event that changed the figures only (progress, a series started)."""
        return None

    def message(self, text: str) -> None:
        """A line for people (warnings, summaries); JSON output keeps them out of stdout."""
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        return None


class PlainOutput(Output):
    """One line per finished series and per error, and a progress line at most
    every `every` seconds: readable in a log file, nothing redrawn."""

    def __init__(self, stream: TextIO, view: JobView, every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(stream, view)
        self.every, self.clock = every, clock
        self._last = clock()

    def tick(self, name: str) -> None:
        if name == "progress" and self.clock() - self._last >= self.every:
            self._last = self.clock()
            self.message(summary_line(self.view.snapshot()))


class TerminalOutput(Output):
    """A bar redrawn in place (at most every 0.2 s), with finished series and
    errors printed above it as they happen."""

    def __init__(self, stream: TextIO, view: JobView, width: int = 80,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(stream, view)
        self.width, self.clock = width, clock
        self._last = 0.0
        self._drawn = False

    def _draw(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        snap = self.view.snapshot()
        running = sum(1 for r in snap.rows if r.status == "downloading")
        text = summary_line(snap) + (f", {running} series downloading" if running else "")
        bar_width = max(10, min(30, self.width - len(text) - 4))
        filled = int(snap.fraction * bar_width)
        line = f"[{'#' * filled}{'.' * (bar_width - filled)}] {text}"
        self.stream.write("\r\x1b[2K" + line[: self.width - 1])
        self.stream.flush()
        self._drawn = True

    def message(self, text: str) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[2K")
        print(text, file=self.stream, flush=True)
        if self._drawn:
            self._draw(force=True)

    def tick(self, name: str) -> None:
        if name in ("progress", "series"):
            self._draw()

    def close(self) -> None:
        if self._drawn:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()


class JsonOutput(Output):
    """One JSON object per line: `{"event": "<name>", ...payload}`. Byte
    buffers (onSave's `file.buffer`) are left out; messages go to stderr."""

    def event(self, name: str, payload: dict[str, Any]) -> None:
        self.emit(name, payload)

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        print(json.dumps({"event": name, **_plain(payload)}), file=self.stream, flush=True)

    def message(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not isinstance(v, (bytes, bytearray, memoryview))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def choose_output(json_lines: bool, stream: TextIO | None = None) -> Output:
    out = stream or sys.stdout
    view = JobView()
    if json_lines:
        return JsonOutput(out, view)
    if out.isatty():
        import shutil  # noqa: PLC0415
        return TerminalOutput(out, view, width=shutil.get_terminal_size().columns)
    return PlainOutput(out, view)
