"""Benchmark: the command line (CPython) against the official `google-cloud-storage`
client downloading the same series tars (its transfer manager, N threads) and
unpacking them with `tarfile`, on fake-gcs-server on loopback, at two study sizes.

Each contender runs in a fresh child process, alternately, `--repeat` times; printed:
DICOM MB/s (median), the ratio to the reference measured in the same run, and the peak
RSS of the child (its VmHWM). Every run's files are checked against the bucket.

    .venv/bin/python bench/bench_cli.py                        # 2x100 and 4x250 instances
    .venv/bin/python bench/bench_cli.py --sizes 2x100,4x500 --repeat 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "tests"))

from make_study import make_study  # noqa: E402
from support.bucket import start_bucket_server  # noqa: E402

MB = 1e6


def reference(api: str, bucket: str, prefix: str, out: Path, workers: int) -> None:
    """What a data team writes with the official client: list the study's
    tars, download them (transfer manager, `workers` threads), untar."""
    import tarfile

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from google.cloud.storage import transfer_manager

    client = storage.Client(project="bench", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": api})
    tars = [b for b in client.list_blobs(bucket, prefix=prefix) if b.name.endswith(".tar")]
    spool = out / ".tars"
    spool.mkdir(parents=True)
    names = [b.name for b in tars]
    results = transfer_manager.download_many_to_path(client.bucket(bucket), names, destination_directory=str(spool),
                                                     max_workers=workers, worker_type="thread",
                                                     raise_exception=True)
    assert all(r is None for r in results), results
    for name in names:
        series = name.rsplit("/", 1)[1][: -len(".tar")]
        with tarfile.open(spool / name) as tf:
            tf.extractall(out / series, filter="data")
    shutil.rmtree(spool)


def _hwm(pid: int) -> int:
    """The process's own peak RSS so far (VmHWM: reset at exec, unlike the
    ru_maxrss wait4 gives, which keeps the parent's peak from before the fork)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _run(argv: list[str]) -> tuple[float, int, str]:
    """Run a child; (seconds, peak RSS in bytes, stderr). The peak is VmHWM read
    every 20 ms: a high-water mark, so only growth in the last 20 ms can be missed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT / "py")))
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _hwm(proc.pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    err = proc.stderr.read()
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed: {err[-2000:]}")
    return seconds, peak, err


def _digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.dcm")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2x100,4x250", help="study sizes as SERIESxINSTANCES, comma-separated")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=4, help="series in flight, both contenders")
    p.add_argument("--reference-child", nargs=4, metavar=("API", "BUCKET", "PREFIX", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.reference_child:
        api, bucket, prefix, out = args.reference_child
        reference(api, bucket, prefix, Path(out), args.workers)
        return

    server = start_bucket_server()
    rows = []
    try:
        for size in args.sizes.split(","):
            n_series, n_instances = (int(x) for x in size.lower().split("x"))
            _, fx = make_study(n_series=n_series, n_instances=n_instances, server=server)
            prefix = f"{fx.datastore}/studies/{fx.study_uid}/series/"
            truth = None
            times: dict[str, list[float]] = {"google-cloud-storage + tarfile": [], "cod-retrieve download": []}
            rss: dict[str, list[int]] = {k: [] for k in times}
            for _ in range(args.repeat):
                for name in times:
                    out = Path(tempfile.mkdtemp(prefix="bench-cli-"))
                    try:
                        if name.startswith("google"):
                            argv = [sys.executable, __file__, "--workers", str(args.workers),
                                    "--reference-child", server.url, fx.bucket, prefix, str(out / "files")]
                        else:
                            argv = [sys.executable, "-m", "cod_retrieve", "download",
                                    f"gs://{fx.bucket}/{fx.datastore}", fx.study_uid, "--api-base", server.url,
                                    "--out", str(out / "files"), "--concurrency", str(args.workers)]
                        seconds, peak, _ = _run(argv)
                        got = _digests(out / "files")
                        truth = truth or got
                        assert got == truth and len(got) == n_series * n_instances, f"{name}: files differ"
                        times[name].append(seconds)
                        rss[name].append(peak)
                    finally:
                        shutil.rmtree(out, ignore_errors=True)
            ref = statistics.median(times["google-cloud-storage + tarfile"])
            for name in times:
                med = statistics.median(times[name])
                rows.append((size, fx.total_dicom_bytes, name, fx.total_dicom_bytes / med / MB, ref / med,
                             max(rss[name]) / MB, [round(t, 2) for t in times[name]]))
    finally:
        server.stop()
    print(f"\n{'study':<8} {'DICOM MB':>9}  {'contender':<32} {'MB/s':>7} {'ratio':>6} {'peak RSS MB':>12}  runs (s)")
    for size, nbytes, name, rate, ratio, peak, runs in rows:
        print(f"{size:<8} {nbytes / MB:>9.0f}  {name:<32} {rate:>7.1f} {ratio:>6.2f} {peak:>12.0f}  {runs}")
    print(json.dumps([dict(zip(("study", "bytes", "contender", "mb_s", "ratio", "peak_rss_mb", "runs"), r))
                      for r in rows]))


if __name__ == "__main__":
    main()
