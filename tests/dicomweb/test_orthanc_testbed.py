"""The Orthanc test bed answers DICOMweb as a download source will ask: QIDO-RS lists what
was uploaded, and a WADO-RS series comes back as multipart/related that MultipartReader
splits into files byte-equal to what Orthanc stores."""

from __future__ import annotations

import json
import os

import pytest

from cod_retrieve.multipart import (BodyEnd, MultipartReader, PartData, PartEnd, PartStart,
                                    boundary_from_content_type, parse_content_type)

SERIES_UID, SOP_UID, SERIES_NUMBER, RELATED_INSTANCES = "0020000E", "00080018", "00200011", "00201209"

# What Orthanc 1.10.1 with the DICOMweb plugin 1.7 (Debian bookworm) does with the Accept
# header of a WADO-RS retrieve (the samples are JPEG 2000 lossless, 1.2.840.10008.1.2.4.90):
#   * `multipart/related; type="application/dicom"; transfer-syntax=*` (quoted or not):
#     200, the files exactly as stored; each part has Content-Type: application/dicom,
#     Content-Length and MIME-Version; the response Content-Type does not echo the
#     transfer syntax: `multipart/related; type="application/dicom"; boundary=<70 chars,
#     unquoted>`; no Content-Length on the body (it ends when the connection closes).
#   * the files' own transfer syntax (`transfer-syntax=1.2.840.10008.1.2.4.90`): the same.
#   * no transfer-syntax, `*/*`, no Accept header, or `transfer-syntax=1.2.840.10008.1.2.1`:
#     the plugin transcodes to Explicit VR Little Endian, the DICOMweb default, and this
#     build cannot decode JPEG 2000: 500 ("Cannot transcode image" in Orthanc's log).
#     So a download source must send `transfer-syntax=*`.
#   * `application/dicom` alone (single part), or another multipart type: 400.
ACCEPT_AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def qido(study, path: str) -> list[dict]:
    return study.server.get_json(f"/dicom-web/{path}", {"Accept": "application/dicom+json"})


def values(answer: list[dict], tag: str) -> list:
    return [item[tag]["Value"][0] for item in answer]


def test_qido_lists_the_uploaded_series_and_instances(orthanc_study):
    st = orthanc_study
    assert len(st.series) == 2
    series = qido(st, f"studies/{st.study_uid}/series")
    assert sorted(values(series, SERIES_UID)) == sorted(st.series)
    assert sorted(values(series, SERIES_NUMBER)) == [1, 2]
    assert values(series, RELATED_INSTANCES) == [3, 3]
    for series_uid, instances in st.series.items():
        listed = qido(st, f"studies/{st.study_uid}/series/{series_uid}/instances")
        assert sorted(values(listed, SOP_UID)) == sorted(i.sop_uid for i in instances)
    everything = qido(st, f"studies/{st.study_uid}/instances")
    assert sorted(values(everything, SOP_UID)) == sorted(i.sop_uid for i in st.instances)


def test_qido_limit_and_offset(orthanc_study):
    """Recorded in support/orthanc.py's docstring: windows of one stable order (the upload
    order), offset past the end is [], limit=0 is no limit, negative 500, non-number 400."""
    st = orthanc_study
    path = f"studies/{st.study_uid}/instances"
    full = values(qido(st, path), SOP_UID)
    assert full == [i.sop_uid for i in st.instances]            # upload order
    for size in (1, 2, 4):
        pages = [values(qido(st, f"{path}?limit={size}&offset={at}"), SOP_UID)
                 for at in range(0, len(full), size)]
        assert all(len(p) == size for p in pages[:-1]) and sum(pages, []) == full
    assert qido(st, f"{path}?offset={len(full)}") == []
    assert qido(st, f"{path}?offset=100&limit=2") == []
    assert values(qido(st, f"{path}?limit=0"), SOP_UID) == full
    assert values(qido(st, f"{path}?offset=4"), SOP_UID) == full[4:]
    statuses = {q: st.server.request("GET", f"/dicom-web/{path}?{q}")[0]
                for q in ("limit=-1", "offset=-1", "limit=abc")}
    assert statuses == {"limit=-1": 500, "offset=-1": 500, "limit=abc": 400}
    series = qido(st, f"studies/{st.study_uid}/series?limit=1&offset=1")
    assert values(series, SERIES_UID) == [list(st.series)[1]]


def wado_parts(server, path: str, accept: str | None, chunk: int = 4096) -> tuple[int, str, list]:
    """GET a WADO-RS resource and split the body as it streams in, `chunk` bytes at a time."""
    conn = server.connect()
    try:
        conn.request("GET", path, headers={"Accept": accept} if accept else {})
        resp = conn.getresponse()
        content_type = resp.getheader("Content-Type", "")
        if resp.status != 200:
            resp.read()
            return resp.status, content_type, []
        reader = MultipartReader(boundary_from_content_type(content_type))
        parts: list[list] = []
        events = []
        while data := resp.read(chunk):
            events += [e if not isinstance(e, PartData) else bytes(e.data) for e in reader.feed(data)]
        events += reader.end()
        for ev in events:
            if isinstance(ev, PartStart):
                parts.append([ev.headers, ev.content_length, bytearray()])
            elif isinstance(ev, bytes):
                parts[-1][2] += ev
        assert isinstance(events[-1], BodyEnd)
        assert sum(isinstance(e, PartEnd) for e in events) == len(parts)
        return resp.status, content_type, [(h, n, bytes(d)) for h, n, d in parts]
    finally:
        conn.close()


@pytest.mark.parametrize("accept", [ACCEPT_AS_STORED,
                                    "multipart/related; type=application/dicom; transfer-syntax=*",
                                    'multipart/related; type="application/dicom"; '
                                    "transfer-syntax=1.2.840.10008.1.2.4.90"])
def test_wado_rs_series_splits_into_the_stored_files(orthanc_study, accept):
    st = orthanc_study
    for series_uid, instances in st.series.items():
        status, content_type, parts = wado_parts(st.server, f"/dicom-web/studies/{st.study_uid}/series/{series_uid}",
                                                 accept, chunk=1500)
        assert status == 200, content_type
        media, params = parse_content_type(content_type)
        assert (media, params["type"]) == ("multipart/related", "application/dicom")
        stored = sorted(st.server.instance_file(i.orthanc_id) for i in instances)
        assert stored == sorted(i.data for i in instances)          # Orthanc keeps files as sent
        assert sorted(d for _, _, d in parts) == stored
        for headers, length, data in parts:
            assert headers["content-type"] == "application/dicom" and length == len(data)


def test_wado_rs_study_holds_both_series(orthanc_study):
    st = orthanc_study
    status, _, parts = wado_parts(st.server, f"/dicom-web/studies/{st.study_uid}", ACCEPT_AS_STORED, chunk=65536)
    assert status == 200
    assert sorted(d for _, _, d in parts) == sorted(i.data for i in st.instances)


def test_wado_rs_without_transfer_syntax_star(orthanc_study):
    """Orthanc 1.10 / DICOMweb 1.7 transcode to Explicit VR Little Endian by default and
    cannot for JPEG 2000: 500. A single-part or non-DICOM Accept is 400."""
    st = orthanc_study
    version = st.server.get_json("/system")["Version"]
    plugin = st.server.get_json("/plugins/dicom-web")["Version"]
    series = list(st.series)[0]
    path = f"/dicom-web/studies/{st.study_uid}/series/{series}"
    got = {accept: wado_parts(st.server, path, accept)[0]
           for accept in (None, "*/*", 'multipart/related; type="application/dicom"',
                          'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1',
                          "application/dicom", 'multipart/related; type="application/octet-stream"')}
    if (version, plugin) != ("1.10.1", "1.7"):
        pytest.skip(f"recorded for Orthanc 1.10.1 / DICOMweb 1.7; this is {version} / {plugin}: {got}")
    assert got == {None: 500, "*/*": 500, 'multipart/related; type="application/dicom"': 500,
                   'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1': 500,
                   "application/dicom": 400, 'multipart/related; type="application/octet-stream"': 400}


def test_testbed_is_private(orthanc):
    """Our own configuration: no DICOM port, DICOMweb at /dicom-web/, storage under pytest's tmp;
    its network a namespace of its own (reached through the loopback relay) where allowed."""
    system = orthanc.get_json("/system")
    inner = orthanc.relay.target_port if orthanc.relay is not None else orthanc.port
    assert system["HttpPort"] == inner and system["Name"] == "cod-retrieve-test"
    if orthanc.relay is not None:
        assert os.stat(f"/proc/{orthanc._proc.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
    config = json.loads((orthanc.root / "orthanc.json").read_text())
    assert config["DicomServerEnabled"] is False and config["RemoteAccessAllowed"] is False
    assert str(orthanc.root) in config["StorageDirectory"]
    assert orthanc.root != orthanc.root.parent and "pytest" in str(orthanc.root)
