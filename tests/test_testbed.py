"""Fast checks that the test bed is real: a GCS JSON API server with COD data from the
real writer."""

from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile
import urllib.parse

import crc32c
import pydicom
import pytest

from support.bucket import start_bucket_server
from support.studies import write_synthetic_study


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _crc32c_b64(data: bytes) -> str:
    return base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()


def test_demo_studies_shape(demo_studies):
    assert len(demo_studies) >= 2
    mr = demo_studies[0]
    assert mr.datastore.endswith("dicomweb")
    assert sorted(len(v) for v in mr.series.values()) == [1, 3, 7]
    big = demo_studies[1]
    assert len(big.series) >= 2
    assert big.total_dicom_bytes > 10_000_000


def test_listing_prefixes_and_paging(bucket_server, demo_studies):
    fx = demo_studies[1]
    prefix = f"{fx.study_prefix}series/"
    base = f"/storage/v1/b/{fx.bucket}/o?prefix={_q(prefix)}&delimiter=/"
    status, _, body = bucket_server.request("GET", base)
    assert status == 200
    page = json.loads(body)
    assert "nextPageToken" not in page
    assert sorted(page["prefixes"]) == sorted(f"{prefix}{s}/" for s in fx.series)
    assert sorted(i["name"] for i in page["items"]) == sorted(f"{prefix}{s}.tar" for s in fx.series)

    # small pages: follow nextPageToken
    names, prefixes, token, pages = [], set(), None, 0
    while True:
        url = base + "&maxResults=1" + (f"&pageToken={_q(token)}" if token else "")
        status, _, body = bucket_server.request("GET", url)
        assert status == 200
        page = json.loads(body)
        pages += 1
        names += [i["name"] for i in page.get("items", [])]
        prefixes |= set(page.get("prefixes", []))
        token = page.get("nextPageToken")
        if not token:
            break
    assert pages == len(fx.series)
    assert sorted(names) == sorted(f"{prefix}{s}.tar" for s in fx.series)
    assert prefixes == {f"{prefix}{s}/" for s in fx.series}


def test_metadata_gzip_transcoding(bucket_server, demo_studies):
    fx = demo_studies[0]
    series_uid = next(iter(fx.series))
    path = f"/storage/v1/b/{fx.bucket}/o/{_q(fx.metadata_name(series_uid))}?alt=media"
    st, h, gz = bucket_server.request("GET", path, headers={"Accept-Encoding": "gzip"})
    assert st == 200 and h.get("content-encoding") == "gzip" and gz[:2] == b"\x1f\x8b"
    st, h, plain = bucket_server.request("GET", path)
    assert st == 200 and "content-encoding" not in h and plain[:1] == b"{"
    assert gzip.decompress(gz) == plain
    meta = json.loads(plain)
    assert meta["series_uid"] == series_uid
    assert list(meta["cod"]["instances"]) == fx.series[series_uid]


def test_tar_range_and_crc32c(bucket_server, demo_studies):
    for fx in demo_studies:
        for series_uid, sops in fx.series.items():
            meta = json.loads(bucket_server.download(fx.bucket, fx.metadata_name(series_uid), accept_gzip=False)[0])
            tar_url = f"/{fx.bucket}/{fx.tar_name(series_uid)}"  # path style
            st, h, tar_bytes = bucket_server.request("GET", tar_url)
            assert st == 200 and int(h["content-length"]) == len(tar_bytes)
            members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(tar_bytes))}
            for sop in sops:
                inst = meta["cod"]["instances"][sop]
                start, end = inst["headers"]["start_byte"], inst["headers"]["end_byte"]
                assert end - start == inst["size"]
                assert (inst.get("url") or inst["uri"]).endswith(f".tar://instances/{sop}.dcm")
                m = members[f"instances/{sop}.dcm"]
                assert (m.offset_data, m.size) == (start, inst["size"])
                st, h, part = bucket_server.request("GET", tar_url, headers={"Range": f"bytes={start}-{end - 1}"})
                assert st == 206
                assert h["content-range"] == f"bytes {start}-{end - 1}/{len(tar_bytes)}"
                assert part == tar_bytes[start:end]
                assert _crc32c_b64(part) == inst["crc32c"]
                ds = pydicom.dcmread(io.BytesIO(part), stop_before_pixels=True)
                assert ds.SOPInstanceUID == sop and ds.SeriesInstanceUID == series_uid


def test_synthetic_cache_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("COD_TESTBED_CACHE", str(tmp_path / "cache"))
    with start_bucket_server() as server:
        first = write_synthetic_study(server, "synth-a", "x/dicomweb", 2, 3)
        assert first.source == "writer"
        assert [len(v) for v in first.series.values()] == [3, 3]
    with start_bucket_server() as server:
        again = write_synthetic_study(server, "synth-a", "x/dicomweb", 2, 3)
        assert again.source == "cache"
        assert (again.study_uid, again.series) == (first.study_uid, first.series)
        st, h, _ = server.request(
            "GET", f"/storage/v1/b/synth-a/o/{_q(again.metadata_name(next(iter(again.series))))}?alt=media",
            headers={"Accept-Encoding": "gzip"},
        )
        assert st == 200 and h.get("content-encoding") == "gzip"
    # a broken cache falls back to the writer
    (cache_dir,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    victim = max((cache_dir / "objects").iterdir(), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[:100])
    with start_bucket_server() as server:
        third = write_synthetic_study(server, "synth-a", "x/dicomweb", 2, 3)
        assert third.source == "writer"
        assert (third.study_uid, third.series) == (first.study_uid, first.series)


def test_server_stops(tmp_path):
    server = start_bucket_server(tmp_path)
    pid = server._proc.pid
    server.stop()
    server.stop()  # idempotent
    assert server._proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)
