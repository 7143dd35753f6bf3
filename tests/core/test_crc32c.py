"""CRC32C: the pure reference, the runtime's fast one, and GCS-style base64."""

from __future__ import annotations

import json
import random

import crc32c as crc32c_mod
import google_crc32c
import pytest

from cod_retrieve import _compat
from cod_retrieve.crc32c import PureCrc32c, crc32c_update, decode_crc32c, encode_crc32c

from core_helpers import SAMPLE_META, SAMPLE_TAR


def test_standard_check_value():
    assert crc32c_update(0, b"123456789") == 0xE3069283
    assert crc32c_update(0, b"") == 0
    assert crc32c_update(0, bytes(32)) == 0x8A9136AA          # RFC 3720 B.4 test vector
    assert crc32c_update(0, b"\xff" * 32) == 0x62A8AB43
    assert crc32c_update(0, bytes(range(32))) == 0x46DD794E


@pytest.mark.parametrize("n", [0, 1, 3, 255, 4096, 100_003])
def test_pure_matches_compiled_modules(n):
    data = random.Random(n).randbytes(n)
    want = crc32c_mod.crc32c(data)
    assert crc32c_update(0, data) == want
    assert int.from_bytes(google_crc32c.Checksum(data).digest(), "big") == want
    assert crc32c_update(0, memoryview(data)) == want
    assert crc32c_update(0, bytearray(data)) == want


def _incremental(factory, data, cuts):
    c = factory()
    prev = 0
    for cut in list(cuts) + [len(data)]:
        c.update(memoryview(data)[prev:cut])
        prev = cut
    return c.value


@pytest.mark.parametrize("factory", [_compat.new_crc32c, PureCrc32c])
def test_incremental_equals_one_shot(factory):
    rnd = random.Random(7)
    data = rnd.randbytes(200_000 if factory is _compat.new_crc32c else 20_000)  # pure is slow
    want = crc32c_mod.crc32c(data)
    one = factory()
    one.update(data)
    assert one.value == want
    for _ in range(5):
        cuts = sorted(rnd.sample(range(len(data)), 20)) + [len(data)]
        assert _incremental(factory, data, cuts) == want
    # empty updates, bytes and memoryviews (of bytes and of a bytearray) mixed
    c = factory()
    c.update(b"")
    c.update(data[:10])
    c.update(memoryview(bytearray(data[10:1000])))
    c.update(memoryview(data)[1000:])
    c.update(memoryview(b""))
    assert c.value == want


def test_new_crc32c_accepts_bytearray():
    c = _compat.new_crc32c()
    c.update(bytearray(b"123456789"))
    assert c.value == 0xE3069283


def test_pure_accepts_bytearray():
    c = PureCrc32c()
    c.update(bytearray(b"123456789"))
    assert c.value == 0xE3069283


def test_new_crc32c_is_a_fast_one_in_cpython():
    c = _compat.new_crc32c()
    assert not isinstance(c, PureCrc32c)     # google_crc32c or crc32c is installed
    c.update(b"123456789")
    assert c.value == 0xE3069283


def test_base64_round_trip_against_sample():
    tar = SAMPLE_TAR.read_bytes()
    doc = json.loads(SAMPLE_META.read_bytes())
    assert len(doc["cod"]["instances"]) == 3
    for entry in doc["cod"]["instances"].values():
        text = entry["crc32c"]
        a, b = entry["headers"]["start_byte"], entry["headers"]["end_byte"]
        value = crc32c_update(0, tar[a:b])
        assert decode_crc32c(text) == value == crc32c_mod.crc32c(tar[a:b])
        assert encode_crc32c(value) == text


def test_base64_edges():
    for v in (0, 1, 0xFFFFFFFF, 0x80000000, 0xE3069283):
        assert decode_crc32c(encode_crc32c(v)) == v
    assert encode_crc32c(0xE3069283) == "4waSgw=="
    for bad in ("", "AAAA", "AAAAAAA=", "!!!!!!==", "4waSgw"):
        with pytest.raises(ValueError, match="crc32c"):
            decode_crc32c(bad)
