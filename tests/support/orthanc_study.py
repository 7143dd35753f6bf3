"""Fixtures: a session-wide Orthanc (DICOMweb) holding one real study of two series.

Imported by the conftest of each folder whose tests use them (tests/dicomweb, tests/e2e).

Series 1 is the sample series from /work/shared/samples (three CT instances, JPEG 2000
lossless). Series 2 is made from the same files with pydicom: new SeriesInstanceUID,
SOPInstanceUIDs (and MediaStorageSOPInstanceUID), SeriesNumber 2; the pixel data is
copied as is, never decoded.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.orthanc import OrthancServer, find_orthanc, start_orthanc, upload_instances

SAMPLES = Path("/work/shared/samples")
SAMPLE_TAR = SAMPLES / "series-1.2.826.0.1.3680043.8.498.11.tar"


@dataclass(frozen=True)
class Instance:
    sop_uid: str
    orthanc_id: str
    data: bytes


@dataclass
class Study:
    server: OrthancServer
    study_uid: str
    series: dict[str, list[Instance]] = field(default_factory=dict)   # in upload order

    @property
    def instances(self) -> list[Instance]:
        return [i for insts in self.series.values() for i in insts]


def sample_files() -> list[bytes]:
    with tarfile.open(SAMPLE_TAR) as tf:
        members = sorted((m for m in tf.getmembers() if m.isfile() and m.name.endswith(".dcm")),
                         key=lambda m: m.name)
        return [tf.extractfile(m).read() for m in members]


def second_series(files: list[bytes]) -> tuple[str, list[tuple[str, bytes]]]:
    """The same instances as a second series of the same study: (series UID, [(SOP UID, bytes)])."""
    import pydicom
    from pydicom.uid import generate_uid

    first = pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True)
    series_uid = generate_uid(entropy_srcs=["cod-retrieve test series 2", first.SeriesInstanceUID])
    out = []
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        sop = generate_uid(entropy_srcs=["cod-retrieve test series 2", ds.SOPInstanceUID])
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SeriesNumber = 2
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append((sop, buf.getvalue()))
    return series_uid, out


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> OrthancServer:
    if find_orthanc() is None:
        pytest.skip("Orthanc and its DICOMweb plugin are not installed (build.py's APT_PACKAGES lists them)")
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def orthanc_study(orthanc) -> Study:
    """The sample series and its pydicom-made twin, uploaded through `POST /instances`."""
    import pydicom

    files = sample_files()
    heads = [pydicom.dcmread(io.BytesIO(d), stop_before_pixels=True) for d in files]
    study = Study(orthanc, heads[0].StudyInstanceUID)
    ids = upload_instances(orthanc, files)
    study.series[heads[0].SeriesInstanceUID] = [
        Instance(h.SOPInstanceUID, i, d) for h, i, d in zip(heads, ids, files)]
    series_uid, made = second_series(files)
    # Uploaded in descending SOP UID order, so that answers in upload order and answers
    # sorted by UID can be told apart.
    made.sort(key=lambda m: [int(x) for x in m[0].split(".")], reverse=True)
    ids = upload_instances(orthanc, [d for _, d in made])
    study.series[series_uid] = [Instance(sop, i, d) for (sop, d), i in zip(made, ids)]
    return study


@pytest.fixture
def own_orthanc_study(tmp_path_factory) -> Study:
    """The sample series alone, in an Orthanc of the test's own (for tests that change
    what the server holds, so the shared one keeps its upload order)."""
    import pydicom

    if find_orthanc() is None:
        pytest.skip("Orthanc and its DICOMweb plugin are not installed (build.py's APT_PACKAGES lists them)")
    server = start_orthanc(tmp_path_factory.mktemp("orthanc-own"))
    try:
        files = sample_files()
        heads = [pydicom.dcmread(io.BytesIO(d), stop_before_pixels=True) for d in files]
        study = Study(server, heads[0].StudyInstanceUID)
        ids = upload_instances(server, files)
        study.series[heads[0].SeriesInstanceUID] = [Instance(h.SOPInstanceUID, i, d) for h, i, d in zip(heads, ids, files)]
        yield study
    finally:
        server.stop()
