"""createCodDownload({worker: true}): the job runs in a dedicated Worker: the page's main thread loads no Pyodide and keeps
drawing frames while a real download runs (headless Chromium, the real bucket)."""

from __future__ import annotations

from support.browser import expected_files, read_folder

RUN = """
async ({ api, bucket, prefix, uids }) => {
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  let longest = 0;
  try {
    new PerformanceObserver((list) => { for (const e of list.getEntries()) longest = Math.max(longest, e.duration); })
      .observe({ type: 'longtask', buffered: false });
  } catch { /* no longtask timing here */ }
  const cod = await createCodDownload({ apiBase: api, worker: true });
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
    assert got == expected_files(bucket_server.url, fx)
