"""Benchmark: a DICOMweb download in headless Chromium, this project (Pyodide, the JS API
with initSource({dicomweb})) against a plain-JavaScript baseline (dicomweb-baseline.mjs:
fetch each series' WADO-RS multipart answer, cut it at the boundaries, one OPFS file per
part), both from the same Orthanc (Debian's, with its DICOMweb plugin) behind the test
proxy that adds CORS headers, on loopback.

The study: N series x M copies of a real CT instance (pydicom-data 693_UNCI.dcm, ~0.5 MB)
with new UIDs, uploaded through Orthanc's REST API. Prints DICOM MB/s per variant, its
ratio to the baseline of the same repeat (the machine is noisy: ratios within a run, never
absolute figures, are the result), and peak memory (PSS of all browser processes).

    .venv/bin/python bench/bench_dicomweb.py                      # 2 x 200, twice
    .venv/bin/python bench/bench_dicomweb.py --series 2 --instances 400 --repeat 3
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "py"))
sys.path.insert(0, str(ROOT))

import bench_download as bd  # noqa: E402  (serving, browser launch, memory sampling)
from support.faultproxy import FaultProxy  # noqa: E402
from support.orthanc import start_orthanc, upload_instances  # noqa: E402
from support.studies import pydicom_data_dir  # noqa: E402

MB = 1e6
FOLDER = "dw-bench"


def make_study(n_series: int, n_instances: int) -> tuple[str, list[str], list[bytes]]:
    """(study UID, series UIDs, files): copies of one real CT with new UIDs."""
    import pydicom
    from pydicom.uid import generate_uid

    base = pydicom.dcmread(pydicom_data_dir() / "693_UNCI.dcm")
    seed = f"cod-bench-dicomweb/{n_series}x{n_instances}"
    study = generate_uid(entropy_srcs=[seed, "study"])
    series_uids, files = [], []
    for s in range(n_series):
        series = generate_uid(entropy_srcs=[seed, "series", str(s)])
        series_uids.append(series)
        for i in range(n_instances):
            sop = generate_uid(entropy_srcs=[seed, "sop", str(s), str(i)])
            base.StudyInstanceUID, base.SeriesInstanceUID, base.SOPInstanceUID = study, series, sop
            base.file_meta.MediaStorageSOPInstanceUID = sop
            base.SeriesNumber, base.InstanceNumber = s + 1, i + 1
            buf = io.BytesIO()
            base.save_as(buf, enforce_file_format=True)
            files.append(buf.getvalue())
    return study, series_uids, files


def one_run(pw, variant: str, site: str, root: str, study: str, series: list[str], args) -> dict:
    ancestor = os.getpid()
    profile = tempfile.mkdtemp(prefix="cod-bench-profile-")
    downloads = tempfile.mkdtemp(prefix="cod-bench-downloads-")
    ctx = bd.launch(pw, profile, downloads, None)
    try:
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.goto(f"{site}/bench/dicomweb.html")
        page.wait_for_function("document.body.dataset.ready === '1'", timeout=60_000)
        cfg = dict(root=root, study=study, series=series, folder=FOLDER, concurrency=args.concurrency)
        if variant == "project":                     # Pyodide's load is not timed: loaded and thrown away
            page.evaluate("async () => (await import('/cod-retrieve.mjs')).createCodDownload({})")
        time.sleep(args.settle)
        idle = statistics.median(bd.sample(ancestor)[0] for _ in range(5) if time.sleep(args.interval) is None)
        sampler = bd.Sampler(ancestor, args.interval)
        sampler.start()
        try:
            fn = "runDicomwebBaseline" if variant == "baseline" else "runDicomwebProject"
            out = page.evaluate(f"cfg => window.bench.{fn}(cfg)", cfg)
        finally:
            sampler.stop()
        files = page.evaluate("""async (name) => {
            const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(name);
            let n = 0, bytes = 0;
            async function walk(d) { for await (const [k, h] of d.entries()) {
                if (h.kind === 'directory') await walk(h);
                else if (k.endsWith('.dcm')) { n++; bytes += (await h.getFile()).size; } } }
            await walk(dir); return { n, bytes };
        }""", FOLDER)
        out.update(files=files["n"], bytes=files["bytes"], idle=idle,
                   peak=max(p for _, p, _ in sampler.samples))
        return out
    finally:
        ctx.close()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(downloads, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=2)
    ap.add_argument("--instances", type=int, default=200, help="instances per series")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=3)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    study, series, files = make_study(args.series, args.instances)
    total = sum(len(f) for f in files)
    work = Path(tempfile.mkdtemp(prefix="cod-bench-orthanc-"))
    orthanc = start_orthanc(work)
    proxy = FaultProxy("127.0.0.1", orthanc.port, cors=True)
    server, site, tmp = bd.serve_site_and_bench(not args.no_build)
    try:
        t0 = time.monotonic()
        upload_instances(orthanc, files)
        print(f"study: {args.series} x {args.instances} instances, {total / MB:.1f} MB "
              f"(uploaded to Orthanc in {time.monotonic() - t0:.1f} s)")
        root = f"{proxy.url}/dicom-web"
        rows = []
        with sync_playwright() as pw:
            for r in range(args.repeat):
                for variant in ("baseline", "project"):
                    out = one_run(pw, variant, site, root, study, series, args)
                    if out["files"] != len(files) or out["bytes"] != total or out.get("errors"):
                        raise SystemExit(f"{variant}: {out}")
                    rows.append((r, variant, out))
                    print(f"  repeat {r + 1} {variant:8s} {out['seconds']:7.2f} s  {total / MB / out['seconds']:7.1f} MB/s"
                          f"  peak {out['peak'] / MB:6.0f} MB (idle {out['idle'] / MB:.0f} MB)", flush=True)
        ratios = []
        for r in range(args.repeat):
            base = next(o for rr, v, o in rows if rr == r and v == "baseline")
            proj = next(o for rr, v, o in rows if rr == r and v == "project")
            ratios.append(base["seconds"] / proj["seconds"])
        peak = {v: max(o["peak"] for _, vv, o in rows if vv == v) for v in ("baseline", "project")}
        print(f"project / baseline speed (same repeat): {', '.join(f'{x:.2f}' for x in ratios)}; "
              f"median {statistics.median(ratios):.2f}")
        print(f"peak memory: baseline {peak['baseline'] / MB:.0f} MB, project {peak['project'] / MB:.0f} MB")
    finally:
        proxy.stop()
        orthanc.stop()
        server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
