// The thin JS side of the Python package: byte copies, CRC32C in WebAssembly,
// and a directory listing. Registered in Pyodide as the module `cod_shim`.
import { loadCrc32c } from "./crc32c.mjs";
import { openSyncWriter, removeIfEmpty, syncWritable } from "./file-writers.mjs";

let crc32c = null;

// heap, alloc: Pyodide's WebAssembly memory and malloc, so that CRC32C reads
// Python's buffers where they lie (crc32c.mjs); without them it copies.
export async function init(baseUrl, heap = null, alloc = null) {
  swBase = baseUrl;
  writerReady = startWriter(baseUrl);     // not awaited: the first write waits for it
  writerReady.then((w) => { writerNow = w; });
  crc32c = await loadCrc32c(new URL("crc32c.wasm", baseUrl).href, heap, alloc);
}

export function crcReady() {
  return crc32c !== null;
}

// Continues a CRC32C (0 to start) over a Python buffer lent for this call.
export function crcUpdate(crc, pyBuffer) {
  const view = pyBuffer.getBuffer("u8");
  try {
    return crc32c(crc, view.data);
  } finally {
    view.release();
  }
}

// ---- File system calls, all made here and never from Python directly.
// Chromium rejects a write past the quota with a QuotaExceededError, and a
// promise that Python started and that rejects with one kills Pyodide
// ("Object has already been destroyed": the await never resumes). Every
// call Python awaits is therefore made by a JS function that turns any
// rejection into a plain Error with the same name and message.
export function plainError(e) {
  if (e instanceof Error && e.constructor === Error) return e;
  const err = new Error(String(e?.message ?? e ?? "unknown error"));
  err.name = typeof e?.name === "string" ? e.name : "Error";
  return err;
}

async function guarded(fn) {
  try {
    return await fn();
  } catch (e) {
    throw plainError(e);
  }
}

export const fetchUrl = (url, init) => guarded(() => fetch(url, init));
export const directory = (parent, name, create) => guarded(() => parent.getDirectoryHandle(name, { create }));
export const fileHandle = (dir, name) => guarded(() => dir.getFileHandle(name));
export const fileSize = (handle) => guarded(async () => (await handle.getFile()).size);
export const readFile = (handle) => guarded(async () => new Uint8Array(await (await handle.getFile()).arrayBuffer()));
export const removeEntry = (dir, name) => guarded(() => dir.removeEntry(name));
export const fileReader = (handle) => guarded(async () => (await handle.getFile()).stream().getReader());
export const readChunk = (reader) => guarded(() => reader.read());
export const diskFile = (handle) => guarded(() => handle.getFile());

// A response body read into one buffer, over and over (a BYOB reader): no
// ArrayBuffer per chunk left for the garbage collector to find late, so the
// page holds what is in flight, not what came in since the last collection.
// The caller copies each chunk before it reads the next. Where the body is
// not a byte stream, the default reader.
const BODY_BUFFER = 1 << 20;

export function bodyReader(resp) {
  if (!resp.body) return undefined;        // None in Python (null would be JsNull)
  let byob;
  try {
    byob = resp.body.getReader({ mode: "byob" });
  } catch {
    return resp.body.getReader();
  }
  let buffer = new ArrayBuffer(BODY_BUFFER);
  return {
    async read() {
      const r = await byob.read(new Uint8Array(buffer));
      if (r.value) buffer = r.value.buffer;        // the same memory, handed back
      return r;
    },
    cancel: (reason) => byob.cancel(reason),
  };
}

// A JS copy of a Python buffer (a PyProxy), taken now.
function pyCopy(py) {
  const view = py.getBuffer("u8");
  try { return view.data.slice(); } finally { view.release(); }
}

// A file being written: createWritable writes to a swap file, so the name
// shows nothing new until close() succeeds. When the write or close fails,
// the file getFileHandle({create}) left empty is removed again (a file that
// had content keeps it): nothing under a final name unless it is complete.
// Checked only on failure, so a write costs no extra call.
class Writer {
  constructor(dir, name, handle, writable) {
    Object.assign(this, { dir, name, handle, writable });
  }

  // bytes: a Uint8Array, or a Python buffer lent for this call, copied now
  // (the stream writes it later).
  write(bytes) {
    const data = bytes instanceof Uint8Array ? bytes : pyCopy(bytes);
    return guarded(() => this.writable.write(data));
  }

  close() {
    return guarded(async () => {
      try {
        await this.writable.close();
      } catch (e) {
        await this._discard();
        throw e;
      }
    });
  }

  abort() { return guarded(() => this._discard()); }

  async _discard() {
    await this.writable.abort().catch(() => {});
    await removeIfEmpty(this.dir, this.name, this.handle);
  }
}

// In a dedicated Worker, a folder in the origin-private file system is written
// through createSyncAccessHandle (file-writers.mjs): synchronous writes straight
// into the file, with none of createWritable's swap-file copy in the browser
// process. Those writes and closes block their thread, so they are made on a
// writer worker of their own (cod-writer.mjs, started by init()), which gets a
// copy of each buffer; where it cannot start, on this thread.
const inOpfs = new WeakMap();       // directory handle -> Promise<boolean>

function inPrivateStorage(dir) {
  if (!inOpfs.has(dir)) {
    inOpfs.set(dir, navigator.storage.getDirectory()
      .then(async (root) => (await root.isSameEntry(dir)) || (await root.resolve(dir)) !== null)
      .catch(() => false));
  }
  return inOpfs.get(dir);
}

function writesInPlace(dir) {
  return syncWritable ? inPrivateStorage(dir) : Promise.resolve(false);
}

// Bytes this site may still store, for a folder in the origin-private file
// system (the quota less what is used); null for a picked folder, whose disk
// the browser does not describe.
export function storageFree(dir) {
  return guarded(async () => {
    if (!navigator.storage?.estimate || !(await inPrivateStorage(dir))) return null;
    const { quota, usage } = await navigator.storage.estimate();
    return typeof quota === "number" && typeof usage === "number" ? Math.max(0, quota - usage) : null;
  });
}

// ---- The writer worker (cod-writer.mjs).
let writerReady = Promise.resolve(null);   // -> a WriterWorker, or null: write on this thread
let writerNow = null;                      // the same, once started

const SPARE_BUFFERS = 32;
const BUFFER_STEP = 64 * 1024;

// Every file the writer opens leaves a closed file handle behind, and the browser
// keeps its side of each (some KB) until the writer's garbage collector finds the
// handle, which in a worker that allocates little can be thousands of files later.
// So after this many files a fresh writer takes the new ones, and the old one is
// ended once it has answered everything and closed its files: what it held is
// freed at once, whatever the collector does.
let filesPerWriter = 1000;

// For tests: a smaller number makes writers take turns on a small study.
export function setFilesPerWriter(n) { filesPerWriter = n; }

// For tests and devtools: writers started for this runtime so far.
export function writersStarted() { return writerNow?.generations ?? 0; }

// One writer worker's share: its calls in flight, the folders it knows, the files it has open.
class WriterGeneration {
  constructor(worker) {
    Object.assign(this, { worker, dirIds: new WeakMap(), nextDir: 1, files: 0, open: 0, pending: 0, retiring: false });
  }

  // A folder is sent once (cloning a handle asks the browser for a token).
  dir(handle) {
    let id = this.dirIds.get(handle);
    if (id === undefined) {
      id = this.nextDir++;
      this.dirIds.set(handle, id);
      this.worker.postMessage({ op: "dir", dir: id, handle });
    }
    return id;
  }

  get idle() { return this.pending === 0 && this.open === 0; }
}

class WriterWorker {
  // spawn: () => Promise<a ready Worker, or null>
  constructor(worker, spawn) {
    Object.assign(this, { spawn, calls: new Map(), nextId: 1, files: new Map(), spare: [], generations: 0, turn: null });
    this.gen = this._adopt(worker);
  }

  _adopt(worker) {
    const gen = new WriterGeneration(worker);
    this.generations += 1;
    worker.onmessage = ({ data }) => {
      if (data.bytes) this._give(data.bytes);
      const call = this.calls.get(data.id);
      if (!call) return;
      this.calls.delete(data.id);
      gen.pending -= 1;
      if (data.ok) call.resolve(null);
      else call.reject(Object.assign(new Error(data.error.message), { name: data.error.name }));
      this._endIfDone(gen);
    };
    worker.onerror = (ev) => {
      const error = new Error(`the writer worker failed: ${ev.message ?? "unknown error"}`);
      for (const [id, c] of this.calls) {
        if (c.gen === gen) { c.reject(error); this.calls.delete(id); }
      }
      gen.pending = 0;
    };
    return gen;
  }

  // A copy of a Python buffer (or a Uint8Array) for the writer, taken now, in
  // a buffer the writer hands back once written: no fresh ArrayBuffer (new
  // pages to fault in) per file, and none left for a garbage collector to
  // find late, so what is held stays what is in flight.
  copy(bytes) {
    const view = bytes instanceof Uint8Array ? null : bytes.getBuffer("u8");
    try {
      const src = view ? view.data : bytes;
      const out = new Uint8Array(this._take(src.byteLength), 0, src.byteLength);
      out.set(src);
      return out;
    } finally {
      view?.release();
    }
  }

  _take(n) {
    let best = -1;
    for (let i = 0; i < this.spare.length; i++) {
      const size = this.spare[i].byteLength;
      if (size >= n && size <= n * 1.25 + BUFFER_STEP && (best < 0 || size < this.spare[best].byteLength)) best = i;
    }
    if (best >= 0) return this.spare.splice(best, 1)[0];
    return new ArrayBuffer(Math.ceil(Math.max(n, 1) / BUFFER_STEP) * BUFFER_STEP);
  }

  _give(buffer) {
    this.spare.push(buffer);
    if (this.spare.length > SPARE_BUFFERS) this.spare.shift();
  }

  // A whole file (writeFile) or the start of one (open) goes to the current
  // writer, after its turn is over; the rest of a file (write, close, abort)
  // to the writer that opened it. `dir` is a directory handle.
  async call(msg, bytes) {
    const starts = msg.op === "writeFile" || msg.op === "open";
    if (starts) {
      if (this.gen.files >= filesPerWriter && !this.turn) {
        this.turn = this._nextWriter().finally(() => { this.turn = null; });
      }
      if (this.turn) await this.turn;
    }
    const gen = starts ? this.gen : this.files.get(msg.file);
    if (!gen) {
      if (msg.op === "abort") return null;      // closed or aborted already: nothing to abort
      throw new Error(`the writer has no file ${msg.file} open`);
    }
    if (starts) {
      gen.files += 1;
      if (msg.op === "open") { gen.open += 1; this.files.set(msg.file, gen); }
    } else if (msg.op !== "write") {
      this.files.delete(msg.file);
    }
    const id = this.nextId++;
    const out = new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject, gen });
      gen.pending += 1;
      const body = msg.dir === undefined ? msg : { ...msg, dir: gen.dir(msg.dir) };
      gen.worker.postMessage({ ...body, id, bytes }, bytes ? [bytes.buffer] : []);
    });
    if (msg.op === "close" || msg.op === "abort") gen.open -= 1;
    if (msg.op === "open") {
      out.catch(() => {                         // not opened: nothing to close later
        if (this.files.get(msg.file) !== gen) return;
        this.files.delete(msg.file);
        gen.open -= 1;
        this._endIfDone(gen);
      });
    }
    return out;
  }

  async _nextWriter() {
    const worker = await this.spawn();
    if (!worker) { this.gen.files = 0; return; }        // none starts: this one goes on
    const old = this.gen;
    this.gen = this._adopt(worker);
    old.retiring = true;
    this._endIfDone(old);
  }

  _endIfDone(gen) {
    if (gen.retiring && gen.idle) gen.worker.terminate();
  }
}

// A writer worker, ready, or null where none can start.
function spawnWriter(baseUrl) {
  if (!syncWritable || typeof Worker === "undefined") return Promise.resolve(null);
  return new Promise((resolve) => {
    try {
      // Same-origin with this worker (whose origin is the page's): a blob: URL
      // that imports the writer from the module's own origin.
      const src = `import ${JSON.stringify(new URL("cod-writer.mjs", baseUrl).href)};`;
      const url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
      const worker = new Worker(url, { type: "module", name: "cod-retrieve-writer" });
      worker.onmessage = ({ data }) => resolve(data?.ready ? worker : null);
      worker.onerror = (ev) => { ev.preventDefault?.(); worker.terminate(); resolve(null); };
    } catch {
      resolve(null);
    }
  });
}

async function startWriter(baseUrl) {
  const worker = await spawnWriter(baseUrl);
  return worker ? new WriterWorker(worker, () => spawnWriter(baseUrl)) : null;
}

// Writes behind: write() resolves once its bytes are copied and posted, while
// the writer worker writes them, so the job goes on (a zip is one long run of
// writes, each otherwise a round trip with nothing else for the study to do).
// At most WRITES_BEHIND writes or BYTES_BEHIND bytes wait on the writer at
// once; a write that failed fails the next write() or close(), which then
// leaves no file (the caller aborts), as if it had failed itself.
const WRITES_BEHIND = 8;
const BYTES_BEHIND = 8 << 20;

class RemoteWriter {
  constructor(writer, file) {
    Object.assign(this, { writer, file, behind: [], bytesBehind: 0, failed: null });
  }

  write(bytes) {
    const data = this.writer.copy(bytes);     // taken now: the Python buffer is lent for this call only
    return guarded(async () => {
      if (this.failed) throw this.failed;
      const n = data.byteLength;
      this.bytesBehind += n;
      this.behind.push(this.writer.call({ op: "write", file: this.file }, data).then(
        () => { this.bytesBehind -= n; },
        (e) => { this.bytesBehind -= n; this.failed ??= e; }));
      while (this.behind.length > WRITES_BEHIND || (this.bytesBehind > BYTES_BEHIND && this.behind.length)) {
        await this.behind.shift();
      }
      if (this.failed) throw this.failed;
    });
  }

  async _caughtUp() {
    await Promise.all(this.behind.splice(0));
    if (this.failed) throw this.failed;
  }

  close() {
    return guarded(async () => {
      await this._caughtUp();
      return this.writer.call({ op: "close", file: this.file });
    });
  }
  abort() { return guarded(() => this.writer.call({ op: "abort", file: this.file })); }
  _discard() { return this.writer.call({ op: "abort", file: this.file }).catch(() => {}); }
}

let nextFile = 1;

// On this thread, where no writer worker runs.
class LocalSyncWriter {
  constructor(w) { this.w = w; }

  // bytes: a Uint8Array, or a Python buffer (a PyProxy) written straight from
  // the WebAssembly heap. All of it happens before this call returns (the body
  // has no await), so the heap cannot grow and move the view meanwhile.
  write(bytes) {
    return guarded(async () => {
      if (bytes instanceof Uint8Array) { this.w.write(bytes); return; }
      const view = bytes.getBuffer("u8");
      try { this.w.write(view.data); } finally { view.release(); }
    });
  }

  close() { return guarded(() => this.w.close()); }
  abort() { return guarded(() => this.w.discard()); }
  _discard() { return this.w.discard(); }
}

export function openWriter(dir, name) {
  return guarded(async () => {
    if (await writesInPlace(dir)) {
      const writer = await writerReady;
      if (writer) {
        const file = nextFile++;
        await writer.call({ op: "open", dir, name, file });
        return new RemoteWriter(writer, file);
      }
      return new LocalSyncWriter(await openSyncWriter(dir, name));
    }
    const handle = await dir.getFileHandle(name, { create: true });
    try {
      return new Writer(dir, name, handle, await handle.createWritable());
    } catch (e) {
      await removeIfEmpty(dir, name, handle);
      throw e;
    }
  });
}

// A whole small file in one call: one promise for Python to await instead of
// four (each await is a trip through the event loop). `bytes` is a Python
// buffer (a PyProxy lent for this call only) or a Uint8Array. The writer
// worker gets a copy taken now, and writes it into OPFS through a sync access
// handle, elsewhere through createWritable. Without a writer worker, on this
// thread: a sync access handle writes it straight from the WebAssembly heap at
// the moment of the synchronous write (no await between taking the view and
// writing, so a growing heap cannot move it), kept alive by copy() until then;
// createWritable, which writes later, gets a copy taken when it is handed it.
export function writeFile(dir, name, bytes) {
  const writer = writerNow;                         // started long before a job writes
  const data = writer ? writer.copy(bytes) : null;  // the writer worker's copy, taken now
  const py = data || bytes instanceof Uint8Array ? null : bytes.copy();
  return guarded(async () => {
    try {
      if (data) {     // a sync access handle in OPFS, else createWritable, on the writer's thread
        const swap = !(await writesInPlace(dir));
        await writer.call({ op: "writeFile", dir, name, swap }, data);
        return;
      }
      const w = await openWriter(dir, name);
      try {
        await w.write(py ?? bytes);     // each writer takes the Python buffer at this call
      } catch (e) {
        await w._discard();
        throw e;
      }
      await w.close();
    } finally {
      py?.destroy();
    }
  });
}

export async function listNames(dirHandle) {
  return guarded(async () => {
    const names = [];
    for await (const name of dirHandle.keys()) names.push(name);
    return names;
  });
}

// name -> size of every file in a folder, in one call (for checking what is saved).
export async function listSizes(dirHandle) {
  return guarded(async () => {
    const out = new Map();
    for await (const [name, handle] of dirHandle.entries()) {
      if (handle.kind === "file") out.set(name, (await handle.getFile()).size);
    }
    return out;
  });
}

// Zip mode: hand a finished OPFS spool file (a disk-backed File) to the
// browser's download through an object URL and an <a download> click. The
// browser reads the file asynchronously, so the URL stays valid for a while.
export function deliverFile(file, name) {
  if (host) { host.deliver(file, name); return; }
  if (typeof document === "undefined") throw new Error("no document to start a download from");
  const url = URL.createObjectURL(file);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.rel = "noopener";
  a.style.display = "none";
  document.body.append(a);
  a.click();
  a.remove();
  const keepMs = 120_000 + Math.ceil(file.size / 20e6) * 1000;
  setTimeout(() => URL.revokeObjectURL(url), keepMs);
}

// ---- Streamed zip downloads through the service worker (cod-sw.js), for
// engines without a usable OPFS. Transport only: Python decides when to use
// it and what to write. A download's writer sends one chunk per pull of the
// service worker's stream, so `write` resolves only when the browser wants
// more: memory stays at a chunk or two whatever the zip's size.
let swBase = null;
let swRegistration = null;
let swPing = null;
const swOpen = new Map();   // url -> its iframe, while a streamed download is open

export function serviceWorkerUsable() {
  if (host) return host.serviceWorkerUsable;
  return typeof navigator !== "undefined" && !!navigator.serviceWorker && globalThis.isSecureContext === true &&
    typeof document !== "undefined";
}

// ---- Where this module runs in a Worker (cod-worker.mjs): what needs a
// document (a download's <a> click, the service worker's registration and
// its iframe) is asked of the page through `host`.
let host = null;

export function setHost(h) {
  host = h;
}

function activated(worker, timeoutMs) {
  if (worker.state === "activated") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the service worker did not activate")), timeoutMs);
    worker.addEventListener("statechange", () => {
      if (worker.state === "activated") { clearTimeout(timer); resolve(); }
      if (worker.state === "redundant") { clearTimeout(timer); reject(new Error("the service worker was replaced")); }
    });
  });
}

// Registers cod-sw.js next to this module (its scope covers the download URLs).
export function serviceWorker(timeoutMs = 15_000) {
  if (host) return guarded(() => host.call("serviceWorker"));
  return guarded(() => registerServiceWorker(timeoutMs));
}

async function registerServiceWorker(timeoutMs) {
  if (!serviceWorkerUsable()) throw new Error("no service workers here (or not a secure context)");
  swRegistration ??= (async () => {
    const reg = await navigator.serviceWorker.register(new URL("cod-sw.js", swBase ?? import.meta.url).href);
    const worker = reg.installing ?? reg.waiting ?? reg.active;
    await activated(worker, timeoutMs);
    return reg;
  })();
  try {
    return await swRegistration;
  } catch (e) {
    swRegistration = null;
    throw e;
  }
}

class StreamDownload {
  // `control` starts the download in the page and tidies up after it.
  constructor(port, url, control) {
    this.port = port;
    this.url = url;
    this._control = control;
    this.pulls = 0;       // chunks the browser asked for
    this.sent = 0;        // chunks answered
    this.waits = 0;       // writes that had to wait for a pull (backpressure at work)
    this.cancelled = false;
    this._credit = 0;     // 0 or 1: a ReadableStream pulls again only once answered
    this._wake = null;
    this._aborted = null;
    port.onmessage = (ev) => {
      const type = ev.data?.type;
      if (type === "pull") {
        this.pulls += 1;
        if (this._aborted !== null) { this._answer({ type: "error", message: this._aborted }); return; }
        this._credit += 1;
      } else if (type === "cancel") {
        this.cancelled = true;
      }
      const wake = this._wake;
      this._wake = null;
      wake?.();
    };
  }

  _answer(message, transfer = []) {
    this._credit = 0;
    this.port.postMessage(message, transfer);
  }

  async _pulled(timeoutMs) {
    if (this._credit === 0) this.waits += 1;
    while (this._credit === 0) {
      if (this.cancelled) throw new Error("the download was cancelled in the browser");
      if (this._aborted !== null) throw new Error("the download was aborted");
      await new Promise((resolve, reject) => {
        this._wake = resolve;
        if (timeoutMs) {
          setTimeout(() => reject(new Error("the browser did not start the streamed download")), timeoutMs);
        }
      });
    }
    if (this.cancelled) throw new Error("the download was cancelled in the browser");
  }

  start() {
    this._control.start();
  }

  // Resolves once the service worker has pulled and the chunk is handed over.
  // The first chunk waits at most firstTimeoutMs for the download to start.
  async write(u8, firstTimeoutMs = 30_000) {
    await this._pulled(this.sent === 0 ? firstTimeoutMs : 0);
    this._answer({ type: "chunk", chunk: u8.buffer }, [u8.buffer]);
    this.sent += 1;
  }

  async close() {
    await this._pulled(this.sent === 0 ? 30_000 : 0);
    this._answer({ type: "done" });
    this._end();
  }

  // The browser marks the download failed (never a truncated file that looks whole).
  abort(message = "aborted") {
    if (this._aborted !== null) return;
    this._aborted = String(message);
    if (this._credit > 0) this._answer({ type: "error", message: this._aborted });
    const wake = this._wake;
    this._wake = null;
    wake?.();
    this._end();
  }

  _end() {
    this._control.end();
  }
}

// A new streamed download named `name`; not started (see StreamDownload.start).
export function openStream(name) {
  return guarded(async () => {
    if (host) {
      const { port, url } = await host.call("openStream", name);
      return new StreamDownload(port, url, { start: () => host.call("startStream", url), end: () => host.call("endStream", url) });
    }
    const { port, url } = await openStreamPort(name);
    return new StreamDownload(port, url, { start: () => startStream(url), end: () => endStream(url) });
  });
}

// The page's side of a streamed download: the service worker's port for it
// (the writer may live in a Worker), and the navigation that starts it.
export async function openStreamPort(name) {
  const reg = await registerServiceWorker(15_000);
  const id = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
  const channel = new MessageChannel();
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the service worker did not answer")), 15_000);
    channel.port1.onmessage = (ev) => { if (ev.data?.type === "ready") { clearTimeout(timer); resolve(); } };
  });
  reg.active.postMessage({ type: "cod-download", id, name, port: channel.port2 }, [channel.port2]);
  await ready;
  channel.port1.onmessage = null;
  const url = new URL(`__cod-download__/${encodeURIComponent(id)}/${encodeURIComponent(name)}`, reg.scope).href;
  swOpen.set(url, null);
  // Message events keep the service worker alive while a download streams.
  swPing ??= setInterval(() => reg.active?.postMessage({ type: "cod-ping" }), 10_000);
  return { port: channel.port1, url };
}

// A navigation (not a fetch), so that the service worker answers it even when
// it does not control this page; the attachment becomes a download.
export function startStream(url) {
  const frame = document.createElement("iframe");
  frame.hidden = true;
  frame.src = url;
  document.body.append(frame);
  swOpen.set(url, frame);
}

export function endStream(url) {
  const frame = swOpen.get(url);
  swOpen.delete(url);
  if (!swOpen.size && swPing) { clearInterval(swPing); swPing = null; }
  if (frame) setTimeout(() => frame.remove(), 60_000);
}
