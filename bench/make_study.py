"""Build a synthetic COD study for benchmarks: N series x M copies of one real CT instance
(pydicom-data ``693_UNCI.dcm``, 512x512, ~0.5 MB), written by the real writer into a
fake-gcs-server bucket (cached under ``.cache/studies/`` after the first run).

As a function (benchmarks)::

    from make_study import make_study          # with bench/ on sys.path
    server, fx = make_study(n_series=2, n_instances=600)     # starts its own server
    fx = make_study(n_series=2, n_instances=600, server=existing)[1]

As a command (serves until Ctrl-C, prints the fixture as JSON on stdout)::

    .venv/bin/python bench/make_study.py --series 2 --instances 600
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO / "tests") not in sys.path:
    sys.path.insert(0, str(_REPO / "tests"))

from support.bucket import BucketServer, start_bucket_server  # noqa: E402
from support.studies import StudyFixture, write_synthetic_study  # noqa: E402

DEFAULT_BUCKET = "cod-bench"
DEFAULT_DATASTORE = "bench/dicomweb"


def make_study(
    n_series: int = 2,
    n_instances: int = 600,
    server: BucketServer | None = None,
    bucket: str = DEFAULT_BUCKET,
    datastore: str = DEFAULT_DATASTORE,
    source: Path | None = None,
) -> tuple[BucketServer, StudyFixture]:
    """Write (or restore from cache) a synthetic study; starts a server if none is given.
    The caller owns the returned server (``server.stop()`` or ``with server:``)."""
    own = server is None
    if server is None:
        server = start_bucket_server()
    try:
        fx = write_synthetic_study(server, bucket, datastore, n_series, n_instances, source)
    except BaseException:
        if own:
            server.stop()
        raise
    return server, fx


def fixture_info(server: BucketServer, fx: StudyFixture) -> dict:
    info = asdict(fx)
    info["series_counts"] = {s: len(v) for s, v in fx.series.items()}
    info["server_url"] = server.url
    info["tar_urls"] = [f"{server.url}/{fx.bucket}/{fx.tar_name(s)}" for s in fx.series]
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=2)
    ap.add_argument("--instances", type=int, default=600)
    ap.add_argument("--bucket", default=DEFAULT_BUCKET)
    ap.add_argument("--datastore", default=DEFAULT_DATASTORE)
    ap.add_argument("--source", type=Path, default=None, help="DICOM file to copy (default 693_UNCI.dcm)")
    ap.add_argument("--root", type=Path, default=None, help="server filesystem root (default: temp dir)")
    ap.add_argument("--full", action="store_true", help="print the SOP UID lists too")
    ap.add_argument("--no-serve", action="store_true", help="exit after writing (only fills the cache)")
    args = ap.parse_args(argv)

    server = start_bucket_server(args.root)
    with server:
        t0 = time.monotonic()
        _, fx = make_study(args.series, args.instances, server, args.bucket, args.datastore, args.source)
        info = fixture_info(server, fx)
        if not args.full:
            info.pop("series")
        print(json.dumps(info, indent=2), flush=True)
        print(f"# {fx.source} in {time.monotonic() - t0:.1f} s; serving at {server.url}"
              + ("" if args.no_serve else " until Ctrl-C"), file=sys.stderr, flush=True)
        if args.no_serve:
            return 0
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while server.alive:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
