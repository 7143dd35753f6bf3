"""Cohorts on Dask: one task per study, each running the async core on a
worker; a worker that dies has its study retried elsewhere, and the study's
own log.json (`<out>/<study>/log.json`) makes the retry resume.

Dask is imported only here (`pip install 'cod-retrieve[cohort]'`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..download import CodDownload
from ..errors import CodError
from ..progress import format_bytes, format_seconds
from .output import JsonOutput, Output
from .session import read_selection, source_from_text
from .tokens import CommandToken, token_source

REPORT = "cohort-report.json"


@dataclass(frozen=True)
class StudyTask:
    """Everything a worker needs for one study (plain values: it is pickled)."""
    bucket: str
    api_base: str
    study: str
    out: str
    series: tuple[str, ...] | None = None
    token: str | None = None
    token_command: str | None = None
    concurrency: int = 4

    @property
    def key(self) -> str:
        return f"cod-study-{self.study}"


def fetch_study(task: StudyTask) -> dict[str, Any]:
    """The Dask task: download one study into `task.out`, resuming what its
    log.json says is saved; returns its outcome (never raises for a study
    that fails: that is an outcome, not a reason to retry on another worker)."""
    return asyncio.run(_fetch(task))


async def _fetch(task: StudyTask) -> dict[str, Any]:
    started = time.monotonic()
    outcome: dict[str, Any] = {"study": task.study, "status": "failed", "series": 0, "savedSeries": 0,
                               "failed": [], "bytes": 0, "alreadySavedInstances": 0, "errors": [],
                               "worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        cod = CodDownload(task.api_base, task.concurrency,
                          token_provider=CommandToken(task.token_command) if task.token_command else None,
                          log_name=(task.study, "log.json"), progress_interval=1.0)
        cod.init_source(source_from_text(task.bucket, task.api_base, task.token))
        await cod.init_directory(task.out)
        job = await cod.download([task.study], series=task.series)
        errors: list[str] = []
        job.on_error(lambda p: errors.append(str(p.get("error"))))
        outcome["alreadySavedInstances"] = sum(len(s.saved) for s in job.plan.series)
        complete = await job.start()
        outcome.update(series=len(job.plan.series), savedSeries=len(complete["succeeded"]),
                       failed=complete["failed"], bytes=complete["bytesDone"], errors=errors[:50])
        ok = not complete["failed"] and job.plan.series
        outcome["status"] = "saved" if ok else ("incomplete" if complete["succeeded"] else "failed")
        if not job.plan.series and not complete["failed"]:
            outcome["errors"].append(f"study {task.study} has no series in this bucket")
    except CodError as e:
        outcome["errors"].append(str(e))
    outcome["seconds"] = round(time.monotonic() - started, 3)
    return outcome


def run_cohort(client: Any, tasks: Iterable[StudyTask], retries: int,
               on_outcome: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """Submit one task per study and collect the outcomes as they finish.
    A study whose worker died `retries` times is reported failed, not lost."""
    from distributed import as_completed  # noqa: PLC0415
    futures = {client.submit(fetch_study, t, key=t.key, retries=retries, pure=False): t for t in tasks}
    outcomes = []
    for fut in as_completed(futures):
        task = futures[fut]
        try:
            outcome = fut.result()
        except Exception as e:  # noqa: BLE001 - a killed worker's study, retried until it gave up
            outcome = {"study": task.study, "status": "failed", "series": 0, "savedSeries": 0, "failed": [],
                       "bytes": 0, "errors": [f"{type(e).__name__}: {e}"]}
        outcomes.append(outcome)
        on_outcome(outcome)
    return outcomes


def _tasks(args: argparse.Namespace) -> list[StudyTask]:
    sel = read_selection(args.studies, args.manifest)
    token, _ = token_source(args.token, None)
    out = str(Path(args.out).resolve())
    series = tuple(sel.series) if sel.series is not None else None
    return [StudyTask(args.bucket, args.api_base, s, out, series, token, args.token_command, args.concurrency)
            for s in sel.studies]


def cohort(args: argparse.Namespace, out: Output) -> int:
    import dask  # noqa: PLC0415
    from distributed import Client, LocalCluster  # noqa: PLC0415
    from .main import Exit  # noqa: PLC0415

    tasks = _tasks(args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    # A study whose worker dies is run again elsewhere, up to --retries times.
    dask.config.set({"distributed.scheduler.allowed-failures": args.retries})
    cluster = None
    try:
        if args.scheduler:
            client = Client(args.scheduler)
        else:
            cluster = LocalCluster(n_workers=args.local_workers, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
            client = Client(cluster)
        started = time.monotonic()

        def show(o: dict[str, Any]) -> None:
            if isinstance(out, JsonOutput):
                out.emit("study", o)
            else:
                line = (f"{o['status']:<10} {o['study']}  {o['savedSeries']}/{o['series']} series, "
                        f"{format_bytes(o['bytes'])} in {format_seconds(o.get('seconds'))}")
                out.message(line + (f": {o['errors'][0]}" if o["errors"] and o["status"] != "saved" else ""))
        try:
            outcomes = run_cohort(client, tasks, args.retries, show)
        except KeyboardInterrupt:
            return Exit.INTERRUPTED
        finally:
            client.close()
        report = {"studies": outcomes, "seconds": round(time.monotonic() - started, 3),
                  "saved": sum(1 for o in outcomes if o["status"] == "saved"), "total": len(outcomes)}
        (Path(args.out) / REPORT).write_text(json.dumps(report, indent=1))
        if isinstance(out, JsonOutput):
            out.emit("report", {k: v for k, v in report.items() if k != "studies"})
        else:
            out.message(f"{report['saved']} of {report['total']} studies saved in "
                        f"{format_seconds(report['seconds'])}; report: {Path(args.out) / REPORT}")
        return Exit.OK if report["saved"] == report["total"] else Exit.INCOMPLETE
    finally:
        if cluster is not None:
            cluster.close()


__all__ = ["StudyTask", "fetch_study", "run_cohort", "cohort"]
