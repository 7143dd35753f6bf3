"""createCodDownload() runs the job in a dedicated Worker (the default): the page's main thread
loads no Pyodide and keeps drawing frames while a real download runs (headless Chromium, the
real bucket). The longest main-thread task is printed, never asserted on."""

from __future__ import annotations

from support.browser import expected_files, module_worker, module_workers, python_worker, read_folder, wait_until

# Counts, in a Worker, how files are opened for writing.
COUNT_OPENS = """
() => {
  const opens = globalThis.__opens = { sync: 0, writable: 0 };
  const sync0 = FileSystemFileHandle.prototype.createSyncAccessHandle;
  FileSystemFileHandle.prototype.createSyncAccessHandle = function (...a) { opens.sync += 1; return sync0.apply(this, a); };
  const writable0 = FileSystemFileHandle.prototype.createWritable;
  FileSystemFileHandle.prototype.createWritable = function (...a) { opens.writable += 1; return writable0.apply(this, a); };
}
"""

RUN = """
async ({ api, bucket, prefix, uids }) => {
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  let longest = 0;
  try {
    new PerformanceObserver((list) => { for (const e of list.getEntries()) longest = Math.max(longest, e.duration); })
      .observe({ type: 'longtask', buffered: false });
  } catch { /* no longtask timing here */ }
  const cod = await createCodDownload({ apiBase: api });
  const root = await navigator.storage.getDirectory();
  await cod.useDirectory(await root.getDirectoryHandle('in-worker', { create: true }));
  cod.initBucket({ bucket, bucketPrefix: prefix, token: 't' });
  const job = await cod.download(uids, false);
  let frames = 0, running = true, progress = 0, framesAtFirstProgress = null;
  const tick = () => { frames += 1; if (running) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  job.onProgress(() => { progress += 1; if (framesAtFirstProgress === null) framesAtFirstProgress = frames; });
  const result = await job.start();
  running = false;
  const framesAtEnd = frames;
  const resources = performance.getEntriesByType('resource').map((e) => e.name);
  return { result, frames: framesAtEnd, framesAtFirstProgress, progress, longest,
           mainLoadedPyodide: resources.some((n) => n.endsWith('pyodide.asm.wasm')) || typeof globalThis.loadPyodide === 'function' };
}
"""


def test_main_thread_only_renders(page, site_url, bucket_server, demo_studies):
    fx = demo_studies[1]
    # A document of the site's origin that loads nothing itself (the hosted page would
    # start a runtime of its own on this thread).
    page.goto(f"{site_url}/format.mjs")
    page.evaluate("import('/cod-retrieve.mjs').then((m) => m.createCodDownload({})).then(() => true)")
    python_worker(page).evaluate(COUNT_OPENS)
    writer = module_worker(page, "cod-retrieve-writer")
    writer.evaluate(COUNT_OPENS)
    out = page.evaluate(RUN, {"api": bucket_server.url, "bucket": fx.bucket, "prefix": fx.datastore,
                              "uids": [fx.study_uid]})
    print(f"\nworker: {out['frames']} frames, {out['progress']} progress events, "
          f"longest main-thread task {out['longest']:.0f} ms")
    assert out["result"]["failed"] == []
    assert not out["mainLoadedPyodide"]                      # Python runs in the worker only
    assert out["progress"] > 0
    assert out["frames"] > out["framesAtFirstProgress"]      # frames kept coming while bytes arrived
    got = read_folder(page, "in-worker")
    got.pop("log.json")
    assert got == expected_files(bucket_server.url, fx)      # no .part file left behind either
    # OPFS from the writer worker: every file through a sync access handle there, none through
    # createWritable, and no file opened on Python's thread
    opens = writer.evaluate("globalThis.__opens")
    assert opens["writable"] == 0 and opens["sync"] >= len(got), opens
    assert python_worker(page).evaluate("globalThis.__opens") == {"sync": 0, "writable": 0}


def test_writers_take_turns_and_the_old_ones_end(page, site_url, bucket_server, demo_studies):
    """After so many files a fresh writer worker takes the new ones and the old one ends once it
    has answered everything (what its closed file handles held is freed with it): here every 3
    files, on a real study, and every file lands whole."""
    fx = demo_studies[1]
    page.goto(f"{site_url}/format.mjs")
    page.evaluate("import('/cod-retrieve.mjs').then((m) => m.createCodDownload({})).then(() => true)")
    shim = f"{site_url}/cod-shim.mjs"
    python_worker(page).evaluate("url => import(url).then((m) => m.setFilesPerWriter(3))", shim)
    out = page.evaluate(RUN, {"api": bucket_server.url, "bucket": fx.bucket, "prefix": fx.datastore,
                              "uids": [fx.study_uid]})
    assert out["result"]["failed"] == []
    got = read_folder(page, "in-worker")
    got.pop("log.json")
    want = expected_files(bucket_server.url, fx)
    assert got == want                                       # no .part file left behind either
    started = python_worker(page).evaluate("url => import(url).then((m) => m.writersStarted())", shim)
    assert len(want) >= 6 and started >= len(want) // 3, (started, len(want))    # at least two turns
    # The retired writers end: one is left (the page's list drops a worker once it has ended).
    wait_until(page, lambda: len(module_workers(page, "cod-retrieve-writer")) == 1, what="the retired writers ended")
    assert len(module_workers(page, "cod-retrieve-writer")) == 1
