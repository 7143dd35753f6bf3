// cod-retrieve: download Cloud Optimized DICOM studies in the browser.
// The work is done by the Python package `cod_retrieve` running in Pyodide;
// this module loads it (assets resolved relative to this file, so a portal on
// another origin can import it) and gives it the original library's API.
import * as shim from "./cod-shim.mjs";
import { createOps } from "./cod-ops.mjs";
import { startPython } from "./python-boot.mjs";

const BASE = new URL(".", import.meta.url);
export const DIRECTORY_HANDLE_KEY = "indexed_db_directory_handle_key";
let runtime = null;

export function loadRuntime() {
  runtime ??= startPython(BASE);
  return runtime;
}

export function supportsFolderPicker() {
  return typeof window !== "undefined" && typeof window.showDirectoryPicker === "function";
}

function inCrossOriginFrame() {
  try {
    return window.top !== window.self && !window.top.location.href;
  } catch {
    return true;
  }
}

// Why the folder picker cannot be shown right now, or null. Checked before the
// picker is asked for, so a portal hears a clear reason instead of a SecurityError.
export function folderPickerProblem() {
  if (!supportsFolderPicker()) {
    return { kind: "no-folder-picker",
             message: "This browser has no folder picker (showDirectoryPicker): use zip output instead." };
  }
  if (inCrossOriginFrame()) {
    return { kind: "cross-origin-iframe",
             message: "The folder picker does not work inside a cross-origin iframe: use zip output instead, " +
                      "or open the download in a top-level window." };
  }
  const activation = typeof navigator !== "undefined" ? navigator.userActivation : undefined;
  if (activation && !activation.isActive) {
    return { kind: "no-user-gesture",
             message: "The folder picker needs a user gesture: call initDirectory() from a click handler " +
                      "(before other awaits), or use zip output instead." };
  }
  return null;
}

// ---- token handover by postMessage (the viewer route, opened or framed by a portal)
export const TOKEN_MESSAGE = "cod-retrieve-token";
export const READY_MESSAGE = "cod-retrieve-ready";
export const TOKEN_REQUEST_MESSAGE = "cod-retrieve-token-request";

function tokenPeers() {
  const peers = [];
  if (typeof window === "undefined") return peers;
  if (window.opener && !window.opener.closed) peers.push(window.opener);
  if (window.parent && window.parent !== window) peers.push(window.parent);
  return peers;
}

// Accepts {type: "cod-retrieve-token", token} from window.opener or window.parent
// only (never from a URL), announces itself with {type: "cod-retrieve-ready"} and asks
// for a fresh token with {type: "cod-retrieve-token-request"} (those carry no secret).
export function tokenFromMessages({ timeoutMs = 10_000 } = {}) {
  let latest = null;
  let handed = null;
  let waiters = [];
  const onMessage = (ev) => {
    const d = ev.data;
    if (!d || typeof d !== "object" || d.type !== TOKEN_MESSAGE) return;
    if (typeof d.token !== "string" || !d.token) return;
    if (!tokenPeers().includes(ev.source)) return;
    latest = d.token;
    for (const w of waiters.splice(0)) w(latest);
    try { source.ontoken?.(latest); } catch { /* a listener's problem */ }
  };
  const post = (type) => { for (const peer of tokenPeers()) peer.postMessage({ type }, "*"); };
  const source = {
    ontoken: null,
    get token() { return latest; },
    async getToken() {
      if (latest && latest !== handed) { handed = latest; return latest; }
      if (!tokenPeers().length) return latest;
      const next = new Promise((resolve) => {
        waiters.push(resolve);
        setTimeout(() => resolve(null), timeoutMs);
      });
      post(TOKEN_REQUEST_MESSAGE);
      const got = await next;
      if (got) handed = got;
      return got;
    },
    close() { window.removeEventListener("message", onMessage); waiters.splice(0).forEach((w) => w(null)); },
  };
  window.addEventListener("message", onMessage);
  post(READY_MESSAGE);
  return source;
}

function openHandleStore() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open("cod-retrieve", 1);
    req.onupgradeneeded = () => req.result.createObjectStore("handles");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function storeHandle(handle) {
  try {
    const db = await openHandleStore();
    await new Promise((resolve, reject) => {
      const tx = db.transaction("handles", "readwrite");
      tx.objectStore("handles").put(handle, DIRECTORY_HANDLE_KEY);
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
    });
  } catch {
    /* a folder that cannot be remembered still works for this session */
  }
}

export async function storedDirectoryHandle() {
  try {
    const db = await openHandleStore();
    return await new Promise((resolve) => {
      const req = db.transaction("handles").objectStore("handles").get(DIRECTORY_HANDLE_KEY);
      req.onsuccess = () => resolve(req.result ?? null);
      req.onerror = () => resolve(null);
    });
  } catch {
    return null;
  }
}

const EVENTS = {
  onProgress: "progress", onDownload: "download", onExtract: "extract", onSave: "save",
  onComplete: "complete", onError: "error", onSeries: "series",
};

// ---- Where Python runs. By default in a dedicated Worker (cod-worker.mjs), one
// per page, so the main thread only renders; with createCodDownload({worker:
// false}) on this page's thread (loadRuntime). Both take the same calls
// (cod-ops.mjs) and hand Job payloads to the same Job objects.

// What only the page can do, asked by Python wherever it runs. Whatever the
// page's side rejects with (a portal's getToken may throw a string or a
// DOMException), Python gets a plain Error: some DOMExceptions kill Pyodide.
async function hostCall(rt, op, args) {
  try {
    return await pageCall(rt, op, args);
  } catch (e) {
    throw shim.plainError(e);
  }
}

async function pageCall(rt, op, args) {
  if (op === "getToken") return { value: (await rt.tokenSources.get(args[0])?.()) ?? null };
  if (op === "serviceWorker") { await shim.serviceWorker(); return { value: null }; }
  if (op === "openStream") {
    const { port, url } = await shim.openStreamPort(args[0]);
    return { value: { port, url }, transfer: [port] };
  }
  if (op === "startStream") { shim.startStream(args[0]); return { value: null }; }
  if (op === "endStream") { shim.endStream(args[0]); return { value: null }; }
  throw new Error(`unknown host call ${op}`);
}

class Runtime {
  constructor() {
    this.jobs = new Map();          // job id -> Job (for its callbacks)
    this.tokenSources = new Map();  // CodDownload id -> getToken
  }

  _event(job, event, payload) { this.jobs.get(job)?._event(event, payload); }
}

class LocalRuntime extends Runtime {
  constructor() {
    super();
    this.local = true;
    this.ops = createOps({
      loadPython: async () => (await loadRuntime()).pyimport("cod_retrieve.browser"),
      emit: (job, event, payload) => this._event(job, event, payload),
      askHost: async (op, args) => (await hostCall(this, op, args)).value,
    });
  }

  async call(op, args = []) { return this.ops[op](...args); }
}

class WorkerRuntime extends Runtime {
  constructor() {
    super();
    // A worker script must be same-origin with the page: a blob: URL (the
    // page's origin) imports the module from ours.
    const src = `import ${JSON.stringify(new URL("cod-worker.mjs", BASE).href)};`;
    const url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
    this.worker = new Worker(url, { type: "module", name: "cod-retrieve" });
    this.calls = new Map();
    this.nextCall = 1;
    this.worker.onmessage = (ev) => this._message(ev.data);
    this.worker.onerror = (ev) => {
      const error = new Error(`the downloader's worker failed: ${ev.message ?? "unknown error"}`);
      for (const c of this.calls.values()) c.reject(error);
      this.calls.clear();
    };
  }

  call(op, args = []) {
    const id = this.nextCall++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args });
    });
  }

  async _message(msg) {
    if (msg.type === "event") { this._event(msg.job, msg.event, msg.payload); return; }
    if (msg.type === "host") {
      if (msg.op === "deliver") { shim.deliverFile(msg.args[0], msg.args[1]); return; }
      try {
        const { value, transfer } = await hostCall(this, msg.op, msg.args);
        this.worker.postMessage({ type: "host-reply", id: msg.id, ok: true, value }, transfer ?? []);
      } catch (e) {
        this.worker.postMessage({ type: "host-reply", id: msg.id, ok: false, error: { name: e.name, message: e.message } });
      }
      return;
    }
    const call = this.calls.get(msg.id);
    this.calls.delete(msg.id);
    if (!call) return;
    if (msg.ok) call.resolve(msg.value);
    else call.reject(Object.assign(new Error(msg.error.message), { name: msg.error.name, kind: msg.error.kind }));
  }
}

const runtimes = {};

// How this page's Python started, once it has: {from: "snapshot" (Cache Storage,
// a repeat visit) | "fresh", seconds, where: "worker" | "page", snapshotProblem,
// snapshotSkipped}; null before.
export async function pythonStarted() {
  const rt = await (runtimes.worker ?? runtimes.local ?? null);
  return rt?.python ?? null;
}

// A module Worker is where Python runs unless the page says otherwise
// ({worker: false}) or the browser has none.
function workersUsable() {
  return typeof Worker === "function" && typeof Blob === "function" && typeof URL.createObjectURL === "function";
}

async function startRuntime(inWorker) {
  const key = inWorker ? "worker" : "local";
  runtimes[key] ??= (async () => {
    const rt = inWorker ? new WorkerRuntime() : new LocalRuntime();
    rt.python = { ...await rt.call("boot", [{ serviceWorkerUsable: shim.serviceWorkerUsable() }]),
                  where: inWorker ? "worker" : "page" };
    return rt;
  })();
  try {
    return await runtimes[key];
  } catch (e) {
    delete runtimes[key];
    throw e;
  }
}

export class Job {
  constructor(rt, id) {
    this._rt = rt;
    this._id = id;
    this._state = "new";
    this._traffic = null;
    this._callbacks = {};
    rt.jobs.set(id, this);
    for (const [method, event] of Object.entries(EVENTS)) {
      this[method] = (callback) => {
        if (!this._callbacks[event]) {
          this._callbacks[event] = [];
          rt.call("listen", [id, event]);
        }
        this._callbacks[event].push(callback);
        return this;
      };
    }
  }

  _event(event, payload) {
    if (event === "series" && payload?.status === "downloading" && this._state === "new") this._state = "running";
    const p = event === "error"
      ? { ...payload, error: Object.assign(new Error(payload.error), { kind: payload.kind }) }
      : payload;
    for (const cb of this._callbacks[event] ?? []) {
      try { cb(p); } catch (e) { console.error(e); }
    }
  }

  async start() {
    this._state = "running";
    try {
      const { result, state, traffic } = await this._rt.call("start", [this._id]);
      this._state = state;
      this._traffic = traffic;
      return result;
    } finally {
      this._rt.jobs.delete(this._id);
    }
  }

  cancel() { if (["new", "running", "paused"].includes(this._state)) this._state = "cancelled"; this._rt.call("cancel", [this._id]); }
  pause() { if (this._state === "running") this._state = "paused"; this._rt.call("pause", [this._id]); }
  resume() { if (this._state === "paused") this._state = "running"; this._rt.call("resume", [this._id]); }
  // On the page's thread the Python job answers at once; in a worker, the state
  // is mirrored here and the traffic is known once start() has resolved.
  get state() { return (this._rt.local && this._rt.ops.state(this._id)) || this._state; }
  /** Requests, retries and body bytes of the job (and bytes handed to streamed downloads). */
  traffic() { return (this._rt.local && this._rt.ops.traffic(this._id)) || this._traffic; }
}

// What crosses to Python of a call's options: plain data only.
function selection(options) {
  const out = {};
  if (options?.series) out.series = [...options.series].map(String);
  if (options?.layout) out.layout = String(options.layout);
  if (options?.manifest !== undefined) out.manifest = !!options.manifest;
  if (options?.dump !== undefined) out.dump = options.dump === "frames" ? "frames" : !!options.dump;
  return Object.keys(out).length ? out : null;
}

export class CodDownload {
  constructor(rt, id, options) {
    this._rt = rt;
    this._id = id;
    this.options = options;
    this.directoryHandle = null;
    this._bucket = Promise.resolve();
    this._errorCallbacks = options?.onError ? [options.onError] : [];
  }

  // Problems outside a job (folder picker limits); payload as Job.onError's.
  onError(callback) {
    this._errorCallbacks.push(callback);
    return this;
  }

  folderPickerProblem() { return folderPickerProblem(); }

  _limit(problem) {
    const error = Object.assign(new Error(problem.message), { kind: problem.kind });
    const payload = { url: null, error, kind: problem.kind, study: null, series: null, instance: null };
    for (const cb of this._errorCallbacks) {
      try { cb(payload); } catch (e) { console.error(e); }
    }
    return error;
  }

  // Must be called from a user gesture (a click) when it shows the picker.
  async initDirectory(usePrivateStorage = false) {
    const usePrivate = usePrivateStorage === true || usePrivateStorage?.privateStorage === true;
    let handle;
    if (usePrivate) {
      handle = await navigator.storage.getDirectory();
    } else if (usePrivateStorage && typeof usePrivateStorage === "object" && usePrivateStorage.handle) {
      handle = usePrivateStorage.handle;
    } else {
      const problem = folderPickerProblem();
      if (problem) throw this._limit(problem);
      handle = await window.showDirectoryPicker({ mode: "readwrite" });
    }
    await this.useDirectory(handle);
    return handle;
  }

  async useDirectory(handle) {
    if (handle.requestPermission) {
      const state = await handle.queryPermission?.({ mode: "readwrite" });
      if (state && state !== "granted") await handle.requestPermission({ mode: "readwrite" });
    }
    this.directoryHandle = handle;
    await storeHandle(handle);
    await this._rt.call("setDirectory", [this._id, handle]);
  }

  // As in the original, synchronous: a bucket that cannot be used makes the
  // next getStats() or download() reject with the reason.
  initBucket(details) {
    this._bucket = this._rt.call("initBucket", [this._id, details]);
    this._bucket.catch(() => {});
  }

  // Where to download from, as initBucket: {dicomweb: "https://host/dicom-web", token}
  // for a DICOMweb server (QIDO-RS and WADO-RS), {archive: "https://host/x.zip", token}
  // for one zip, tar or tar.gz of DICOM files, or any form initBucket takes.
  initSource(details) {
    this._bucket = this._rt.call("initSource", [this._id, details]);
    this._bucket.catch(() => {});
  }

  // options.series: only these SeriesInstanceUIDs of the studies (a basket);
  // unset: whole studies, as in the original. options.layout: where files land
  // ("classic", "descriptive", "media" or a %Keyword template; default the one
  // given to createCodDownload). options.manifest (download only): write
  // cod-manifest.csv beside the files and in each zip.
  async getStats(studyUIDs, options = {}) {
    await this._bucket;
    return this._rt.call("getStats", [this._id, [...studyUIDs], selection(options)]);
  }

  // The series thumbnail the COD writer stored (thumbnail.jpg or .mp4), as a
  // Blob, or null where the series has none. Asks the bucket only when called
  // (after getStats, which says which series have one: seriesDetails[].thumbnail).
  async thumbnail(studyUID, seriesUID) {
    await this._bucket;
    const found = await this._rt.call("thumbnail", [this._id, String(studyUID), String(seriesUID)]);
    return found ? new Blob([found.bytes], { type: found.type }) : null;
  }

  // A shared selection read from a file's text: {studies, series} (series
  // undefined for whole studies). CSV with StudyInstanceUID (and optionally
  // SeriesInstanceUID) columns, or one study UID per line; a bad line is named.
  readManifest(text, name = "manifest") {
    return this._rt.call("readManifest", [String(text), String(name)]);
  }

  // Checks the chosen folder against the bucket, downloading nothing: every
  // file's size and CRC32C. Missing and changed instances leave log.json, so
  // the next download() fetches them again.
  async verifyFolder(studyUIDs, options = {}) {
    await this._bucket;
    return this._rt.call("verifyFolder", [this._id, [...studyUIDs], selection(options)]);
  }

  async download(studyUIDs, zipOutput = false, options = {}) {
    await this._bucket;
    return new Job(this._rt, await this._rt.call("download", [this._id, [...studyUIDs], !!zipOutput, selection(options)]));
  }
}

// Callbacks fire here, on the page's main thread, wherever the job runs
// (Python runs in a dedicated Worker unless options.worker is false). options.zipSpool forces where zip mode builds its zips: "opfs"
// (a disk spool, then a disk-backed File to Downloads), "service-worker"
// (streamed straight into the download through cod-sw.js, next to this module,
// with backpressure), or "memory" (at most 1 GB per job). Unset: the first of
// these the browser allows.
export async function createCodDownload(options = {}) {
  const { getToken, onError, worker, ...rest } = options;
  const rt = await startRuntime(worker ?? workersUsable());
  const plain = JSON.parse(JSON.stringify(rest));      // what crosses to the worker: data only
  const id = await rt.call("create", [{ ...plain, hasGetToken: !!getToken }]);
  // A portal's getToken may reject with anything (a string, a DOMException):
  // the worker sees a plain Error, and Python reports it as a token problem.
  if (getToken) rt.tokenSources.set(id, () => Promise.resolve().then(() => getToken()));
  return new CodDownload(rt, id, options);
}

export default createCodDownload;
