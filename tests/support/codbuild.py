"""Builders of COD series from real DICOM: re-saved pydicom test files, tars
with the byte range of every member, and hostile series published on the real
bucket server. Shared by the CPython and the browser tests."""

from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile
import uuid

import crc32c as _crc32c


def uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def crc_b64(data: bytes) -> str:
    return base64.b64encode(_crc32c.crc32c(data).to_bytes(4, "big")).decode()


def dicom_bytes(sop_uid: str, source: str = "CT_small.dcm", study: str | None = None,
                series: str | None = None) -> bytes:
    """A real DICOM file from pydicom's test files, re-saved with new UIDs and a zero preamble."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file(source))
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    if study:
        ds.StudyInstanceUID = study
    if series:
        ds.SeriesInstanceUID = series
    ds.preamble = b"\x00" * 128
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def build_tar(members: list[tuple], fmt=tarfile.PAX_FORMAT,
              strip_record_padding: bool = False) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """``members``: (name, data) for files or a TarInfo (for links/dirs).
    Returns the tar bytes and {name: (start_byte, end_byte)} of each file's data.
    ``strip_record_padding`` cuts the zero padding to 10240 after the two end blocks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                name, data = m
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    ranges = {}
    end = 0
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        for ti in tf.getmembers():
            if ti.isfile():
                ranges[ti.name] = (ti.offset_data, ti.offset_data + ti.size)
            size = ti.size if ti.isfile() else 0
            end = ti.offset_data + -(-size // 512) * 512
    if strip_record_padding:
        assert raw[end:end + 1024] == bytes(1024) and not raw[end:].strip(b"\0")
        raw = raw[:end + 1024]
    return raw, ranges


def publish_series(server, bucket: str, datastore: str, study: str, series: str, tar: bytes | None, meta) -> None:
    """Upload a series through the API: its tar and its gzip metadata.json."""
    server.create_bucket(bucket)
    base = f"{datastore}/studies/{study}/series/{series}"
    if tar is not None:
        server.upload(bucket, f"{base}.tar", tar, "application/x-tar")
    if meta is not None:
        raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
        server.upload(bucket, f"{base}/metadata.json", gzip.compress(raw), "application/json", "gzip")


def instance_meta(bucket: str, datastore: str, study: str, series: str, member: str,
                  start: int, end: int, data: bytes) -> dict:
    """One cod.instances entry, honest about range, size and CRC32C."""
    return {"uri": f"gs://{bucket}/{datastore}/studies/{study}/series/{series}.tar://{member}",
            "headers": {"start_byte": start, "end_byte": end}, "size": end - start,
            "crc32c": crc_b64(data), "metadata": {}, "version": "1.0"}


def hostile_listed_series(server, bucket: str, datastore: str, evil: str) -> tuple[str, str, str, str, dict]:
    """A series whose metadata lists a hostile member name with a valid SOP UID and the right
    range, size and CRC32C, beside an honest member. Returns study, series, the hostile SOP,
    the honest SOP and {sop: bytes}."""
    study, series, sop, good = uid(), uid(), uid(), uid()
    datas = {good: dicom_bytes(good), sop: dicom_bytes(sop)}
    tar, ranges = build_tar([(f"instances/{good}.dcm", datas[good]), (evil, datas[sop])])
    meta = {"study_uid": study, "series_uid": series, "cod": {"instances": {
        good: instance_meta(bucket, datastore, study, series, f"instances/{good}.dcm",
                            *ranges[f"instances/{good}.dcm"], datas[good]),
        # (a tar name stops at a NUL: the metadata still says the whole name)
        sop: instance_meta(bucket, datastore, study, series, evil, *ranges[evil.split("\0")[0]], datas[sop])}}}
    publish_series(server, bucket, datastore, study, series, tar, meta)
    return study, series, sop, good, datas
