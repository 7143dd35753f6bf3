"""Zip mode through the service-worker stage (`zipSpool: "service-worker"`,
the path for engines without a usable OPFS): each study's zip streams straight
into the browser's download from `cod-sw.js`, one chunk per pull of the
worker's stream. Headless Chromium: the two captured zips are checked like
test_zip's; the writer is shown to wait for a slow reader (backpressure); a
cancelled job leaves a failed download, never a zip that looks whole. The
last resort (`zipSpool: "memory"`, which no engine here takes on its own any
more) is checked too."""

from __future__ import annotations

import pytest

from support.browser import expected_files, wait_for_downloads
from test_zip import check_downloads, check_zip

RUN = """async ([api, bucket, prefix, uids, spool, worker]) => {
  const { createCodDownload } = await import('./cod-retrieve.mjs');
  const cod = await createCodDownload({ apiBase: api, zipSpool: spool, worker: !!worker });
  cod.initBucket({ bucket, bucketPrefix: prefix, token: 't' });
  const job = await cod.download(uids, true);
  const saves = [], errors = [];
  job.onSave((p) => saves.push(p.file.path));
  job.onError((p) => errors.push(p.error.message));
  const r = await job.start();
  return { saves, errors, failed: r.failed.length, done: r.bytesDone, total: r.bytesTotal,
           stats: job.traffic().stream };
}"""


@pytest.mark.parametrize("worker", [False, True], ids=["page", "worker"])
def test_zip_two_studies_streamed_by_service_worker(page, site_url, bucket_server, demo_studies, tmp_path, worker):
    """On the page's thread, and in the Worker (whose stream port the page hands over)."""
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    with page.expect_download(timeout=120_000):
        result = page.evaluate(RUN, [bucket_server.url, demo_studies[0].bucket, demo_studies[0].datastore,
                                     [s.study_uid for s in demo_studies], "service-worker", worker])
    assert result["errors"] == [] and result["failed"] == 0, result
    assert result["done"] == result["total"]
    assert result["stats"]["chunks"] > 0 and result["stats"]["bytes"] > 0, result
    wait_for_downloads(page, downloads, len(demo_studies))
    assert sorted(d.suggested_filename for d in downloads) == sorted(f"{s.study_uid}.zip" for s in demo_studies)
    total = check_downloads(downloads, demo_studies, bucket_server, tmp_path)
    # every byte of both zips went through the stream, and nothing was spooled to OPFS
    assert result["stats"]["bytes"] == total
    assert page.evaluate("""async () => {
      const root = await navigator.storage.getDirectory();
      try { const d = await root.getDirectoryHandle('cod-retrieve-spool');
            for await (const n of d.keys()) return n; } catch { }
      return null; }""") is None


BACKPRESSURE = """async ([chunks, chunkSize]) => {
  const { loadRuntime } = await import('./cod-retrieve.mjs');
  const py = await loadRuntime();
  await py.runPythonAsync(`
import asyncio
from cod_retrieve._compat._in_pyodide import service_worker_downloads, STREAM_STATS
sw = await service_worker_downloads()
bp_writer = await sw.create_download("bp.bin", start=False)
bp_start = dict(STREAM_STATS)
async def bp_produce():
    for i in range(${chunks}):
        await bp_writer.write(bytes([i % 251]) * ${chunkSize})
    await bp_writer.commit()
bp_task = asyncio.ensure_future(bp_produce())
`);
  const sent = () => {
    const s = py.globals.get('STREAM_STATS'), s0 = py.globals.get('bp_start');
    return s.get('bytes') - s0.get('bytes');
  };
  const url = py.globals.get('bp_writer').url;
  const stream = py.globals.get('bp_writer')._stream;
  const task = py.globals.get('bp_task');
  const reader = (await fetch(url)).body.getReader();
  let read = 0, maxAhead = 0, reads = 0;
  for (;;) {
    // Read only while the writer is stuck waiting for the browser to pull
    // (StreamDownload._wake is set then), or once it is done: the slowest
    // reader that still gets everything. Without backpressure the writer
    // would never wait, and would run ahead.
    while (stream._wake === null && !task.done()) await new Promise((r) => setTimeout(r, 0));
    maxAhead = Math.max(maxAhead, sent() - read);
    const r = await reader.read();
    if (r.done) break;
    read += r.value.length;
    reads += 1;
  }
  await py.runPythonAsync('await bp_task');
  const s = py.globals.get('STREAM_STATS'), s0 = py.globals.get('bp_start');
  return { read, sent: sent(), maxAhead, reads, waits: s.get('waits') - s0.get('waits') };
}"""


def test_service_worker_stream_has_backpressure(page, site_url):
    """A reader that reads only while the writer waits for it: the Python writer
    is never more than a few chunks ahead of what was read, and waits again and
    again (without backpressure it would never wait and be done at once)."""
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    chunks, size = 24, 1 << 20
    r = page.evaluate(BACKPRESSURE, [chunks, size])
    print(f"\nbackpressure: {r}")
    assert r["read"] == r["sent"] == chunks * size
    assert r["maxAhead"] <= 4 * size, r
    assert r["waits"] >= chunks // 2, r


CANCEL = """async ([api, bucket, prefix, uids]) => {
  const { createCodDownload } = await import('./cod-retrieve.mjs');
  const cod = await createCodDownload({ apiBase: api, zipSpool: 'service-worker' });
  cod.initBucket({ bucket, bucketPrefix: prefix, token: 't' });
  const job = await cod.download(uids, true);
  window.__job = job;
  window.__result = job.start();
}"""


def test_cancelled_streamed_zip_fails_the_download(page, site_url, fresh_proxy, bucket_server, demo_studies):
    """The largest tar is held half-way by the proxy, so the zip is certainly unfinished
    when the job is cancelled: the browser's download must end failed."""
    import threading

    from support.faultproxy import Fault, on_path
    from support.files import tars_by_size
    fx = demo_studies[0]
    tar, size = tars_by_size(bucket_server, fx)[0]
    hold = on_path(tar, Fault("hold", at=size // 2, release=threading.Event()), ranged=False)
    fresh_proxy.rules.append(hold)
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    with page.expect_download(timeout=60_000) as info:
        page.evaluate(CANCEL, [fresh_proxy.url, fx.bucket, fx.datastore, [fx.study_uid]])
        fresh_proxy.wait_until(lambda: hold.fired == 1, what="the largest tar held half-way")
    page.evaluate("window.__job.cancel()")
    r = page.evaluate("window.__result")
    assert r["cancelled"], r
    d = info.value
    assert d.suggested_filename == f"{fx.study_uid}.zip"
    assert d.failure() is not None      # the browser marked it failed: no whole-looking zip


def test_forced_spool_names_are_checked(page, site_url, bucket_server, demo_studies):
    fx = demo_studies[0]
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    msg = page.evaluate("""async ([api, bucket, prefix, uid]) => {
      const { createCodDownload } = await import('./cod-retrieve.mjs');
      const cod = await createCodDownload({ apiBase: api, zipSpool: 'floppy' });
      cod.initBucket({ bucket, bucketPrefix: prefix, token: 't' });
      try { await cod.download([uid], true); return null; } catch (e) { return String(e.message || e); }
    }""", [bucket_server.url, fx.bucket, fx.datastore, fx.study_uid])
    assert msg and "zip_spool must be one of" in msg


def test_forced_memory_spool(page, site_url, bucket_server, demo_studies, tmp_path):
    fx = demo_studies[0]
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    with page.expect_download(timeout=60_000) as info:
        r = page.evaluate(RUN, [bucket_server.url, fx.bucket, fx.datastore, [fx.study_uid], "memory"])
    assert r["errors"] == [] and r["failed"] == 0 and r["stats"]["chunks"] == 0, r
    d = info.value
    path = tmp_path / d.suggested_filename
    d.save_as(path)
    check_zip(path, fx, expected_files(bucket_server.url, fx))
