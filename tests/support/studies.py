"""Real COD studies on a :class:`~support.bucket.BucketServer`, written by the real writer
(``cloud-optimized-dicom``), with an on-disk cache of the writer's output.

* :func:`write_demo_studies` - real DICOM from pydicom's test files and ``pydicom-data``.
* :func:`write_synthetic_study` - N series x M copies of one real instance (for volume).

The writer is slow, so after a study is written every object under its
``<datastore>/studies/<study>/`` prefix is downloaded as stored (gzip ``metadata.json``
kept as gzip bytes) into ``<repo>/.cache/studies/<key>/`` and later calls upload those
objects through the JSON API instead of running the writer. A missing or broken cache
falls back to the writer. ``COD_TESTBED_CACHE=off`` disables the cache,
``COD_TESTBED_CACHE=<dir>`` moves it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from .bucket import BucketServer

__all__ = [
    "StudyFixture",
    "write_demo_studies",
    "write_synthetic_study",
    "demo_sources",
    "pydicom_data_dir",
    "CACHE_VERSION",
]

log = logging.getLogger(__name__)

#: Bump to invalidate every cached study (e.g. when the writer or the inputs change).
CACHE_VERSION = "cod-testbed-2/cloud-optimized-dicom-2.2.0"   # 2: series thumbnails

_REPO = Path(__file__).resolve().parents[2]


@dataclass
class StudyFixture:
    bucket: str
    datastore: str  # prefix inside the bucket, ends with "dicomweb"
    study_uid: str
    series: dict[str, list[str]]  # series UID -> SOP instance UIDs, as stored (metadata order)
    # extras (not needed by callers, handy in reports and assertions)
    total_dicom_bytes: int = 0  # sum of per-instance "size" in metadata.json
    total_tar_bytes: int = 0  # sum of the series .tar object sizes
    source: str = ""  # "writer" or "cache"
    seconds: float = 0.0  # time spent putting the study on the server

    @property
    def study_prefix(self) -> str:
        return f"{self.datastore}/studies/{self.study_uid}/"

    def series_prefix(self, series_uid: str) -> str:
        return f"{self.study_prefix}series/{series_uid}"

    def tar_name(self, series_uid: str) -> str:
        return f"{self.series_prefix(series_uid)}.tar"

    def metadata_name(self, series_uid: str) -> str:
        return f"{self.series_prefix(series_uid)}/metadata.json"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


# ---------------------------------------------------------------------------------------
# sources


def pydicom_data_dir() -> Path:
    """``data_store/data`` of the ``pydicom-data`` package (import name ``data_store``)."""
    import data_store  # the pydicom-data wheel; there is no module named pydicom_data

    return Path(data_store.__file__).resolve().parent / "data"


def _pydicom_test_files() -> Path:
    import pydicom

    return Path(pydicom.__file__).resolve().parent / "data" / "test_files"


# Study 2: larger real images from pydicom-data, grouped into series.
_DEMO2_SERIES = {
    "CR": ["RG1_UNCI.dcm", "RG3_UNCI.dcm"],
    "MR": ["MR2_UNCI.dcm", "emri_small.dcm"],
    "US": ["US1_UNCI.dcm"],
    "CT": ["693_UNCI.dcm"],
}


def demo_sources() -> dict:
    """Describe the demo inputs (used for the cache key)."""
    return {
        "study1": "pydicom/data/test_files/dicomdirtests/98892003",
        "study2": _DEMO2_SERIES,
    }


# ---------------------------------------------------------------------------------------
# writer


@contextlib.contextmanager
def _emulator_env(server: BucketServer):
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = server.url
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old


def _run_writer(
    server: BucketServer,
    bucket: str,
    datastore: str,
    study_uid: str,
    series_files: dict[str, list[Path]],
) -> None:
    """Write each series with the real writer: CODObject(mode="w"), append(compress=False)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from cloud_optimized_dicom.cod_object import CODObject
    from cloud_optimized_dicom.instance import Instance

    server.create_bucket(bucket)
    with _emulator_env(server), warnings.catch_warnings():
        # the writer uses deprecated google-cloud-storage calls (Blob.from_string)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        client = storage.Client(project="test", credentials=AnonymousCredentials())
        for series_uid, files in series_files.items():
            with CODObject(
                datastore_path=f"gs://{bucket}/{datastore}",
                client=client,
                study_uid=study_uid,
                series_uid=series_uid,
                mode="w",
            ) as cod:
                result = cod.append([Instance(dicom_uri=str(p)) for p in files], compress=False)
                # The writer's own series thumbnail (thumbnail.jpg for one frame, thumbnail.mp4 with
                # ffmpeg for more), uploaded beside the tar when the object closes.
                try:
                    cod.get_thumbnail(generate_if_missing=True)
                except Exception as e:  # noqa: BLE001 - optional: a series without one is normal
                    log.warning("no thumbnail for series %s: %s", series_uid, e)
            log.debug("writer result for %s: %s", series_uid, result)


def _resave(ds, path: Path) -> None:
    """Write with a 128-byte zero preamble (the writer rejects anything else)."""
    ds.preamble = b"\x00" * 128
    ds.save_as(path, enforce_file_format=True)


def _uid(*parts) -> str:
    """Deterministic UUID-derived UID (``2.25.<128-bit int>``) from ``parts``.
    (pydicom's ``generate_uid(prefix=None, entropy_srcs=...)`` ignores the entropy.)"""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


# ---------------------------------------------------------------------------------------
# reading back a study from the server


def _read_fixture(server: BucketServer, bucket: str, datastore: str, study_uid: str) -> StudyFixture:
    prefix = f"{datastore}/studies/{study_uid}/series/"
    items, prefixes = server.list_objects(bucket, prefix, delimiter="/")
    tars = {it["name"]: int(it["size"]) for it in items if it["name"].endswith(".tar")}
    series: dict[str, list[str]] = {}
    dicom_bytes = 0
    for p in sorted(prefixes):
        series_uid = p[len(prefix):].rstrip("/")
        try:
            data, _ = server.download(bucket, f"{p}metadata.json", accept_gzip=False)
        except RuntimeError:
            continue  # no metadata.json: not a finished series
        meta = json.loads(data)
        instances = meta["cod"]["instances"]
        series[series_uid] = list(instances)
        dicom_bytes += sum(int(v["size"]) for v in instances.values())
    return StudyFixture(
        bucket=bucket,
        datastore=datastore,
        study_uid=study_uid,
        series=series,
        total_dicom_bytes=dicom_bytes,
        total_tar_bytes=sum(tars.values()),
    )


def _listing_signature(server: BucketServer, bucket: str, prefix: str) -> dict[str, tuple]:
    items, _ = server.list_objects(bucket, prefix)
    return {
        it["name"]: (int(it["size"]), it.get("crc32c"), it.get("contentEncoding") or None)
        for it in items
    }


# ---------------------------------------------------------------------------------------
# cache


def _cache_root() -> Path | None:
    env = os.environ.get("COD_TESTBED_CACHE")
    if env and env.lower() in ("0", "off", "no", "false", "none"):
        return None
    return Path(env) if env else _REPO / ".cache" / "studies"


def _cache_key(kind: str, **params) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "kind": kind, **params}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


def _save_cache(server: BucketServer, fx: StudyFixture, key: str) -> None:
    root = _cache_root()
    if root is None:
        return
    final = root / key
    tmp = root / f".{key}.tmp-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "objects").mkdir(parents=True)
        items, _ = server.list_objects(fx.bucket, fx.study_prefix)
        objects = []
        for i, it in enumerate(items):
            fname = f"{i:06d}"
            headers = server.download_to(fx.bucket, it["name"], tmp / "objects" / fname, accept_gzip=True)
            size = (tmp / "objects" / fname).stat().st_size
            if size != int(it["size"]):
                raise RuntimeError(f"cache: {it['name']}: got {size} bytes, listing says {it['size']}")
            objects.append(
                {
                    "name": it["name"],
                    "file": fname,
                    "size": size,
                    "crc32c": it.get("crc32c"),
                    "content_type": it.get("contentType") or headers.get("content-type") or "application/octet-stream",
                    "content_encoding": it.get("contentEncoding") or None,
                }
            )
        fixture = asdict(fx)
        fixture.pop("source", None)
        fixture.pop("seconds", None)
        manifest = {"version": CACHE_VERSION, "key": key, "fixture": fixture, "objects": objects}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except Exception as e:  # the cache is an optimisation only
        log.warning("could not cache study %s: %s", fx.study_uid, e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_cache(server: BucketServer, bucket: str, datastore: str, key: str) -> StudyFixture | None:
    root = _cache_root()
    if root is None:
        return None
    d = root / key
    mf = d / "manifest.json"
    if not mf.is_file():
        return None
    fx = None
    try:
        manifest = json.loads(mf.read_text())
        if manifest.get("version") != CACHE_VERSION or manifest.get("key") != key:
            raise ValueError("version/key mismatch")
        fx = StudyFixture(**manifest["fixture"])
        if fx.bucket != bucket or fx.datastore != datastore:
            raise ValueError("bucket/datastore mismatch")
        objects = manifest["objects"]
        if not objects:
            raise ValueError("no objects")
        for o in objects:
            if not o["name"].startswith(fx.study_prefix):
                raise ValueError(f"object outside the study: {o['name']}")
            p = d / "objects" / o["file"]
            if p.stat().st_size != o["size"]:
                raise ValueError(f"size mismatch: {p}")
        server.create_bucket(bucket)
        for o in objects:
            p = d / "objects" / o["file"]
            data: bytes | Path = p.read_bytes() if o["size"] < (8 << 20) else p
            server.upload(bucket, o["name"], data, o["content_type"], o["content_encoding"])
        want = {o["name"]: (o["size"], o["crc32c"], o["content_encoding"]) for o in objects}
        got = _listing_signature(server, bucket, fx.study_prefix)
        if got != want:
            raise ValueError("listing after upload differs from the cached listing")
        return fx
    except Exception as e:
        log.warning("study cache %s unusable (%s); running the writer", d, e)
        if fx is not None:
            with contextlib.suppress(Exception):
                server.delete_prefix(bucket, fx.study_prefix)
        shutil.rmtree(d, ignore_errors=True)
        return None


def _cached_or_write(server: BucketServer, bucket: str, datastore: str, key: str, study_uid: str, build) -> StudyFixture:
    """``build(tmpdir) -> dict[series_uid, list[Path]]`` makes the writer's inputs."""
    t0 = time.monotonic()
    fx = _load_cache(server, bucket, datastore, key)
    if fx is not None:
        fx.source, fx.seconds = "cache", time.monotonic() - t0
        return fx
    with contextlib.suppress(Exception):
        server.delete_prefix(bucket, f"{datastore}/studies/{study_uid}/")
    with tempfile.TemporaryDirectory(prefix="cod-study-") as tmp:
        series_files = build(Path(tmp))
        _run_writer(server, bucket, datastore, study_uid, series_files)
    fx = _read_fixture(server, bucket, datastore, study_uid)
    expected = {s: len(f) for s, f in series_files.items()}
    got = {s: len(v) for s, v in fx.series.items()}
    if got != expected:
        raise RuntimeError(f"writer stored {got}, expected {expected}")
    _save_cache(server, fx, key)
    fx.source, fx.seconds = "writer", time.monotonic() - t0
    return fx


# ---------------------------------------------------------------------------------------
# demo studies


def _demo1_inputs(tmp: Path) -> tuple[str, dict[str, list[Path]]]:
    """pydicom's dicomdirtests/98892003: one MR study, 3 series (7, 3, 1 instances)."""
    import pydicom

    src = _pydicom_test_files() / "dicomdirtests" / "98892003"
    by_study: dict[str, dict[str, list[Path]]] = {}
    for p in sorted(src.rglob("*")):
        if not p.is_file():
            continue
        ds = pydicom.dcmread(p)
        by_study.setdefault(ds.StudyInstanceUID, {}).setdefault(ds.SeriesInstanceUID, []).append(p)
    # the one study of that patient folder with 3 series (the folder also holds stray files)
    study_uid, series = max(by_study.items(), key=lambda kv: sum(len(v) for v in kv[1].values()))
    out: dict[str, list[Path]] = {}
    for series_uid, files in series.items():
        for p in files:
            ds = pydicom.dcmread(p)
            dest = tmp / "s1" / series_uid / f"{ds.SOPInstanceUID}.dcm"
            dest.parent.mkdir(parents=True, exist_ok=True)
            _resave(ds, dest)  # regular file, zero preamble
            out.setdefault(series_uid, []).append(dest)
    return study_uid, out


_DEMO2_STUDY = _uid("cod-testbed", "demo2", "study")


def _demo2_inputs(tmp: Path) -> dict[str, list[Path]]:
    """Larger real images (pydicom-data) put in one study with new Study/Series UIDs."""
    import pydicom

    data = pydicom_data_dir()
    out: dict[str, list[Path]] = {}
    for n, (label, names) in enumerate(_DEMO2_SERIES.items(), start=1):
        series_uid = _uid("cod-testbed", "demo2", "series", label)
        for i, name in enumerate(names, start=1):
            ds = pydicom.dcmread(data / name)
            ds.StudyInstanceUID = _DEMO2_STUDY
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = n
            ds.InstanceNumber = i
            ds.SeriesDescription = f"{label} demo series ({', '.join(names)})"
            ds.StudyDescription = "COD demo study from pydicom-data"
            ds.PatientID = "COD-DEMO-2"
            ds.PatientName = "Demo^PydicomData"
            ds.StudyID = "2"
            dest = tmp / "s2" / series_uid / f"{ds.SOPInstanceUID}.dcm"
            dest.parent.mkdir(parents=True, exist_ok=True)
            _resave(ds, dest)
            out.setdefault(series_uid, []).append(dest)
    return out


def write_demo_studies(
    server: BucketServer, bucket: str = "cod-demo", datastore: str = "demo/dicomweb"
) -> list[StudyFixture]:
    """Write (or restore from cache) the two demo studies; returns their fixtures.

    1. pydicom's real MR study ``dicomdirtests/98892003`` (3 series: 7, 3, 1 instances).
    2. pydicom-data images in 4 series: CR (RG1, RG3), MR (MR2 + 10-frame emri_small),
       US (US1), CT (693).
    """
    server.create_bucket(bucket)
    fixtures = []

    import pydicom

    # study 1 keeps its real UIDs; find them without the writer (cheap)
    with tempfile.TemporaryDirectory(prefix="cod-demo1-") as tmp:
        study1_uid, _ = _demo1_inputs(Path(tmp))
    key1 = _cache_key("demo1", bucket=bucket, datastore=datastore, src=demo_sources()["study1"],
                      pydicom=pydicom.__version__)
    fixtures.append(
        _cached_or_write(server, bucket, datastore, key1, study1_uid, lambda t: _demo1_inputs(t)[1])
    )
    key2 = _cache_key("demo2", bucket=bucket, datastore=datastore, src=demo_sources()["study2"],
                      pydicom=pydicom.__version__)
    fixtures.append(_cached_or_write(server, bucket, datastore, key2, _DEMO2_STUDY, _demo2_inputs))
    return fixtures


# ---------------------------------------------------------------------------------------
# synthetic studies


def write_synthetic_study(
    server: BucketServer,
    bucket: str,
    datastore: str,
    n_series: int,
    n_instances: int,
    source: Path | None = None,
) -> StudyFixture:
    """``n_series`` x ``n_instances`` copies of one real instance (default pydicom-data
    ``693_UNCI.dcm``, a 512x512 CT, ~0.5 MB) with new Study/Series/SOP UIDs and
    InstanceNumber, ingested with ``compress=False``. UIDs are deterministic in the
    parameters, so a cached study has the same UIDs as a freshly written one.

    Keep each series at or below ~500 MB (the server buffers uploads: ~3 GB peak)."""
    import pydicom

    source = Path(source) if source is not None else pydicom_data_dir() / "693_UNCI.dcm"
    st = source.stat()
    params = dict(bucket=bucket, datastore=datastore, n_series=n_series, n_instances=n_instances,
                  source=str(source.resolve()), source_size=st.st_size, source_mtime=int(st.st_mtime))
    key = _cache_key(f"synthetic-{n_series}x{n_instances}", **params)
    seed = f"cod-testbed/synthetic/{n_series}x{n_instances}/{source.name}/{st.st_size}"
    study_uid = _uid(seed, "study")
    server.create_bucket(bucket)

    def build(tmp: Path) -> dict[str, list[Path]]:
        base = pydicom.dcmread(source)
        out: dict[str, list[Path]] = {}
        for s in range(n_series):
            series_uid = _uid(seed, "series", s)
            d = tmp / series_uid
            d.mkdir(parents=True)
            files = out.setdefault(series_uid, [])
            for i in range(n_instances):
                ds = base  # mutate in place: only UIDs and numbers change
                sop = _uid(seed, "sop", s, i)
                ds.StudyInstanceUID = study_uid
                ds.SeriesInstanceUID = series_uid
                ds.SOPInstanceUID = sop
                ds.file_meta.MediaStorageSOPInstanceUID = sop
                ds.SeriesNumber = s + 1
                ds.InstanceNumber = i + 1
                ds.SeriesDescription = f"synthetic series {s + 1}/{n_series}"
                ds.StudyDescription = f"COD synthetic study {n_series}x{n_instances}"
                ds.PatientID = "COD-SYNTH"
                dest = d / f"{sop}.dcm"
                _resave(ds, dest)
                files.append(dest)
        return out

    return _cached_or_write(server, bucket, datastore, key, study_uid, build)
