"""CRC32C throughput inside Pyodide in headless Chromium, as the downloader
computes it: the project's WebAssembly CRC32C (web/crc32c.wat, slicing-by-8,
reading Python's buffers in place on Pyodide's heap, through the JS shim),
against the pure-Python table loop (the fallback) and zlib's
CRC-32 (a different polynomial: shown only as the speed of compiled code in
the same interpreter). Prints MB/s for each (medians of 5 interleaved rounds) and ratios.

    .venv/bin/python bench/bench_crc32c.py [--mb 64]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import build  # noqa: E402
from support.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

CODE = r'''
import time, zlib
from cod_retrieve._compat import new_crc32c
from cod_retrieve._compat._in_pyodide import WasmCrc32c
from cod_retrieve.crc32c import PureCrc32c

def measure(mb, piece):
    data = bytearray((i * 7 + 3) & 0xFF for i in range(1 << 20)) * mb
    out = {}
    assert isinstance(new_crc32c(), WasmCrc32c), "the browser must get the WebAssembly CRC32C"
    w, p = WasmCrc32c(), PureCrc32c()
    for piece_ in (memoryview(data)[3:70_001], bytes(data[:12_345])):
        w.update(piece_); p.update(piece_)
    assert w.value == p.value, (w.value, p.value)
    def wasm():
        c = WasmCrc32c()
        for i in range(0, len(data), piece):
            c.update(view[i:i + piece])

    def pure():
        c = PureCrc32c()
        for i in range(0, 1 << 20, piece):
            c.update(view[i:i + piece])

    def zlib_crc():
        v = 0
        for i in range(0, len(data), piece):
            v = zlib.crc32(view[i:i + piece], v)

    view = memoryview(data)
    runs = {"wasm CRC32C (used)": (wasm, len(data), []), "zlib CRC-32 (reference only)": (zlib_crc, len(data), []),
            "pure-Python CRC32C (fallback)": (pure, 1 << 20, [])}
    for r in range(5):      # interleaved rounds, medians: the machine's speed drifts
        for name, (fn, size, rates) in runs.items():
            if r and fn is pure:
                continue
            t = time.perf_counter()
            fn()
            rates.append(size / (time.perf_counter() - t) / 1e6)
    for name, (fn, size, rates) in runs.items():
        out[name] = sorted(rates)[len(rates) // 2]
    return out
'''


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--piece", type=int, default=512 * 1024, help="bytes per update (an instance is ~0.5 MB)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright
    build.build_site()
    server, url = build.serve_site()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"{url}/index.html")
            page.wait_for_selector("body[data-ready='1']", timeout=120_000)
            res = page.evaluate("""async ([code, mb, piece]) => {
                const { loadRuntime } = await import('/cod-retrieve.mjs');
                const py = await loadRuntime();
                py.runPython(code);
                return py.globals.get('measure')(mb, piece).toJs({ dict_converter: Object.fromEntries });
            }""", [CODE, args.mb, args.piece])
            browser.close()
    finally:
        server.shutdown()
    base = res["zlib CRC-32 (reference only)"]
    print(f"CRC throughput in Pyodide, headless Chromium, {args.mb} MiB in {args.piece} B updates:")
    for name, mbs in res.items():
        print(f"  {name:32s} {mbs:8.1f} MB/s   {mbs / base:5.2f} x zlib")
    return 0


if __name__ == "__main__":
    sys.exit(main())
