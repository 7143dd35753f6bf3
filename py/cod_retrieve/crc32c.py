"""CRC32C (Castagnoli) as GCS reports it: base64 of the big-endian value.

The table implementation here is the reference and the fallback; runtimes
plug in a fast one (a compiled module in CPython, WebAssembly in the browser)
through `cod_retrieve._compat.new_crc32c`.
"""

from __future__ import annotations

import base64
import binascii

_POLY = 0x82F63B78


def _make_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c_update(crc: int, data: bytes | bytearray | memoryview) -> int:
    """Continue a CRC32C over `data` (start with 0). Slow: tests and fallback only."""
    c = crc ^ 0xFFFFFFFF
    t = _TABLE
    for b in bytes(data):
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


class PureCrc32c:
    """Incremental CRC32C in pure Python."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.value = crc32c_update(self.value, data)


def decode_crc32c(text: str) -> int:
    """The integer from a GCS-style base64 CRC32C; ValueError if it is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError) as e:
        raise ValueError(f"crc32c {text!r} is not base64") from e
    if len(raw) != 4:
        raise ValueError(f"crc32c {text!r} is not 4 bytes")
    return int.from_bytes(raw, "big")


def encode_crc32c(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")
