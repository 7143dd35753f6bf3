"""CRC32C in the browser (web/crc32c.wat): on Python's buffers where they lie in
Pyodide's heap (the path every download takes), and on bytes outside it (copied
through the module's own memory), against CPython's compiled crc32c module."""

from __future__ import annotations

import crc32c as crc32c_mod

# Python in the page's runtime: every length from 0 to 40 at odd offsets, pieces that
# split an 8-byte step, bytes, bytearray and memoryview slices of a 3 MB buffer.
PY = """
from cod_retrieve._compat import new_crc32c
from cod_retrieve._compat._in_pyodide import WasmCrc32c
assert isinstance(new_crc32c(), WasmCrc32c)
data = bytearray((i * 7919 + 13) & 0xFF for i in range(3_000_017))
out = []
for n in range(41):
    c = WasmCrc32c(); c.update(memoryview(data)[5:5 + n]); out.append(c.value)
c = WasmCrc32c()
for a, b in ((0, 3), (3, 11), (11, 1_048_590), (1_048_590, len(data))):
    c.update(memoryview(data)[a:b])
out.append(c.value)
c = WasmCrc32c(); c.update(bytes(data[:100_001])); out.append(c.value)
c = WasmCrc32c(); c.update(b"123456789"); out.append(c.value)
out
"""

JS = """
async (code) => {
  const { loadRuntime } = await import('/cod-retrieve.mjs');
  const py = await loadRuntime();
  const inHeap = py.runPython(code).toJs();
  const { loadCrc32c } = await import('/crc32c.mjs');
  const update = await loadCrc32c('/crc32c.wasm');          // no heap: every byte copied
  const bytes = new Uint8Array(2_500_003).map((_, i) => (i * 31 + 7) & 255);
  let crc = 0;
  for (const [a, b] of [[0, 1], [1, 1_048_577], [1_048_577, bytes.length]]) crc = update(crc, bytes.subarray(a, b));
  return { inHeap, copied: crc, check: update(0, new TextEncoder().encode('123456789')) };
}
"""


def test_crc32c_in_the_heap_and_copied(page, site_url):
    page.goto(f"{site_url}/format.mjs")
    out = page.evaluate(JS, PY)
    data = bytes((i * 7919 + 13) & 0xFF for i in range(3_000_017))
    want = [crc32c_mod.crc32c(data[5:5 + n]) for n in range(41)]
    want += [crc32c_mod.crc32c(data), crc32c_mod.crc32c(data[:100_001]), 0xE3069283]
    assert out["inHeap"] == want
    js_bytes = bytes((i * 31 + 7) & 255 for i in range(2_500_003))
    assert out["copied"] == crc32c_mod.crc32c(js_bytes)
    assert out["check"] == 0xE3069283
