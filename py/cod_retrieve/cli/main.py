"""`cod-retrieve`: download, stats, verify and cohort from a shell or a script.

A thin layer: arguments become a CodDownload and a Job, job events go to an
Output, and the outcome becomes an exit code scripts can act on.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from .._compat import NativeFolder
from ..bucket import DEFAULT_API
from ..download import CodDownload
from ..errors import BucketError, CodError, StorageFullError, UidError
from ..job import EVENTS, Job
from ..journal import Journal
from ..manifest import ManifestError
from ..progress import format_bytes, format_seconds
from .output import JsonOutput, Output, choose_output
from .session import read_selection, source_from_text
from .tokens import TOKEN_ENV, token_source

SPOOL = ".cod-retrieve-spool"


class Exit(IntEnum):
    OK = 0            # everything asked for is saved (or verified, or listed)
    INCOMPLETE = 1    # some series failed or are missing: a rerun fetches only what is missing
    USAGE = 2         # bad arguments, bucket URL, UID or manifest: nothing was fetched
    AUTH = 3          # the token was refused (and no fresh one helped): nothing saved
    STORAGE_FULL = 4  # the disk is full: free space and rerun to complete the folder
    INTERRUPTED = 130 # Ctrl-C (or SIGTERM): stopped cleanly, a rerun resumes


@dataclass
class Outcome:
    """What a finished job says, reduced to what the exit code depends on."""
    saved: int
    failed: int
    cancelled: bool
    error_kinds: list[str] = field(default_factory=list)


def exit_code(outcome: Outcome) -> Exit:
    """The exit code for a job's outcome: a pure decision, tested alone."""
    if outcome.cancelled:
        return Exit.INTERRUPTED
    if "StorageFullError" in outcome.error_kinds:
        return Exit.STORAGE_FULL
    if outcome.failed == 0:
        return Exit.OK
    if outcome.saved == 0 and "AuthError" in outcome.error_kinds:
        return Exit.AUTH
    return Exit.INCOMPLETE


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("bucket", metavar="SOURCE",
                        help="bucket URL: https://host/<bucket>/<prefix>, gs://<bucket>/<datastore>, "
                             "or <bucket> alone (datastore at the bucket root); dicomweb:<service root URL> "
                             "for a DICOMweb server; archive:<URL> for one zip, tar or tar.gz of DICOM files "
                             "(study UIDs then optional: they narrow what is kept)")
    common.add_argument("studies", nargs="*", metavar="STUDY_UID", help="StudyInstanceUIDs to fetch")
    common.add_argument("--manifest", type=Path, help="CSV with a StudyInstanceUID column (and optionally "
                                                      "SeriesInstanceUID), or one study UID per line")
    common.add_argument("--api-base", default=DEFAULT_API, help=f"storage API base (default {DEFAULT_API})")
    common.add_argument("--token", help=f"bearer token (default: ${TOKEN_ENV})")
    common.add_argument("--token-command", help="command printing a token, run again whenever the token is "
                                                "refused (e.g. 'gcloud auth print-access-token')")
    common.add_argument("--json", action="store_true", help="one JSON object per event on stdout")

    p = argparse.ArgumentParser(prog="cod-retrieve", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"cod-retrieve {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("download", parents=[common], help="download studies into a folder, or as zips")
    d.add_argument("--out", type=Path, required=True, help="folder to download into (resumed when run again)")
    d.add_argument("--zip", action="store_true", help="one <StudyUID>.zip per study in --out instead of files")
    d.add_argument("--layout", default="classic", metavar="LAYOUT",
                   help="classic: <study>/<series>/instances/<sop>.dcm (the original's, default); descriptive: "
                        "<PatientID> <PatientName>/<StudyDate> <StudyDescription>/<SeriesNumber> <Modality> "
                        "<SeriesDescription>/<InstanceNumber>.dcm; media: a DICOM file set with a DICOMDIR; "
                        "or a template of %%Keyword fields such as %%PatientID/%%StudyInstanceUID/%%SeriesInstanceUID. "
                        "A folder keeps the layout it was first written in")
    d.add_argument("--write-manifest", action="store_true",
                   help="write cod-manifest.csv (path, size, CRC32C and UIDs per instance; status per series) "
                        "beside the files, or in each zip")
    d.add_argument("--dump", choices=["metadata", "frames"],
                   help="DICOMweb: write the server's study and series metadata (DICOM JSON) and a record of "
                        "every request under OUT/dump/; 'frames' writes each instance's frames too")
    d.add_argument("--concurrency", type=int, default=4, help="series downloaded at once (default 4)")

    s = sub.add_parser("stats", parents=[common], help="what a download would fetch (and what --out holds)")
    s.add_argument("--out", type=Path, help="folder to compare with (optional)")
    s.add_argument("--layout", default=None, metavar="LAYOUT", help="as for download (default: the folder's, else classic)")

    v = sub.add_parser("verify", parents=[common], help="check a folder against the bucket without downloading")
    v.add_argument("--out", type=Path, required=True, help="folder to check")

    c = sub.add_parser("cohort", parents=[common], help="many studies as Dask tasks, one per study")
    c.add_argument("--out", type=Path, required=True, help="folder for every study (one log.json per study)")
    where = c.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:port)")
    where.add_argument("--local-workers", type=int, default=2, help="start a local cluster of N workers (default 2)")
    c.add_argument("--concurrency", type=int, default=4, help="series in flight per study (default 4)")
    c.add_argument("--retries", type=int, default=3, help="tries per study when a worker dies (default 3)")
    return p


def make_cod(args: argparse.Namespace, concurrency: int = 4) -> CodDownload:
    token, provider = token_source(args.token, args.token_command)
    cod = CodDownload(args.api_base, concurrency, token_provider=provider, progress_interval=0.25)
    cod.init_source(source_from_text(args.bucket, args.api_base, token))
    return cod


async def run_job(job: Job, out: Output) -> tuple[dict[str, Any], Outcome]:
    """Start `job` with its events shown on `out`; SIGINT and SIGTERM cancel
    it cleanly (files in place stay, log.json is written)."""
    kinds: list[str] = []
    for name in EVENTS:
        job.on(name, lambda payload, name=name: out.event(name, payload))
    job.on("error", lambda payload: kinds.append(payload.get("kind") or ""))
    out.view = job.view
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, job.cancel)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):   # not the main thread (a Dask worker)
            pass
    try:
        complete = await job.start()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        out.close()
    return complete, Outcome(len(complete["succeeded"]), len(complete["failed"]), complete["cancelled"], kinds)


async def download(args: argparse.Namespace, out: Output) -> Exit:
    sel = read_selection(args.studies, args.manifest, optional=args.bucket.startswith("archive:"))
    cod = make_cod(args, args.concurrency)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.zip:
        cod.spool_folder = NativeFolder(args.out / SPOOL)
        cod.downloads_dir = args.out
    else:
        await cod.init_directory(str(args.out))
    job = await cod.download(sel.studies, args.zip, series=sel.series, layout=args.layout,
                             manifest=args.write_manifest,
                             dump={"metadata": True, "frames": "frames"}.get(args.dump or "", None))
    plan = job.plan
    for w in plan.warnings:
        out.message(f"warning: {w}")
    saved_before = sum(len(s.saved) for s in plan.series)
    if saved_before:
        out.message(f"{saved_before} instances already saved in {args.out}: skipped")
    complete, outcome = await run_job(job, out)
    code = exit_code(outcome)
    if args.zip:
        _remove_empty(args.out / SPOOL)
    zips = [z.get("path") for z in getattr(cod, "last_zips", []) or []]
    if isinstance(out, JsonOutput):
        out.emit("result", {"exitCode": int(code), "zips": zips, "alreadySaved": saved_before})
    else:
        out.message(f"{len(complete['succeeded'])} series saved, {len(complete['failed'])} failed, "
                    f"{format_bytes(complete['bytesDone'])} in {format_seconds(complete['seconds'])}"
                    + (" (interrupted: run again to resume)" if complete["cancelled"] else ""))
        for z in zips:
            out.message(f"zip: {z}")
    return code


def _remove_empty(folder: Path) -> None:
    try:
        for p in sorted(folder.rglob("*"), reverse=True):
            if p.is_dir():
                p.rmdir()
        folder.rmdir()
    except OSError:
        pass     # not empty: a spool of a job still running elsewhere


async def stats(args: argparse.Namespace, out: Output) -> Exit:
    sel = read_selection(args.studies, args.manifest)
    cod = make_cod(args)
    layout = args.layout
    if args.out is not None:
        await cod.init_directory(str(args.out))
        if layout is None:            # compare with the folder as it was written
            journal = Journal(cod.folder)
            await journal.load()
            layout = journal.layout
    plan = await cod.plan(sel.studies, series=sel.series, layout=layout)
    st = plan.stats()
    if isinstance(out, JsonOutput):
        out.emit("stats", st)
    else:
        for d in st["seriesDetails"]:
            what = " ".join(str(x) for x in (d["modality"], d["description"]) if x)
            out.message(f"{d['status']:<8} {d['seriesUID']}  {d['savedInstances']}/{d['instances']} instances, "
                        f"{format_bytes(d['sizeBytes'])}  {what}".rstrip())
        for w in st["warnings"]:
            out.message(f"warning: {w}")
        out.message(f"{st['totalSeriesCount']} series, {st['totalInstanceCount']} instances, "
                    f"{format_bytes(st['totalSizeBytes'])}; saved: {st['totalSavedSeriesCount']} series, "
                    f"{format_bytes(st['totalSavedSizeBytes'])}")
    auth = any(e.status in (401, 403) for e in plan.errors if hasattr(e, "status"))
    return Exit.AUTH if auth else (Exit.INCOMPLETE if plan.errors or any(s.error for s in plan.series) else Exit.OK)


async def verify(args: argparse.Namespace, out: Output) -> Exit:
    sel = read_selection(args.studies, args.manifest)
    cod = make_cod(args)
    if not args.out.is_dir():
        raise ManifestError(f"--out {args.out} is not a folder")
    await cod.init_directory(str(args.out))
    report = await cod.verify_folder(sel.studies, series=sel.series)
    if isinstance(out, JsonOutput):
        out.emit("verify", report.to_dict())
    else:
        for p in report.missing:
            out.message(f"missing  {p}")
        for p, why in report.changed:
            out.message(f"changed  {p}: {why}")
        for p in report.extra:
            out.message(f"extra    {p}")
        for e in report.errors:
            out.message(f"error    {e}")
        out.message(f"{len(report.ok)} files match the metadata, {len(report.missing)} missing, "
                    f"{len(report.changed)} changed, {len(report.extra)} extra")
    return Exit.OK if report.clean else Exit.INCOMPLETE


COMMANDS = {"download": download, "stats": stats, "verify": verify}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "concurrency", 1) < 1:
        print("cod-retrieve: error: --concurrency must be at least 1", file=sys.stderr)
        return Exit.USAGE
    out = choose_output(args.json)
    try:
        if args.command == "cohort":
            from .cohort import cohort  # noqa: PLC0415 - Dask only for cohorts
            return int(cohort(args, out))
        return int(asyncio.run(COMMANDS[args.command](args, out)))
    except (BucketError, UidError, ManifestError, ValueError) as e:
        print(f"cod-retrieve: error: {e}", file=sys.stderr)
        return Exit.USAGE
    except KeyboardInterrupt:
        print("cod-retrieve: interrupted", file=sys.stderr)
        return Exit.INTERRUPTED
    except StorageFullError as e:        # refused before anything was fetched
        print(f"cod-retrieve: {e}", file=sys.stderr)
        return Exit.STORAGE_FULL
    except CodError as e:
        print(f"cod-retrieve: {e}", file=sys.stderr)
        status = getattr(e, "status", None)
        return Exit.AUTH if status in (401, 403) else Exit.INCOMPLETE


if __name__ == "__main__":
    raise SystemExit(main())
