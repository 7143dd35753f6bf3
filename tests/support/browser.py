"""Shared by the browser tests and benchmarks: Debian Chromium's launch
flags, the folder-picker substitute, and read-back of what landed in OPFS
compared with what the bucket holds."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
                 "--disable-dev-shm-usage"]

# Replaces window.showDirectoryPicker before page scripts run: it answers with
# a fresh folder in the origin-private file system.
PICKER = """
window.showDirectoryPicker = async () => {
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle(window.__pickedName || 'picked', { create: true });
};
"""

# Reads a folder back from OPFS (null: the OPFS root itself): relative path,
# size and SHA-256 of every file.
READ_BACK = """
async (name) => {
  const top = await navigator.storage.getDirectory();
  const root = name === null ? top : await top.getDirectoryHandle(name);
  const out = {};
  async function walk(dir, prefix) {
    for await (const [n, h] of dir.entries()) {
      if (h.kind === 'directory') { await walk(h, prefix + n + '/'); continue; }
      const buf = await (await h.getFile()).arrayBuffer();
      const d = new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
      out[prefix + n] = { size: buf.byteLength, sha256: [...d].map(b => b.toString(16).padStart(2, '0')).join('') };
    }
  }
  await walk(root, '');
  return out;
}
"""


def read_folder(page, name: str | None = "picked") -> dict:
    """Every file under OPFS folder `name` (None: the whole OPFS root)."""
    return page.evaluate(READ_BACK, name)


def wait_until(page, check, timeout: float = 60.0, what: str = "") -> None:
    """Until `check()` is true. Playwright hands events over (downloads, workers)
    only while one of its calls runs, so this keeps one running (a short wait)
    between checks; `timeout` is a safety net, not a measure."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not in {timeout} s: {what}"
        page.wait_for_timeout(50)


def wait_for_downloads(page, downloads: list, n: int, timeout: float = 120.0) -> None:
    """Until `downloads` (filled by a page.on("download") handler) holds `n` downloads."""
    wait_until(page, lambda: len(downloads) >= n, timeout, f"{n} downloads (have {len(downloads)})")


def expected_files(server_url: str, study, bucket: str | None = None) -> dict:
    """Every instance of a study as the bucket holds it: path -> size, sha256, crc32c.

    Read straight from the bucket's tars (not through the package), so the
    comparison is independent of the code under test."""
    import crc32c as crc_mod
    from cod_retrieve.crc32c import decode_crc32c
    bucket = bucket or study.bucket
    out = {}
    for series_uid in study.series:
        name = f"{study.datastore}/studies/{study.study_uid}/series/{series_uid}"
        meta_url = f"{server_url}/storage/v1/b/{bucket}/o/{urllib.parse.quote(name + '/metadata.json', safe='')}?alt=media"
        meta = json.loads(urllib.request.urlopen(meta_url).read())
        tar_bytes = urllib.request.urlopen(f"{server_url}/{bucket}/{name}.tar").read()
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
            for sop, entry in meta["cod"]["instances"].items():
                member = entry["uri"].split(".tar://", 1)[1]
                data = tf.extractfile(member).read()
                assert len(data) == entry["size"]
                assert crc_mod.crc32c(data) == decode_crc32c(entry["crc32c"])
                out[f"{study.study_uid}/{series_uid}/instances/{sop}.dcm"] = {
                    "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return out



# One download through the JS module against `api` (the bucket, or a proxy in front of
# it), into the substituted picker's folder `folder`; getToken answers `fresh`.
RUN_THROUGH = """
async ({ api, bucket, prefix, uids, folder, token, fresh, stall }) => {
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  let asked = 0;
  const cod = await createCodDownload({
    apiBase: api, concurrency: 3, retry: { attempts: 6, base_delay: 0.05, max_delay: 0.2, stall_timeout: stall },
    getToken: fresh ? async () => { asked += 1; return fresh; } : undefined });
  window.__pickedName = folder;
  await cod.initDirectory();
  cod.initBucket({ bucket, bucketPrefix: prefix, token });
  const job = await cod.download(uids, false);
  const errors = [];
  job.onError(p => errors.push(p.error.message));
  const result = await job.start();
  return { result, errors, asked };
}
"""


def _run_args(api, studies, folder, token, fresh, stall) -> dict:
    return {"api": api, "bucket": studies[0].bucket, "prefix": studies[0].datastore,
            "uids": [s.study_uid for s in studies], "folder": folder, "token": token,
            "fresh": fresh, "stall": stall}


def _open_index(page, site_url) -> None:
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)


def run_through(page, site_url, api, studies, folder, token="t", fresh=None, stall=3):
    """Open the page, run one download of `studies` through the module: {result, errors, asked}."""
    _open_index(page, site_url)
    return page.evaluate(RUN_THROUGH, _run_args(api, studies, folder, token, fresh, stall))


# Watches fetched bodies where Python runs (its Worker, or the page with {worker: false}):
# hooks.fetch(url) on each fetch, and hooks.read(url, promise) -> promise on each read of a
# fetched body, through the default reader or the BYOB reader (what the shim uses).
WATCH_BODIES = """
function watchBodies(hooks) {
  const bodies = new WeakMap(), readers = new WeakMap();
  const fetch0 = globalThis.fetch;
  globalThis.fetch = function (input, init) {
    const url = String(input?.url ?? input);
    hooks.fetch?.(url);
    return fetch0.call(this, input, init).then((r) => { if (r.body) bodies.set(r.body, url); return r; });
  };
  const getReader0 = ReadableStream.prototype.getReader;
  ReadableStream.prototype.getReader = function (...a) {
    const reader = getReader0.apply(this, a);
    if (bodies.has(this)) readers.set(reader, bodies.get(this));
    return reader;
  };
  for (const Reader of [ReadableStreamDefaultReader, globalThis.ReadableStreamBYOBReader].filter(Boolean)) {
    const read0 = Reader.prototype.read;
    Reader.prototype.read = function (...a) {
      const url = readers.get(this);
      const p = read0.apply(this, a);
      return url === undefined ? p : hooks.read(url, p);
    };
  }
}
"""

# Counts, per fetched URL path, the body bytes Python has read and the reads it
# has waiting: a test knows from it that Python holds what was sent.
COUNT_READS = f"""
() => {{
  const rec = globalThis.__reads = {{}};
  ({WATCH_BODIES})({{
    read(url, p) {{
      const r = rec[new URL(url).pathname] ??= {{ bytes: 0, pending: 0 }};
      r.pending += 1;
      return p.then((v) => {{ r.bytes += v.value?.byteLength ?? 0; return v; }}).finally(() => {{ r.pending -= 1; }});
    }},
  }});
}}
"""


def module_workers(page, name: str) -> list:
    """The module's dedicated Workers of that name still running (each is started
    from a blob: URL; one that ends while asked is left out)."""
    out = []
    for w in page.workers:
        try:
            if w.url.startswith("blob:") and w.evaluate("self.name") == name:
                out.append(w)
        except Exception:       # ended while asked
            pass
    return out


def module_worker(page, name: str):
    """One of the module's dedicated Workers, by its name: "cod-retrieve" runs
    Python, "cod-retrieve-writer" (started by it where sync access handles exist)
    writes the origin-private file system."""
    # A worker shows in page.workers once the browser has reported it.
    wait_until(page, lambda: module_workers(page, name), 30, f"a worker named {name}")
    workers = module_workers(page, name)
    assert len(workers) == 1, (name, [w.url for w in page.workers])
    return workers[0]


def python_worker(page):
    """The dedicated Worker the module runs Python in (started when the page made
    its first CodDownload)."""
    return module_worker(page, "cod-retrieve")


def assert_python_in_worker(page) -> None:
    """The page's Python runs in the module's Worker: the main thread fetched no
    Pyodide and has none loaded."""
    python_worker(page)
    loaded = page.evaluate("""() => performance.getEntriesByType('resource').some((e) => e.name.endsWith('pyodide.asm.wasm'))
        || typeof globalThis.loadPyodide === 'function'""")
    assert not loaded, "Pyodide was loaded on the page's main thread"


def wait_in(target, predicate: str, arg=None, timeout: float = 60.0, what: str = "") -> None:
    """Evaluate `predicate` in `target` (a page or a Worker, which has no
    wait_for_function) until it is true; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not target.evaluate(predicate, arg):
        assert time.monotonic() < deadline, f"not in {timeout} s: {what or predicate}"
        time.sleep(0.05)


def start_run(page, site_url, api, studies, folder, token="t", fresh=None, stall=3):
    """As run_through, but returns at once, with Python's reads counted
    (`__reads` in the Worker returned); `finish_run` waits for the outcome."""
    _open_index(page, site_url)
    worker = python_worker(page)
    worker.evaluate(COUNT_READS)
    page.evaluate(f"args => {{ window.__run = ({RUN_THROUGH})(args).then(r => ({{ ok: r }}), e => ({{ err: String(e) }})); }}",
                  _run_args(api, studies, folder, token, fresh, stall))
    return worker


def finish_run(page, timeout: float = 300.0) -> dict:
    """The outcome of the run `start_run` began: {result, errors, asked}."""
    out = page.evaluate(f"""() => Promise.race([window.__run,
        new Promise(r => setTimeout(() => r({{ err: 'no outcome in {timeout} s' }}), {timeout * 1000}))])""")
    assert "ok" in out, out["err"]
    return out["ok"]


def open_page(browser, init_script: str | None = None):
    """A page in a fresh context (downloads accepted) that records its console and errors
    in `page.console_messages`. Close it with `page.context.close()`."""
    context = browser.new_context(accept_downloads=True)
    if init_script:
        context.add_init_script(init_script)
    pg = context.new_page()
    pg.console_messages = []
    pg.on("console", lambda m: pg.console_messages.append(f"{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: pg.console_messages.append(f"pageerror: {e}"))
    return pg


def download_from_page(page, folder: str) -> None:
    """The page's own buttons, as a user: Choose folder (the substituted picker answers
    with OPFS folder `folder`), Download, and the job ends "done"."""
    page.evaluate("name => { window.__pickedName = name; }", folder)
    page.get_by_role("button", name="Choose folder").click()
    page.wait_for_function("!document.getElementById('download').disabled")
    page.get_by_role("button", name="Download", exact=True).click()
    page.wait_for_selector("body[data-job-state]", timeout=120_000)
    assert page.evaluate("document.body.dataset.jobState") == "done", page.locator("#errors").inner_text()
