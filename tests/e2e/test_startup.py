"""Python starts from a memory snapshot on a repeat visit (web/python-boot.mjs): the first
visit keeps one in Cache Storage, the next starts from it and downloads a real study just
as well; a snapshot that is broken is dropped and replaced, never used, and one of an
earlier Pyodide version is dropped. Headless Chromium, the real bucket. The start times are
printed, never asserted on."""

from __future__ import annotations

from support.browser import expected_files, read_folder, run_through, wait_in

SNAPSHOT = """
async (action) => {
  const { version } = await import('/pyodide/pyodide.mjs');
  const key = new URL(`/pyodide/memory-snapshot-${version}.bin`, location.href).href;
  const cache = await caches.open('cod-retrieve-python');
  if (action === 'stale') {
    // What an earlier Pyodide version of the site kept.
    await cache.put(key.replace(`-${version}.bin`, '-0.0.1.bin'), new Response(new Uint8Array(16)));
    return null;
  }
  if (action === 'keys') return (await cache.keys()).map((r) => r.url.slice(r.url.lastIndexOf('/') + 1));
  if (action === 'break') {
    // As long as the header says, but not a snapshot (a disk that returned garbage).
    const bytes = new Uint8Array(32 << 20).fill(7);
    await cache.put(key, new Response(bytes, { headers: { 'x-snapshot-bytes': String(bytes.length) } }));
    return null;
  }
  const hit = await cache.match(key);
  if (!hit) return null;
  const bytes = new Uint8Array(await hit.arrayBuffer());
  return { bytes: bytes.length, magic: new Uint32Array(bytes.buffer, 0, 1)[0] };
}
"""

STARTED = "import('/cod-retrieve.mjs').then((m) => m.pythonStarted())"

# Python on the page's own thread ({worker: false} uses the same start): a random number
# drawn there, and how it started.
PAGE_PYTHON = """
async () => {
  const m = await import('/cod-retrieve.mjs');
  const py = await m.loadRuntime();
  return { bits: py.runPython('import random; str(random.getrandbits(64))'), started: globalThis.codRetrievePython };
}
"""


def _fresh_doc(page, site_url) -> None:
    """A document of the site's origin that starts nothing by itself."""
    page.goto(f"{site_url}/format.mjs")


def test_a_repeat_visit_starts_from_the_snapshot_and_downloads(page, site_url, bucket_server, demo_studies):
    fx = demo_studies[1]
    first = run_through(page, site_url, bucket_server.url, [fx], "first")
    assert first["result"]["failed"] == [] and first["errors"] == []
    started = page.evaluate(STARTED)
    assert started["from"] == "fresh" and started["where"] == "worker" and started["snapshotSkipped"] is None, started
    _wait_for_snapshot(page)

    second = run_through(page, site_url, bucket_server.url, [fx], "second")
    again = page.evaluate(STARTED)
    print(f"\nPython started: first visit {started['seconds']:.2f} s (fresh), "
          f"repeat visit {again['seconds']:.2f} s ({again['from']})")
    assert again["from"] == "snapshot" and again["where"] == "worker", again
    assert second["result"]["failed"] == [] and second["errors"] == []
    want = expected_files(bucket_server.url, fx)
    for folder in ("first", "second"):
        got = read_folder(page, folder)
        got.pop("log.json")
        assert got == want, folder


def _wait_for_snapshot(page) -> dict:
    """The snapshot is put in Cache Storage after the start, not awaited by it."""
    wait_in(page, f"() => ({SNAPSHOT})('read').then((s) => s !== null)", what="the snapshot in Cache Storage")
    return page.evaluate(f"() => ({SNAPSHOT})('read')")


def test_a_broken_snapshot_is_replaced_and_restores_reseed_random(page, site_url):
    _fresh_doc(page, site_url)
    page.evaluate(f"() => ({SNAPSHOT})('stale')")
    page.evaluate(f"() => ({SNAPSHOT})('break')")
    _fresh_doc(page, site_url)
    out = page.evaluate(PAGE_PYTHON)
    assert out["started"]["from"] == "fresh", out
    assert any("memory snapshot did not load" in m for m in page.console_messages), page.console_messages
    good = _wait_for_snapshot(page)
    assert good["magic"] != 0x07070707 and good["bytes"] != 32 << 20, good
    # Only the current version's snapshot is kept (an earlier version's is dropped).
    version = page.evaluate("import('/pyodide/pyodide.mjs').then((m) => m.version)")
    wait_in(page, f"() => ({SNAPSHOT})('keys').then((k) => k.length === 1)", what="the stale snapshot dropped")
    assert page.evaluate(f"() => ({SNAPSHOT})('keys')") == [f"memory-snapshot-{version}.bin"]

    draws = []
    for _ in range(2):
        _fresh_doc(page, site_url)
        out = page.evaluate(PAGE_PYTHON)
        assert out["started"]["from"] == "snapshot", out
        draws.append(out["bits"])
    # Each start from the same snapshot draws its own random numbers (2**-64 to fail by chance).
    assert draws[0] != draws[1], draws
