"""Benchmark: download a synthetic COD study in headless Chromium, with this project
(Pyodide, the JS API of cod-retrieve.mjs) into an OPFS folder and as a zip, and with a
plain-JavaScript baseline (no Python) into an OPFS folder, against fake-gcs-server on
loopback, at two (or more) study sizes. With --real-folder, the project and the baseline
write instead into a fresh folder on disk, chosen with Chromium's real picker (headed,
on Xvfb, answered with xdotool: tests/support/picker.py), read back and compared with
the bucket file by file (size, SHA-256).

Prints DICOM MB/s for each variant, its ratio to the first baseline, and the peak memory
(PSS summed over all browser processes) during each download.

    .venv/bin/python bench/bench_download.py                      # 2x300 and 2x600
    .venv/bin/python bench/bench_download.py --series 4 --sizes 1000 --repeat 1
    .venv/bin/python bench/bench_download.py --variants baseline,zip
    .venv/bin/python bench/bench_download.py --real-folder --sizes 300 --project-writes 8,64
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
sys.path.insert(0, str(ROOT / "py"))       # cod_retrieve.crc32c, for expected_files
sys.path.insert(0, str(ROOT))

import build  # noqa: E402
from support.browser import CHROMIUM, CHROMIUM_ARGS, expected_files  # noqa: E402
from support.picker import HEADED_ARGS, Display, answer_folder_picker, disk_files, missing_tools  # noqa: E402
from make_study import make_study  # noqa: E402
from worker_profile import WorkerProfiler, summary  # noqa: E402

MB = 1e6
FOLDER = "bench-out"
CHROMIUM_DIR = "/usr/lib/chromium/"

WHAT = {
    "baseline": "plain JS: fetch each series tar (streamed, 3 at a time), parse 512-byte tar "
                "headers incrementally (PAX 'x' records give the next member's path/size), one "
                "createWritable + one write per instance, /N = N files in flight (--writes); no "
                "CRC32C checks, no listing, no metadata.json (series UIDs given)",
    "project": "cod-retrieve via its JS API (Pyodide): createCodDownload({concurrency: 3, "
               "writes_in_flight: N for /N (--project-writes), else its default}), "
               "initDirectory(folder handle), download([study]) (listing + metadata.json) and "
               "job.start() (streamed tars, CRC32C-verified instances written to the folder); "
               "Pyodide load time excluded",
    "zip": "cod-retrieve via its JS API in zip mode: download([study], true) and job.start(), "
           "which streams the tars into one <study>.zip in the OPFS spool, closes it and hands it "
           "to the browser as a download (<a download> on the disk-backed OPFS File); timed to the "
           "end of job.start(). The browser then copies the file into its downloads folder by "
           "itself: not in 'seconds', but memory is sampled until it has finished (see 'file s')",
    "ceiling": "raw ceiling: each series tar fetched (3 at a time) and piped into one OPFS file "
               "(fetch body pipeTo createWritable); no parsing, no checks; MB/s counted in the study's "
               "DICOM bytes like the others",
}
VARIANTS = tuple(WHAT)
BENCH_PAGE = {"baseline": "baseline", "ceiling": "baseline", "project": "project", "zip": "project"}


@dataclass(frozen=True)
class Spec:
    """One variant as run: the baseline always with its files in flight, the project with
    them when --project-writes is given (None: the job's default), zip without."""
    variant: str
    writes: int | None = None

    @property
    def label(self) -> str:
        return self.variant if self.writes is None else f"{self.variant}/{self.writes}"


def expand_variants(args) -> list[Spec]:
    """--variants in order, each baseline once per --writes, project once per --project-writes."""
    per = {"baseline": args.writes, "project": args.project_writes or [None], "zip": [None], "ceiling": [None]}
    return [Spec(v, w) for v in args.variants for w in per[v]]


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


def cpu_seconds(pid: int | str) -> float:
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


def sample(ancestor: int, by_kind: dict[str, int] | None = None) -> tuple[int, int]:
    """Summed PSS and RSS of the browser's processes; `by_kind` gets PSS per process type."""
    pss = rss = 0
    for pid in browser_pids(ancestor):
        p, r = rollup(pid)
        pss += p
        rss += r
        if by_kind is not None:
            kind = process_kind(pid)
            by_kind[kind] = by_kind.get(kind, 0) + p
    return pss, rss


class Sampler(threading.Thread):
    """Sums PSS/RSS of all browser processes every ``interval`` s until stopped."""

    def __init__(self, ancestor: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.ancestor, self.interval = ancestor, interval
        self.stop_event = threading.Event()
        self.samples: list[tuple[float, int, int]] = []
        self.peak_pss, self.peak_kinds = 0, {}       # PSS per process type at the peak

    def run(self) -> None:
        while not self.stop_event.is_set():
            kinds: dict[str, int] = {}
            pss, rss = sample(self.ancestor, kinds)
            self.samples.append((time.monotonic(), pss, rss))
            if pss >= self.peak_pss:
                self.peak_pss, self.peak_kinds = pss, kinds
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()


def cpu_by_kind(ancestor: int) -> dict[int, tuple[str, float]]:
    return {pid: (process_kind(pid), cpu_seconds(pid)) for pid in browser_pids(ancestor)}


def cpu_by_thread(ancestor: int) -> dict[tuple[int, int], tuple[str, float]]:
    """(pid, tid) -> ("<process kind>/<thread name>", CPU s), for the renderer and browser
    processes: which thread does the work (the job's Worker is "DedicatedWorker thread")."""
    out = {}
    for pid in browser_pids(ancestor):
        kind = process_kind(pid)
        if kind not in ("renderer", "browser"):
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            except OSError:
                continue
            out[(pid, int(tid))] = (f"{kind}/{name}", cpu_seconds(f"{pid}/task/{tid}"))
    return out


# --------------------------------------------------------------------------- serving
def serve_site_and_bench(build_first: bool = True):
    """The built site plus bench/ under /bench/, from one origin (symlinks in a temp dir)."""
    if build_first:
        build.build_site()
    tmp = Path(tempfile.mkdtemp(prefix="cod-bench-site-"))
    for entry in build.SITE.iterdir():
        (tmp / entry.name).symlink_to(entry)
    (tmp / "bench").symlink_to(BENCH)
    server, url = build.serve_site(tmp)
    return server, url, tmp


# --------------------------------------------------------------------------- real folders
@dataclass
class RealFolders:
    """--real-folder: the Xvfb display the headed browser runs on, where the fresh folders
    are made (one per run, removed after its check), and what the bucket holds (per study)."""
    display: Display
    root: Path
    want: dict = field(default_factory=dict)
    made: int = 0

    def fresh(self, label: str) -> Path:
        self.made += 1
        folder = self.root / f"{self.made:02d}-{label.replace('/', '-')}"
        folder.mkdir()
        return folder


def launch(pw, profile: str, downloads: str, real: RealFolders | None):
    """A persistent (on-disk) profile: Playwright's new_context() is off-the-record, where
    Chromium keeps OPFS in memory, which would make memory grow with the study. Headless,
    or headed on the display for the real picker."""
    mode = (dict(headless=True, args=CHROMIUM_ARGS) if real is None
            else dict(headless=False, args=HEADED_ARGS, env=real.display.env))
    return pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, accept_downloads=True,
                                                 downloads_path=downloads, **mode)


def pick_folder(page, display: Display, folder: Path) -> int:
    """Click the page's "Choose folder" (pick.mjs) and answer the real picker with `folder`;
    returns how many clicks on "Allow" Chromium ignored (support.picker.click_allow)."""
    page.click("#pick")
    lost = answer_folder_picker(display, folder)
    try:
        page.wait_for_function("document.body.dataset.picked !== undefined", timeout=30_000)
    except Exception:
        display.fail(f"picking {folder}: showDirectoryPicker has not resolved after 'Allow'")
    state = page.evaluate("document.body.dataset.picked")
    if state != "ok":
        display.fail(f"picking {folder}: {state}")
    return lost


def timed_sync() -> float:
    t0 = time.monotonic()
    os.sync()
    return time.monotonic() - t0


def check_disk(folder: Path, want: dict, spec: Spec) -> dict:
    """Every file in the real folder read back: the instances must be exactly the bucket's
    (path, size, SHA-256); besides them only the project's log.json."""
    got = disk_files(folder)
    other = sorted(set(got) - set(want))
    allowed = ["log.json"] if spec.variant == "project" else []
    missing = sorted(set(want) - set(got))
    wrong = [p for p in want if p in got and got[p] != want[p]]
    if missing or wrong or [o for o in other if o not in allowed]:
        raise SystemExit(f"{spec.label}: {folder} lacks {len(missing)} files ({missing[:3]}), {len(wrong)} "
                         f"differ ({wrong[:3]}), unexpected {other[:5]}")
    return {"dcmFiles": len(want), "dcmBytes": sum(w["size"] for w in want.values()), "other": other,
            "checked": len(want)}


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
    checked: int = 0           # files compared by SHA-256 with the bucket (real folder)
    repeat: int = 0

    @property
    def mbps(self) -> float:
        return self.dicom_bytes / MB / self.seconds


def one_run(pw, spec: Spec, site: str, bucket_url: str, fx, n_files: int, args,
            real: RealFolders | None = None) -> Result:
    variant = spec.variant
    ancestor = os.getpid()
    profile = tempfile.mkdtemp(prefix="cod-bench-profile-")
    downloads = tempfile.mkdtemp(prefix="cod-bench-downloads-")
    ctx = launch(pw, profile, downloads, real)
    folder = None
    try:
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{site}/bench/{BENCH_PAGE[variant]}.html")
        try:
            page.wait_for_function("window.benchReady === true", timeout=60_000)
        except Exception as e:
            shot = f" (screenshot: {real.display.screenshot('page not ready')})" if real else ""
            raise SystemExit(f"{spec.label}: the bench page is not ready: {e}; errors {errors[-5:]}{shot}")
        cfg = dict(apiBase=bucket_url, bucket=fx.bucket, datastore=fx.datastore, study=fx.study_uid,
                   series=list(fx.series), token="t", concurrency=args.concurrency,
                   writesInFlight=spec.writes if variant == "baseline" else None,
                   projectWrites=spec.writes if variant == "project" else None,
                   folder=FOLDER, picked=real is not None)
        extra: dict = {}
        if variant in ("project", "zip"):
            extra.update(page.evaluate("cfg => prepareProject(cfg)", cfg))
            # Startup on a repeat visit: the same profile, the page loaded again (its HTTP
            # cache and V8's code cache warm), createCodDownload() to ready once more.
            page.reload()
            page.wait_for_function("window.benchReady === true", timeout=60_000)
            again = page.evaluate("cfg => prepareProject(cfg)", cfg)
            extra["loadSecondsRepeat"], extra["startedFromRepeat"] = again["loadSeconds"], again["startedFrom"]
        if real is None:
            page.evaluate("name => freshFolder(name)", FOLDER)
        else:
            folder = real.fresh(spec.label)
            extra["allowLost"] = pick_folder(page, real.display, folder)
        timed_sync()                    # earlier runs' dirty pages are not written back during this one
        time.sleep(args.settle)
        idle = [sample(ancestor) for _ in range(5) if time.sleep(args.interval) is None]
        idle_kinds: dict[str, int] = {}
        sample(ancestor, idle_kinds)
        extra["idleKinds"] = idle_kinds
        idle_pss = int(statistics.median(p for p, _ in idle))
        cpu0 = cpu_by_kind(ancestor)
        threads0 = cpu_by_thread(ancestor) if args.cpu else {}
        profiler = None
        if args.profile_worker and variant in ("project", "zip"):
            profiler = WorkerProfiler(page)
            profiler.start()
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
                fn = {"baseline": "runBaseline", "project": "runProject", "ceiling": "runCeiling"}[variant]
                out = page.evaluate(f"cfg => {fn}(cfg)", cfg)
        finally:
            sampler.stop()
        if profiler is not None:
            saved = Path(args.profile_worker) / f"{spec.label.replace('/', '-')}-{time.strftime('%H%M%S')}.cpuprofile"
            saved.parent.mkdir(parents=True, exist_ok=True)
            print(summary(profiler.stop(saved)) + f"\n  (saved {saved}: open in Chrome DevTools)", flush=True)
        cpu1 = cpu_by_kind(ancestor)
        # one entry per thread: the job's Worker and the writer worker share a name
        extra["threads"] = [(name, c1 - threads0.get(key, (name, 0.0))[1])
                            for key, (name, c1) in (cpu_by_thread(ancestor) if args.cpu else {}).items()]
        cpu: dict[str, float] = {}
        for pid, (kind, c1) in cpu1.items():
            cpu[kind] = cpu.get(kind, 0.0) + c1 - cpu0.get(pid, (kind, 0.0))[1]
        extra.update(out)
        extra["cpu"] = cpu
        if real is not None:
            extra["syncSeconds"] = timed_sync()    # what the page cache still held
            got = check_disk(folder, real.want, spec)
        elif variant == "zip":
            got = check_zip(download, zip_path, fx, n_files, out, errors)
            extra["zipBytes"] = got["zipBytes"]
            extra["spool"] = page.evaluate("() => spoolFiles()")
        elif variant == "ceiling":
            tars = page.evaluate("name => countTars(name)", FOLDER)
            if tars != {"tarFiles": len(fx.series), "tarBytes": fx.total_tar_bytes}:
                raise SystemExit(f"ceiling: the folder has {tars}, expected {len(fx.series)} tars of "
                                 f"{fx.total_tar_bytes} bytes")
            got = {"dcmFiles": n_files, "dcmBytes": fx.total_dicom_bytes, "other": []}
        else:
            got = page.evaluate("name => countFiles(name)", FOLDER)
        if got["dcmFiles"] != n_files or got["dcmBytes"] != fx.total_dicom_bytes:
            raise SystemExit(f"{spec.label}: the folder has {got['dcmFiles']} .dcm files / {got['dcmBytes']} bytes, expected "
                             f"{n_files} / {fx.total_dicom_bytes}; result {out}; errors {errors[-5:]}")
        extra["otherFiles"] = got["other"]
        if variant in ("project", "zip") and (out.get("failed") or out.get("succeeded") != len(fx.series)):
            raise SystemExit(f"{spec.label} reported {out}")
        if real is None:
            page.evaluate("() => clearOpfs()")
        peak_pss = max(p for _, p, _ in sampler.samples)
        q = sampler.samples
        extra["peakKinds"] = sampler.peak_kinds
        extra["quarters"] = [max((p for _, p, _ in q[i * len(q) // 4:(i + 1) * len(q) // 4]), default=0)
                             for i in range(4)]
        peak_rss = max(r for _, _, r in sampler.samples)
        return Result("", spec.label, out["seconds"], got["dcmBytes"], idle_pss, peak_pss, peak_rss,
                      got["dcmFiles"], extra, got.get("checked", 0))
    finally:
        ctx.close()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(downloads, ignore_errors=True)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


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


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=2)
    ap.add_argument("--sizes", default="300,600", help="instances per series, comma-separated")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=3, help="series tars in flight (both variants)")
    ap.add_argument("--writes", type=ints, default=None,
                    help="baseline: files in flight, comma-separated, one baseline each; the ratios are "
                         "to the first (default 8; with --real-folder 8,16)")
    ap.add_argument("--project-writes", type=ints, default=None,
                    help="project: files in flight (createCodDownload writes_in_flight), comma-separated, "
                         "one project run each (default: the job's default, 8)")
    ap.add_argument("--real-folder", action="store_true",
                    help="project and baseline into a fresh folder on disk picked with Chromium's real "
                         "picker (headed, Xvfb, xdotool), read back and compared with the bucket "
                         "(default variants baseline,project)")
    ap.add_argument("--folder-root", default=None, help="--real-folder: make the folders under this "
                    "directory (default: the temp dir)")
    ap.add_argument("--no-build", action="store_true", help="serve build/site as it is (no build.py site)")
    ap.add_argument("--interval", type=float, default=0.2, help="memory sampling period (s)")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds to wait before the idle sample")
    ap.add_argument("--cpu", action="store_true", help="print browser CPU seconds by process type")
    ap.add_argument("--profile-worker", default=None, metavar="DIR",
                    help="project, zip: a V8 CPU profile of the job's Worker during each download, "
                         "saved under DIR, its top functions by self time printed")
    ap.add_argument("--variants", default=None,
                    help=f"comma-separated, run in this order per repeat (default {','.join(VARIANTS)}; "
                         "with --real-folder baseline,project)")
    args = ap.parse_args(argv)
    args.sizes = ints(args.sizes)
    args.writes = args.writes or ([8, 16] if args.real_folder else [8])
    default = "baseline,project" if args.real_folder else ",".join(VARIANTS)
    args.variants = [v.strip() for v in (args.variants or default).split(",") if v.strip()]
    if not args.variants or set(args.variants) - set(VARIANTS):
        ap.error(f"--variants: choose from {', '.join(VARIANTS)}")
    if args.real_folder and {"zip", "ceiling"} & set(args.variants):
        ap.error("--real-folder: zip and ceiling write no folder of files (choose baseline, project)")
    if args.real_folder and missing_tools():
        ap.error(f"--real-folder needs {', '.join(missing_tools())} (python3 build.py setup installs them)")
    args.specs = expand_variants(args)
    return args


def start_real_folders(args) -> RealFolders:
    shots = Path(tempfile.mkdtemp(prefix="cod-bench-shots-"))
    root = Path(tempfile.mkdtemp(prefix="cod-bench-folders-", dir=args.folder_root))
    return RealFolders(Display(shots), root)


def stop_real_folders(real: RealFolders) -> None:
    real.display.stop()
    shutil.rmtree(real.root, ignore_errors=True)
    if not any(real.display.shots.iterdir()):
        real.display.shots.rmdir()
    else:
        print(f"# screenshots of failed picker steps in {real.display.shots}")


def print_run(res: Result, spec: Spec, r: int, args) -> None:
    variant = spec.variant
    print(f"#   {res.size} {spec.label:11s} run {r + 1}: {res.seconds:6.2f} s "
          f"{res.mbps:6.1f} MB/s  peak PSS {res.peak_pss / MB:6.0f} MB "
          f"(idle {res.idle_pss / MB:.0f})"
          + (f"  plan {res.extra['planSeconds']:.2f} s" if "planSeconds" in res.extra else "")
          + (f"  longest main-thread task {res.extra['longestTaskMs']:.0f} ms"
             if res.extra.get("longestTaskMs") is not None else "")
          + (f"  startup {res.extra['loadSeconds']:.2f} s ({res.extra['startedFrom']}), repeat visit "
             f"{res.extra['loadSecondsRepeat']:.2f} s ({res.extra['startedFromRepeat']})"
             if "loadSecondsRepeat" in res.extra else "")
          + (f"  then sync {res.extra['syncSeconds']:.2f} s, {res.checked} files checked"
             if "syncSeconds" in res.extra else "")
          + (f"  ({res.extra['allowLost']} click(s) on 'Allow' ignored)" if res.extra.get("allowLost") else "")
          + (f"  tail {res.extra['tailSeconds']:.2f} s  file complete at "
             f"{res.extra['fileSeconds']:.2f} s  zip {res.extra['zipBytes'] / MB:.1f} MB"
             if variant == "zip" else ""),
          flush=True)
    print("#     peak PSS in each quarter of the download (MB): " + " ".join(
        f"{x / MB:.0f}" for x in res.extra["quarters"]) + "; at the peak, by process type: " + ", ".join(
        f"{k} {v / MB:.0f} (idle {res.extra.get('idleKinds', {}).get(k, 0) / MB:.0f})"
        for k, v in sorted(res.extra.get("peakKinds", {}).items(), key=lambda kv: -kv[1])), flush=True)
    if args.cpu:
        print("#     browser CPU s: " + ", ".join(
            f"{k} {v:.1f}" for k, v in sorted(res.extra["cpu"].items(), key=lambda kv: -kv[1])
            if v >= 0.05), flush=True)
        busiest = sorted(res.extra.get("threads", []), key=lambda kv: -kv[1])[:7]
        print("#     busiest threads, CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in busiest if v >= 0.05),
              flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from playwright.sync_api import sync_playwright

    site_server, site, site_tmp = serve_site_and_bench(build_first=not args.no_build)
    bucket = None
    real = start_real_folders(args) if args.real_folder else None
    results: list[Result] = []
    try:
        with sync_playwright() as pw:
            for n in args.sizes:
                t0 = time.monotonic()
                bucket, fx = make_study(args.series, n, server=bucket)
                label = f"{args.series}x{n}"
                n_files = sum(len(v) for v in fx.series.values())
                if real is not None:
                    real.want = expected_files(bucket.url, fx)
                print(f"# study {label}: {n_files} instances, {fx.total_dicom_bytes / MB:.1f} MB DICOM "
                      f"(ready in {time.monotonic() - t0:.1f} s)", flush=True)
                for r in range(args.repeat):
                    for spec in args.specs:
                        res = one_run(pw, spec, site, bucket.url, fx, n_files, args, real)
                        res.size, res.repeat = label, r
                        results.append(res)
                        print_run(res, spec, r, args)
    finally:
        if bucket is not None:
            bucket.stop()
        if real is not None:
            stop_real_folders(real)
        site_server.shutdown()
        site_server.server_close()
        shutil.rmtree(site_tmp, ignore_errors=True)

    report(results, args.sizes, args)
    return 0


def per_repeat_ratios(rs: list[Result], refs: list[Result]) -> list[str]:
    """MB/s over the reference's MB/s in the same repeat: less exposed to load that comes
    and goes than the ratio of the medians."""
    by_repeat = {r.repeat: r for r in refs}
    return [f"{r.mbps / by_repeat[r.repeat].mbps:.2f}" for r in rs if r.repeat in by_repeat]


def report(results: list[Result], sizes: list[int], args) -> None:
    real = args.real_folder
    print()
    print(f"machine: nproc={os.cpu_count()}, {os.uname().sysname} {os.uname().machine}; "
          f"browser: {CHROMIUM} "
          + ("headed on Xvfb (real picker), persistent profile, fresh browser per run, "
             f"--host-resolver-rules (no DNS); folders on disk under {args.folder_root or tempfile.gettempdir()}"
             if real else "headless, persistent profile (on-disk OPFS), fresh browser per run")
          + "; os.sync() before every run, so that no run pays for the writeback of an earlier one")
    for k in args.variants:
        print(f"  {k}: {WHAT[k]}")
    print("  memory: PSS from /proc/<pid>/smaps_rollup summed over every Chromium process Playwright "
          f"launched, sampled every {args.interval * 1000:.0f} ms during the download (zip: until the "
          "browser has finished writing the downloaded file); idle = median just before it "
          "(project, zip: after Pyodide has loaded)")
    if real:
        print("  checked after every run: every file in the picked folder read back from disk and compared "
              "with the bucket's instances (path, size, SHA-256); nothing else there but the project's "
              "log.json. 'sync s' = os.sync() right after the run (what the page cache still held; not in "
              "'seconds')")
    else:
        print("  checked after every run: number and total size of the .dcm files in the OPFS folder "
              "(not their contents; the project also writes log.json); zip: the downloaded file opens "
              "with Python's zipfile, testzip() finds no bad CRC, and its .dcm entries (nothing else) "
              "have that number and total size")
    print()
    labels = [s.label for s in args.specs]
    ref = next((s.label for s in args.specs if s.variant == "baseline"), None)
    ceiling = "ceiling" if "ceiling" in labels else None
    head = (f"{'size':>8} {'variant':>12} {'runs':>4} {'seconds':>8} {'DICOM MB/s':>10} {'ratio':>6} "
            + (f"{'/ceiling':>8} " if ceiling else "")
            + f"{'idle MB':>8} {'peak MB':>8} {'peak-idle':>9} {'peak RSS':>8} {'files':>6} {'task ms':>7}"
            + (f" {'checked':>7} {'sync s':>6}" if real else "") + "  ratio in each repeat")
    print(head)
    print("-" * len(head))
    zips = []
    for n in sizes:
        label = f"{args.series}x{n}"
        rows = {}
        for variant in labels:
            rs = [r for r in results if r.size == label and r.variant == variant]
            if not rs:
                continue
            secs = statistics.median(r.seconds for r in rs)
            rows[variant] = (rs, secs, rs[0].dicom_bytes / MB / secs)
        for variant, (rs, secs, mbps) in rows.items():
            ratio = f"{mbps / rows[ref][2]:.2f}" if variant != ref and ref in rows else ""
            idle = statistics.median(r.idle_pss for r in rs) / MB
            peak = max(r.peak_pss for r in rs) / MB
            growth = max(r.peak_pss - r.idle_pss for r in rs) / MB
            prss = max(r.peak_rss for r in rs) / MB
            to_ceiling = f"{mbps / rows[ceiling][2]:.2f}" if ceiling in rows and variant != ceiling else ""
            tasks = [r.extra.get("longestTaskMs") for r in rs if r.extra.get("longestTaskMs") is not None]
            task = f"{max(tasks):.0f}" if tasks else "n/a"
            print(f"{label:>8} {variant:>12} {len(rs):>4} {secs:>8.2f} {mbps:>10.1f} {ratio:>6} "
                  + (f"{to_ceiling:>8} " if ceiling else "")
                  + f"{idle:>8.0f} {peak:>8.0f} {growth:>9.0f} {prss:>8.0f} {rs[0].files:>6} {task:>7}"
                  + (f" {min(r.checked for r in rs):>7} "
                     f"{statistics.median(r.extra['syncSeconds'] for r in rs):>6.2f}" if real else "")
                  + "  " + " ".join(per_repeat_ratios(rs, rows[ref][0]) if ref in rows and variant != ref else []))
            if variant == "zip":
                base = rows[ref][2] if ref in rows else None
                zips.append((label, rs, base))
    print()
    print(f"seconds = median over runs; ratio = MB/s / {ref} MB/s; /ceiling = MB/s / ceiling MB/s; "
          "/N = files in flight; memory in MB (1e6 bytes), peak = max over runs; peak RSS double-counts "
          "shared pages; task ms = the longest main-thread task (PerformanceObserver longtask, over "
          "50 ms; 0 = none) during the download, max over runs. No CRC checks in the baseline.")
    starts = [r for r in results if "loadSecondsRepeat" in r.extra]
    if starts:
        print()
        print("startup, createCodDownload() to ready (Pyodide, the package, the worker), seconds: "
              f"first visit (fresh profile) median {statistics.median(r.extra['loadSeconds'] for r in starts):.2f} "
              f"(max {max(r.extra['loadSeconds'] for r in starts):.2f}), repeat visit (same profile, page "
              f"reloaded) median {statistics.median(r.extra['loadSecondsRepeat'] for r in starts):.2f} "
              f"(max {max(r.extra['loadSecondsRepeat'] for r in starts):.2f}), over {len(starts)} runs; Python "
              "started from: first visits " + ", ".join(sorted({str(r.extra['startedFrom']) for r in starts}))
              + "; repeat visits " + ", ".join(sorted({str(r.extra['startedFromRepeat']) for r in starts})))
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
