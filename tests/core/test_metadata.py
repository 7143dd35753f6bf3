"""metadata.json parsing against the real writer sample, and the ways it can lie."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import tracemalloc
import zlib

import pytest
from backports import zstd

from cod_retrieve import MetadataError
from cod_retrieve.crc32c import decode_crc32c
from cod_retrieve.metadata import (MAX_METADATA_BYTES, Instance, SeriesMetadata, decode_body,
                                   decode_dicom_json, parse_series_metadata)

from core_helpers import SAMPLE_META, SAMPLE_SERIES, SAMPLE_STUDY

RAW = SAMPLE_META.read_bytes()
DOC = json.loads(RAW)
SOPS = [f"{SAMPLE_SERIES}.{n}" for n in (1, 2, 3)]


def _parse(doc_or_raw, study=SAMPLE_STUDY, series=SAMPLE_SERIES):
    raw = doc_or_raw if isinstance(doc_or_raw, bytes) else json.dumps(doc_or_raw).encode()
    return parse_series_metadata(raw, study, series, "metadata.json of test")


def _check_sample(md: SeriesMetadata):
    assert md.study_uid == SAMPLE_STUDY and md.series_uid == SAMPLE_SERIES
    assert [i.sop_uid for i in md.instances] == SOPS
    assert [i.start_byte for i in md.instances] == [1536, 23552, 45568]
    assert [i.end_byte for i in md.instances] == [21570, 43586, 65602]
    assert all(i.size == 20034 for i in md.instances)
    assert md.size == 3 * 20034
    assert [i.crc32c for i in md.instances] == [
        int.from_bytes(base64.b64decode(c), "big") for c in ("V7nNRA==", "1rD/Nw==", "VRPDSQ==")]
    assert [i.member for i in md.instances] == [f"instances/{s}.dcm" for s in SOPS]
    assert md.instances[0].path == (SAMPLE_STUDY, SAMPLE_SERIES, "instances", f"{SOPS[0]}.dcm")
    assert md.instances[0].log_key == f"{SAMPLE_STUDY}/{SAMPLE_SERIES}/{SOPS[0]}"
    assert set(md.by_member()) == {f"instances/{s}.dcm" for s in SOPS}
    assert md.instances[0].version == "2.0"


def test_sample_plain():
    _check_sample(_parse(RAW))


def test_sample_gzip():
    md = _parse(gzip.compress(RAW))
    _check_sample(md)
    assert md.raw_size == len(RAW)


def test_sample_order_follows_tar_not_json():
    doc = copy.deepcopy(DOC)
    doc["cod"]["instances"] = dict(reversed(list(doc["cod"]["instances"].items())))
    assert [i.sop_uid for i in _parse(doc).instances] == SOPS


def test_v2_dicom_json_and_attributes():
    md = _parse(RAW)
    ds = decode_dicom_json(md.instances[0])
    assert ds["00080018"]["Value"] == [SOPS[0]]
    assert ds["00080060"]["Value"] == ["CT"]
    attrs = md.attributes()
    assert attrs["Modality"] == "CT" and attrs["PatientID"] == "1CT1" and attrs["SeriesNumber"] == "1"
    assert "SeriesDescription" not in attrs   # not in the sample


def test_v1_dicom_json_object_and_attributes():
    doc = copy.deepcopy(DOC)
    for sop, entry in doc["cod"]["instances"].items():
        entry["metadata"] = {"00080060": {"vr": "CS", "Value": ["MR"]},
                             "0008103E": {"vr": "LO", "Value": ["T1 axial"]},
                             "00080018": {"vr": "UI", "Value": [sop]}}
        entry["version"] = "1.0"
    md = _parse(doc)
    assert decode_dicom_json(md.instances[1])["00080018"]["Value"] == [SOPS[1]]
    assert md.attributes() == {"Modality": "MR", "SeriesDescription": "T1 axial"}


def test_v2_own_zstd_round_trip():
    ds = {"00080060": {"vr": "CS", "Value": ["US"]}, "00100020": {"vr": "LO", "Value": ["P-7"]}}
    packed = base64.b64encode(zstd.compress(json.dumps(ds).encode())).decode()
    doc = copy.deepcopy(DOC)
    for entry in doc["cod"]["instances"].values():
        entry["metadata"] = packed
    md = _parse(doc)
    assert decode_dicom_json(md.instances[2]) == ds
    assert md.attributes() == {"Modality": "US", "PatientID": "P-7"}


def test_bad_dicom_json_is_named():
    inst = Instance(SAMPLE_STUDY, SAMPLE_SERIES, SOPS[0], "m", 0, 1, 0, "bm90IHpzdGQ=")
    with pytest.raises(MetadataError, match=f"instance {SOPS[0]}: DICOM JSON does not decode"):
        decode_dicom_json(inst)
    with pytest.raises(MetadataError, match="no DICOM JSON"):
        decode_dicom_json(Instance(SAMPLE_STUDY, SAMPLE_SERIES, SOPS[0], "m", 0, 1, 0, None))
    md = SeriesMetadata(SAMPLE_STUDY, SAMPLE_SERIES, [inst])
    assert md.attributes() == {}


def test_url_instead_of_uri():
    doc = copy.deepcopy(DOC)
    for entry in doc["cod"]["instances"].values():
        entry["url"] = entry.pop("uri")
    _check_sample(_parse(doc))


def test_deid_uids_accepted():
    doc = copy.deepcopy(DOC)
    doc["deid_study_uid"], doc["deid_series_uid"] = "2.25.1", "2.25.2"
    del doc["study_uid"], doc["series_uid"]
    assert len(_parse(doc, "2.25.1", "2.25.2").instances) == 3


# -- errors -----------------------------------------------------------------------------

def test_not_json():
    with pytest.raises(MetadataError, match="metadata.json of test is not JSON"):
        _parse(b"<html>Not Found</html>")
    with pytest.raises(MetadataError, match="not JSON"):
        _parse(gzip.compress(b"\xff\xfe garbage"))


@pytest.mark.parametrize("body", [b"[]", b"42", b'"x"', b"null"])
def test_not_an_object(body):
    with pytest.raises(MetadataError, match="not a JSON object"):
        _parse(body)


def test_no_instances():
    with pytest.raises(MetadataError, match="no cod.instances"):
        _parse({"study_uid": SAMPLE_STUDY, "series_uid": SAMPLE_SERIES})
    with pytest.raises(MetadataError, match="no cod.instances"):
        _parse({"cod": {"instances": []}})


def _gzip_zeros(total: int) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, 31)   # level 1: fast to make
    chunk = bytes(1 << 20)
    parts = [c.compress(chunk) for _ in range(total >> 20)]
    parts.append(c.flush())
    return b"".join(parts)


def test_gzip_bomb_refused_with_bounded_memory():
    bomb = _gzip_zeros(300 << 20)
    assert len(bomb) < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(MetadataError, match="gzip bomb"):
            _parse(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Bounded by the limit, not by the bomb. (Observed: about 2x the limit, because zlib
    # builds the final bytes object from its output blocks: ~512 MB peak for a 300 MB bomb.)
    assert peak < 2 * MAX_METADATA_BYTES + (64 << 20)


def test_gzip_bomb_with_small_limit_and_oversized_plain_body():
    with pytest.raises(MetadataError, match="inflates past 1000 bytes"):
        decode_body(gzip.compress(bytes(5000)), "m", limit=1000)
    assert decode_body(gzip.compress(bytes(1000)), "m", limit=1000) == bytes(1000)
    with pytest.raises(MetadataError, match="more than the 10 allowed"):
        decode_body(b"x" * 11, "m", limit=10)
    with pytest.raises(MetadataError, match="does not inflate"):
        decode_body(b"\x1f\x8b" + b"\x00" * 20, "m")


def _mutate(fn):
    doc = copy.deepcopy(DOC)
    fn(doc["cod"]["instances"])
    return doc


@pytest.mark.parametrize("key", ["../../etc/passwd", "1.2.3/4", "abc", "1.2.3.", "", "1" * 65])
def test_non_uid_instance_key(key):
    def fn(inst):
        inst[key] = inst.pop(SOPS[0])
    with pytest.raises(MetadataError, match="instance key .* is not a valid DICOM UID"):
        _parse(_mutate(fn))


def test_instance_key_with_trailing_newline():
    def fn(inst):
        inst[SOPS[0] + "\n"] = inst.pop(SOPS[0])
    with pytest.raises(MetadataError, match="not a valid DICOM UID"):
        _parse(_mutate(fn))


def test_overlapping_ranges():
    def fn(inst):
        inst[SOPS[1]]["headers"] = {"start_byte": 21000, "end_byte": 41034}
        inst[SOPS[1]]["size"] = 20034
    with pytest.raises(MetadataError, match="overlap") as e:
        _parse(_mutate(fn))
    assert SOPS[0] in str(e.value) and SOPS[1] in str(e.value)


def test_size_disagrees_with_range():
    def fn(inst):
        inst[SOPS[2]]["size"] = 20035
    with pytest.raises(MetadataError, match=f"instance {SOPS[2]} size 20035 disagrees"):
        _parse(_mutate(fn))


@pytest.mark.parametrize("headers, word", [
    ({"start_byte": 100, "end_byte": 50}, "before it starts"),
    ({"start_byte": -1, "end_byte": 50}, "start_byte"),
    ({"start_byte": "1536", "end_byte": 21570}, "start_byte"),
    ({"start_byte": 1536, "end_byte": 2.5e4}, "end_byte"),
    ({"start_byte": True, "end_byte": 21570}, "start_byte"),
    (None, "no byte range"),
])
def test_bad_ranges(headers, word):
    def fn(inst):
        inst[SOPS[0]]["headers"] = headers
        inst[SOPS[0]].pop("size")
    with pytest.raises(MetadataError, match=word):
        _parse(_mutate(fn))


@pytest.mark.parametrize("crc", ["not base64!", "AAAA", "AAAAAAA=", None, 12345])
def test_bad_crc32c(crc):
    def fn(inst):
        inst[SOPS[1]]["crc32c"] = crc
    with pytest.raises(MetadataError, match=f"instance {SOPS[1]}: crc32c"):
        _parse(_mutate(fn))


def test_no_tar_uri():
    def fn(inst):
        inst[SOPS[0]].pop("uri")
    with pytest.raises(MetadataError, match="no tar uri/url"):
        _parse(_mutate(fn))


def test_metadata_for_another_study_or_series():
    with pytest.raises(MetadataError, match=f"describes study .*{SAMPLE_STUDY}.*not 1.2.3"):
        _parse(RAW, study="1.2.3")
    with pytest.raises(MetadataError, match="describes series .*not 1.2.3"):
        _parse(RAW, series="1.2.3")


def test_crc_values_are_big_endian_base64():
    assert decode_crc32c("V7nNRA==") == 0x57B9CD44


def test_thumbnail_name_only_from_a_plain_thumbnail_uri():
    from cod_retrieve.metadata import _thumbnail_name
    assert _thumbnail_name({"uri": "gs://b/p/studies/1/series/2/thumbnail.mp4"}) == "thumbnail.mp4"
    assert _thumbnail_name({"uri": "gs://elsewhere/any/thumbnail.jpg"}) == "thumbnail.jpg"   # fetched from our folder
    for bad in ({"uri": "gs://b/x/../../secret.json"}, {"uri": "gs://b/thumbnail.exe"}, {"uri": 3}, "thumbnail.jpg",
                None, {"uri": "gs://b/thumbnail.jpg/"}):
        assert _thumbnail_name(bad) is None, bad


def test_thumbnails_fetched_from_the_series_folder(bucket_server, demo_studies):
    """The writer's thumbnails: named in stats, and fetched byte-equal to the bucket's objects."""
    import asyncio
    from cod_retrieve import CodDownload

    fx = demo_studies[1]
    items, _ = bucket_server.list_objects(fx.bucket, fx.study_prefix)
    stored = {it["name"].rsplit("/", 2)[-2]: it["name"] for it in items
              if it["name"].rsplit("/", 1)[-1].startswith("thumbnail.")}
    assert stored

    async def go():
        cd = CodDownload(api_base=bucket_server.url)
        cd.init_bucket({"bucket": fx.bucket, "bucketPrefix": fx.datastore, "token": "t"})
        stats = await cd.get_stats([fx.study_uid])
        got = {d["seriesUID"]: (d["thumbnail"], await cd.thumbnail(fx.study_uid, d["seriesUID"]))
               for d in stats["seriesDetails"]}
        return got
    got = asyncio.run(go())
    for series, (name, found) in got.items():
        assert name == stored[series].rsplit("/", 1)[-1]
        data, media_type = found
        assert data == bucket_server.download(fx.bucket, stored[series], accept_gzip=False)[0]
        assert media_type == ("video/mp4" if name.endswith(".mp4") else "image/jpeg")
