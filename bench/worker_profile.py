"""A V8 CPU profile of the page's dedicated Worker (where the job runs), taken
over CDP while a benchmark download runs: which functions the worker's thread
spends its time in (Python's interpreter and its C code are WebAssembly
functions, the shim is JS, `(garbage collector)` and `(idle)` are V8's own).

Workers are reached through `Target.setAutoAttach` without flattening, the
messages wrapped in `Target.sendMessageToTarget` (Playwright's CDP session
talks to the page only)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path


class WorkerProfiler:
    def __init__(self, page) -> None:
        self.page = page
        self.cdp = page.context.new_cdp_session(page)
        self.workers: list[str] = []
        self.replies: dict[int, dict] = {}
        self._id = 0
        self.cdp.on("Target.attachedToTarget", self._attached)
        self.cdp.on("Target.receivedMessageFromTarget", self._received)
        self.cdp.send("Target.setAutoAttach", {"autoAttach": True, "waitForDebuggerOnStart": False,
                                               "flatten": False})

    def _attached(self, ev) -> None:
        if ev["targetInfo"]["type"] == "worker":
            self.workers.append(ev["sessionId"])

    def _received(self, ev) -> None:
        msg = json.loads(ev["message"])
        if "id" in msg:
            self.replies[msg["id"]] = msg

    def _call(self, method: str, params: dict | None = None, timeout: float = 60.0) -> dict:
        if not self.workers:
            raise RuntimeError("no worker attached: the job does not run in a Worker")
        self._id += 1
        self.cdp.send("Target.sendMessageToTarget", {"sessionId": self.workers[0], "message": json.dumps(
            {"id": self._id, "method": method, "params": params or {}})})
        deadline = time.monotonic() + timeout
        while self._id not in self.replies:
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker did not answer {method}")
            self.page.wait_for_timeout(50)      # lets Playwright deliver the CDP events
        reply = self.replies.pop(self._id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def start(self) -> None:
        self._call("Profiler.enable")
        self._call("Profiler.setSamplingInterval", {"interval": 200})
        self._call("Profiler.start")

    def stop(self, save_to: Path | None = None) -> dict:
        profile = self._call("Profiler.stop")["profile"]
        if save_to is not None:
            save_to.write_text(json.dumps(profile))
        return profile


def self_times(profile: dict) -> Counter:
    """Seconds of self time per function, named `function (file)`."""
    names = {}
    for node in profile["nodes"]:
        f = node["callFrame"]
        where = f.get("url", "").rsplit("/", 1)[-1] or "-"
        names[node["id"]] = f"{f.get('functionName') or '(anonymous)'} ({where})"
    out: Counter = Counter()
    for node_id, delta in zip(profile.get("samples", []), profile.get("timeDeltas", [])):
        out[names[node_id]] += delta / 1e6
    return out


def summary(profile: dict, top: int = 15) -> str:
    times = self_times(profile)
    total = sum(times.values())
    busy = total - times.get("(idle) (-)", 0.0) - times.get("(program) (-)", 0.0)
    lines = [f"worker profile: {total:.2f} s sampled, {busy:.2f} s in functions or GC"]
    for name, s in times.most_common(top):
        lines.append(f"  {s:6.2f} s {100 * s / total:5.1f}%  {name[:110]}")
    return "\n".join(lines)
