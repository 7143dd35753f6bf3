// cod-retrieve: download Cloud Optimized DICOM studies in the browser.
// The work is done by the Python package `cod_retrieve` running in Pyodide;
// this module loads it (assets resolved relative to this file, so a portal on
// another origin can import it) and gives it the original library's API.
import * as shim from "./cod-shim.mjs";

const BASE = new URL(".", import.meta.url);
export const DIRECTORY_HANDLE_KEY = "indexed_db_directory_handle_key";
let runtime = null;

export function loadRuntime() {
  runtime ??= (async () => {
    const { loadPyodide } = await import(new URL("pyodide/pyodide.mjs", BASE).href);
    const pyodide = await loadPyodide({ indexURL: new URL("pyodide/", BASE).href });
    await shim.init(BASE);
    pyodide.registerJsModule("cod_shim", shim);
    await pyodide.loadPackage(["cod-retrieve"], { messageCallback: () => {} });
    return pyodide;
  })();
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

export class Job {
  constructor(py) {
    this._py = py;
    for (const [method, event] of Object.entries(EVENTS)) {
      this[method] = (callback) => {
        const cb = event === "error"
          ? (p) => callback({ ...p, error: Object.assign(new Error(p.error), { kind: p.kind }) })
          : callback;
        this._py.on(event, cb);
        return this;
      };
    }
  }
  start() { return this._py.start(); }
  cancel() { this._py.cancel(); }
  pause() { this._py.pause(); }
  resume() { this._py.resume(); }
  get state() { return this._py.state; }
  traffic() { return this._py.traffic(); }
}

export class CodDownload {
  constructor(py, options) {
    this._py = py;
    this.options = options;
    this.directoryHandle = null;
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
    await this._py.set_directory(handle);
  }

  initBucket(details) { this._py.init_bucket(details); }
  getStats(studyUIDs) { return this._py.get_stats(studyUIDs); }
  async download(studyUIDs, zipOutput = false) {
    return new Job(await this._py.download(studyUIDs, zipOutput));
  }
}

// options.zipSpool forces where zip mode builds its zips: "opfs" (a disk
// spool, then a disk-backed File to Downloads), "service-worker" (streamed
// straight into the download through cod-sw.js, next to this module, with
// backpressure), or "memory" (at most 1 GB per job). Unset: the first of these
// the browser allows.
export async function createCodDownload(options = {}) {
  const pyodide = await loadRuntime();
  const browser = pyodide.pyimport("cod_retrieve.browser");
  // A portal's getToken may reject with anything (a string, a DOMException):
  // Python sees a plain Error, and reports it as a token problem.
  const getToken = options.getToken;
  const pyOptions = getToken
    ? { ...options, getToken: () => Promise.resolve().then(() => getToken()).catch((e) => { throw shim.plainError(e); }) }
    : options;
  return new CodDownload(browser.create(pyOptions), options);
}

export default createCodDownload;
