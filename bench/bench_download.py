"""Benchmark: download a synthetic COD study in headless Chromium, with this project
(Pyodide, the JS API of cod-retrieve.mjs) into an OPFS folder and as a zip, and with a
plain-JavaScript baseline (no Python) into an OPFS folder, against fake-gcs-server on
loopback, at two (or more) study sizes.

Prints DICOM MB/s for each variant, its ratio to the baseline, and the peak memory (PSS
summed over all browser processes) during each download.

    .venv/bin/python bench/bench_download.py                      # 2x300 and 2x600
    .venv/bin/python bench/bench_download.py --series 4 --sizes 1000 --repeat 1
    .venv/bin/python bench/bench_download.py --variants baseline,zip
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import build  # noqa: E402
from support.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from make_study import make_study  # noqa: E402

MB = 1e6
FOLDER = "bench-out"
CHROMIUM_DIR = "/usr/lib/chromium/"

WHAT = {
    "baseline": "plain JS: fetch each series tar (streamed, 3 at a time), parse 512-byte tar "
                "headers incrementally (PAX 'x' records give the next member's path/size), one "
                "createWritable + one write per instance, 8 files in flight; no CRC32C checks, "
                "no listing, no metadata.json (series UIDs given)",
    "project": "cod-retrieve via its JS API (Pyodide): createCodDownload({concurrency: 3}), "
               "initDirectory(folder handle), download([study]) (listing + metadata.json) and "
               "job.start() (streamed tars, CRC32C-verified instances written to OPFS); "
               "Pyodide load time excluded",
    "zip": "cod-retrieve via its JS API in zip mode: download([study], true) and job.start(), "
           "which streams the tars into one <study>.zip in the OPFS spool, closes it and hands it "
           "to the browser as a download (<a download> on the disk-backed OPFS File); timed to the "
           "end of job.start(). The browser then copies the file into its downloads folder by "
           "itself: not in 'seconds', but memory is sampled until it has finished (see 'file s')",
}
VARIANTS = tuple(WHAT)


# --------------------------------------------------------------------------- memory (/proc)
def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError):
        return None


def browser_pids(ancestor: int) -> list[int]:
    """Chromium processes (exe under /usr/lib/chromium/) descending from ``ancestor``."""
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            pp = _ppid(int(name))
            if pp is not None:
                parent[int(name)] = pp
    out = []
    for pid in parent:
        p, seen = parent.get(pid), 0
        while p and p != ancestor and seen < 64:
            p, seen = parent.get(p), seen + 1
        if p == ancestor:
            try:
                if os.readlink(f"/proc/{pid}/exe").startswith(CHROMIUM_DIR):
                    out.append(pid)
            except OSError:
                pass
    return out


def rollup(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in bytes from /proc/<pid>/smaps_rollup; (0, 0) if the process is gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return pss, rss


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def process_kind(pid: int) -> str:
    try:
        # zygote children rewrite their command line as one space-separated string
        args = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").split()
    except OSError:
        return "?"
    kind = "browser"
    for a in args:
        if a.startswith(b"--type="):
            kind = a[7:].decode()
        elif a.startswith(b"--utility-sub-type="):
            kind = a[19:].decode().split(".")[0]
    return kind


def sample(ancestor: int) -> tuple[int, int]:
    pss = rss = 0
    for pid in browser_pids(ancestor):
        p, r = rollup(pid)
        pss += p
        rss += r
    return pss, rss


class Sampler(threading.Thread):
    """Sums PSS/RSS of all browser processes every ``interval`` s until stopped."""

    def __init__(self, ancestor: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.ancestor, self.interval = ancestor, interval
        self.stop_event = threading.Event()
        self.samples: list[tuple[float, int, int]] = []

    def run(self) -> None:
        while not self.stop_event.is_set():
            pss, rss = sample(self.ancestor)
            self.samples.append((time.monotonic(), pss, rss))
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()


def cpu_by_kind(ancestor: int) -> dict[int, tuple[str, float]]:
    return {pid: (process_kind(pid), cpu_seconds(pid)) for pid in browser_pids(ancestor)}


# --------------------------------------------------------------------------- serving
def serve_site_and_bench():
    """The built site plus bench/ under /bench/, from one origin (symlinks in a temp dir)."""
    build.build_site()
    tmp = Path(tempfile.mkdtemp(prefix="cod-bench-site-"))
    for entry in build.SITE.iterdir():
        (tmp / entry.name).symlink_to(entry)
    (tmp / "bench").symlink_to(BENCH)
    server, url = build.serve_site(tmp)
    return server, url, tmp


# --------------------------------------------------------------------------- runs
@dataclass
class Result:
    size: str
    variant: str
    seconds: float
    dicom_bytes: int
    idle_pss: int
    peak_pss: int
    peak_rss: int
    files: int
    extra: dict = field(default_factory=dict)

    @property
    def mbps(self) -> float:
        return self.dicom_bytes / MB / self.seconds


def one_run(pw, variant: str, site: str, bucket_url: str, fx, n_files: int, args) -> Result:
    ancestor = os.getpid()
    profile = tempfile.mkdtemp(prefix="cod-bench-profile-")
    # A persistent (on-disk) profile: Playwright's new_context() is off-the-record, where
    # Chromium keeps OPFS in memory, which would make memory grow with the study.
    downloads = tempfile.mkdtemp(prefix="cod-bench-downloads-")
    ctx = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                args=CHROMIUM_ARGS, accept_downloads=True,
                                                downloads_path=downloads)
    try:
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{site}/bench/{'project' if variant == 'zip' else variant}.html")
        page.wait_for_function("window.benchReady === true", timeout=60_000)
        cfg = dict(apiBase=bucket_url, bucket=fx.bucket, datastore=fx.datastore, study=fx.study_uid,
                   series=list(fx.series), token="t", concurrency=args.concurrency,
                   writesInFlight=args.writes, folder=FOLDER)
        extra: dict = {}
        if variant in ("project", "zip"):
            extra.update(page.evaluate("cfg => prepareProject(cfg)", cfg))
        page.evaluate("name => freshFolder(name)", FOLDER)
        time.sleep(args.settle)
        idle = [sample(ancestor) for _ in range(5) if time.sleep(args.interval) is None]
        idle_pss = int(statistics.median(p for p, _ in idle))
        cpu0 = cpu_by_kind(ancestor)
        sampler = Sampler(ancestor, args.interval)
        sampler.start()
        download = None
        try:
            if variant == "zip":
                # The zip is handed over inside job.start(); the browser writes it to its
                # downloads folder afterwards. path() waits until it has: memory and CPU
                # are sampled up to then, the time to then is reported apart ('file s').
                with page.expect_download(timeout=600_000) as info:
                    out = page.evaluate("cfg => runZip(cfg)", cfg)
                download = info.value
                zip_path = download.path()
                out["fileSeconds"] = time.time() - out["startEpochMs"] / 1000
            else:
                fn = "cfg => runBaseline(cfg)" if variant == "baseline" else "cfg => runProject(cfg)"
                out = page.evaluate(fn, cfg)
        finally:
            sampler.stop()
        cpu1 = cpu_by_kind(ancestor)
        cpu: dict[str, float] = {}
        for pid, (kind, c1) in cpu1.items():
            cpu[kind] = cpu.get(kind, 0.0) + c1 - cpu0.get(pid, (kind, 0.0))[1]
        extra.update(out)
        extra["cpu"] = cpu
        if variant == "zip":
            got = check_zip(download, zip_path, fx, n_files, out, errors)
            extra["zipBytes"] = got["zipBytes"]
            extra["spool"] = page.evaluate("() => spoolFiles()")
        else:
            got = page.evaluate("name => countFiles(name)", FOLDER)
        if got["dcmFiles"] != n_files or got["dcmBytes"] != fx.total_dicom_bytes:
            raise SystemExit(f"{variant}: OPFS has {got['dcmFiles']} .dcm files / {got['dcmBytes']} bytes, expected "
                             f"{n_files} / {fx.total_dicom_bytes}; result {out}; errors {errors[-5:]}")
        extra["otherFiles"] = got["other"]
        if variant != "baseline" and (out.get("failed") or out.get("succeeded") != len(fx.series)):
            raise SystemExit(f"{variant} reported {out}")
        page.evaluate("() => clearOpfs()")
        peak_pss = max(p for _, p, _ in sampler.samples)
        q = sampler.samples
        extra["quarters"] = [max((p for _, p, _ in q[i * len(q) // 4:(i + 1) * len(q) // 4]), default=0)
                             for i in range(4)]
        peak_rss = max(r for _, _, r in sampler.samples)
        return Result("", variant, out["seconds"], got["dcmBytes"], idle_pss, peak_pss, peak_rss,
                      got["dcmFiles"], extra)
    finally:
        ctx.close()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(downloads, ignore_errors=True)


def check_zip(download, path, fx, n_files: int, out: dict, errors: list[str]) -> dict:
    """The downloaded zip: its name, opens with zipfile, every CRC-32 right (testzip), number
    and total size of its .dcm entries, nothing else in it (no MISSING.txt)."""
    want = f"{fx.study_uid}.zip"
    if download.failure() is not None or download.suggested_filename != want:
        raise SystemExit(f"zip: download {download.suggested_filename!r} failed: {download.failure()}; "
                         f"result {out}; errors {errors[-5:]}")
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        bad = zf.testzip()
    dcm = [i for i in infos if i.filename.endswith(".dcm")]
    got = {"dcmFiles": len(dcm), "dcmBytes": sum(i.file_size for i in dcm),
           "other": [i.filename for i in infos if not i.filename.endswith(".dcm")],
           "zipBytes": os.path.getsize(path)}
    if bad is not None:
        raise SystemExit(f"zip: testzip() found a bad entry {bad!r}")
    if got["dcmFiles"] != n_files or got["dcmBytes"] != fx.total_dicom_bytes or got["other"]:
        raise SystemExit(f"zip: {got['dcmFiles']} .dcm entries / {got['dcmBytes']} bytes (others "
                         f"{got['other'][:5]}), expected {n_files} / {fx.total_dicom_bytes}; result {out}")
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=2)
    ap.add_argument("--sizes", default="300,600", help="instances per series, comma-separated")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=3, help="series tars in flight (both variants)")
    ap.add_argument("--writes", type=int, default=8, help="baseline: files in flight (project default 8)")
    ap.add_argument("--interval", type=float, default=0.2, help="memory sampling period (s)")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds to wait before the idle sample")
    ap.add_argument("--cpu", action="store_true", help="print browser CPU seconds by process type")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated, run in this order per repeat (default {','.join(VARIANTS)})")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not args.variants or set(args.variants) - set(VARIANTS):
        ap.error(f"--variants: choose from {', '.join(VARIANTS)}")

    from playwright.sync_api import sync_playwright

    site_server, site, site_tmp = serve_site_and_bench()
    bucket = None
    results: list[Result] = []
    try:
        with sync_playwright() as pw:
            for n in sizes:
                t0 = time.monotonic()
                bucket, fx = make_study(args.series, n, server=bucket)
                label = f"{args.series}x{n}"
                n_files = sum(len(v) for v in fx.series.values())
                print(f"# study {label}: {n_files} instances, {fx.total_dicom_bytes / MB:.1f} MB DICOM "
                      f"(ready in {time.monotonic() - t0:.1f} s)", flush=True)
                for r in range(args.repeat):
                    for variant in args.variants:
                        res = one_run(pw, variant, site, bucket.url, fx, n_files, args)
                        res.size = label
                        results.append(res)
                        print(f"#   {label} {variant:8s} run {r + 1}: {res.seconds:6.2f} s "
                              f"{res.mbps:6.1f} MB/s  peak PSS {res.peak_pss / MB:6.0f} MB "
                              f"(idle {res.idle_pss / MB:.0f})"
                              + (f"  plan {res.extra['planSeconds']:.2f} s" if variant != "baseline" else "")
                              + (f"  tail {res.extra['tailSeconds']:.2f} s  file complete at "
                                 f"{res.extra['fileSeconds']:.2f} s  zip {res.extra['zipBytes'] / MB:.1f} MB"
                                 if variant == "zip" else ""),
                              flush=True)
                        print("#     peak PSS in each quarter of the download (MB): " + " ".join(
                            f"{x / MB:.0f}" for x in res.extra["quarters"]), flush=True)
                        if args.cpu:
                            print("#     browser CPU s: " + ", ".join(
                                f"{k} {v:.1f}" for k, v in sorted(res.extra["cpu"].items(), key=lambda kv: -kv[1])
                                if v >= 0.05), flush=True)
    finally:
        if bucket is not None:
            bucket.stop()
        site_server.shutdown()
        site_server.server_close()
        shutil.rmtree(site_tmp, ignore_errors=True)

    report(results, sizes, args)
    return 0


def report(results: list[Result], sizes: list[int], args) -> None:
    print()
    print(f"machine: nproc={os.cpu_count()}, {os.uname().sysname} {os.uname().machine}; "
          f"browser: {CHROMIUM} headless, persistent profile (on-disk OPFS), fresh browser per run")
    for k in args.variants:
        print(f"  {k}: {WHAT[k]}")
    print("  memory: PSS from /proc/<pid>/smaps_rollup summed over every Chromium process Playwright "
          f"launched, sampled every {args.interval * 1000:.0f} ms during the download (zip: until the "
          "browser has finished writing the downloaded file); idle = median just before it "
          "(project, zip: after Pyodide has loaded)")
    print("  checked after every run: number and total size of the .dcm files in the OPFS folder "
          "(not their contents; the project also writes log.json); zip: the downloaded file opens "
          "with Python's zipfile, testzip() finds no bad CRC, and its .dcm entries (nothing else) "
          "have that number and total size")
    print()
    head = (f"{'size':>8} {'variant':>9} {'runs':>4} {'seconds':>8} {'DICOM MB/s':>10} {'ratio':>6} "
            f"{'idle MB':>8} {'peak MB':>8} {'peak-idle':>9} {'peak RSS':>8}")
    print(head)
    print("-" * len(head))
    zips = []
    for n in sizes:
        label = f"{args.series}x{n}"
        rows = {}
        for variant in VARIANTS:
            rs = [r for r in results if r.size == label and r.variant == variant]
            if not rs:
                continue
            secs = statistics.median(r.seconds for r in rs)
            rows[variant] = (rs, secs, rs[0].dicom_bytes / MB / secs)
        for variant, (rs, secs, mbps) in rows.items():
            ratio = (f"{mbps / rows['baseline'][2]:.2f}" if variant != "baseline" and "baseline" in rows else "")
            idle = statistics.median(r.idle_pss for r in rs) / MB
            peak = max(r.peak_pss for r in rs) / MB
            growth = max(r.peak_pss - r.idle_pss for r in rs) / MB
            prss = max(r.peak_rss for r in rs) / MB
            print(f"{label:>8} {variant:>9} {len(rs):>4} {secs:>8.2f} {mbps:>10.1f} {ratio:>6} "
                  f"{idle:>8.0f} {peak:>8.0f} {growth:>9.0f} {prss:>8.0f}")
            if variant == "zip":
                base = rows["baseline"][2] if "baseline" in rows else None
                zips.append((label, rs, base))
    print()
    print("seconds = median over runs; ratio = MB/s / baseline MB/s; memory in MB (1e6 bytes), "
          "peak = max over runs; peak RSS double-counts shared pages. No CRC checks in the baseline.")
    if not zips:
        return
    print()
    print("zip mode, where the time goes (medians over runs, seconds from download()):")
    head = (f"{'size':>8} {'zip MB':>8} {'plan':>6} {'tail':>6} {'seconds':>8} {'file s':>7} "
            f"{'MB/s to file':>12} {'ratio':>6}")
    print(head)
    print("-" * len(head))
    for label, rs, base in zips:
        med = lambda key: statistics.median(r.extra[key] for r in rs)  # noqa: E731
        file_s = med("fileSeconds")
        mbps = rs[0].dicom_bytes / MB / file_s
        ratio = f"{mbps / base:.2f}" if base else ""
        print(f"{label:>8} {rs[0].extra['zipBytes'] / MB:>8.1f} {med('planSeconds'):>6.2f} "
              f"{med('tailSeconds'):>6.2f} {statistics.median(r.seconds for r in rs):>8.2f} "
              f"{file_s:>7.2f} {mbps:>12.1f} {ratio:>6}")
    print()
    print("plan = download() (listing, metadata); tail = from the last byte counted by onProgress to "
          "the end of job.start() (closing the zip, handing it over); seconds = to the end of "
          "job.start() (the table above); file s = until the browser has finished writing the "
          "download to its downloads folder (seen from Playwright's download.path()).")


if __name__ == "__main__":
    sys.exit(main())
