// The dedicated Worker that runs Pyodide and every download job, so the page's
// main thread only renders. Started by cod-retrieve.mjs (from a blob: URL that
// imports this module, so a portal on another origin can use it). Messages:
//   page -> worker  {id, op, args}              a call; answered {id, ok, value | error}
//   worker -> page  {type: "event", job, event, payload}   a Job callback's payload
//   worker -> page  {type: "host", id, op, args}            something only the page can do
//   page -> worker  {type: "host-reply", id, ok, value | error}
import * as shim from "./cod-shim.mjs";

const BASE = new URL(".", import.meta.url);
let browser = null;                 // the Python module cod_retrieve.browser
const objects = new Map();          // id -> a Python CodDownload or Job (browser.py)
let nextObject = 1;
const hostCalls = new Map();
let nextHostCall = 1;

function errorOf(e) {
  return { name: String(e?.name ?? "Error"), message: String(e?.message ?? e), kind: e?.kind ?? null };
}

function askHost(op, args = [], transfer = []) {
  const id = nextHostCall++;
  return new Promise((resolve, reject) => {
    hostCalls.set(id, { resolve, reject });
    self.postMessage({ type: "host", id, op, args }, transfer);
  });
}

const ops = {
  async boot({ serviceWorkerUsable }) {
    if (browser) return null;
    shim.setHost({
      serviceWorkerUsable,
      call: (op, ...args) => askHost(op, args),
      deliver: (file, name) => self.postMessage({ type: "host", id: 0, op: "deliver", args: [file, name] }),
    });
    const { loadPyodide } = await import(new URL("pyodide/pyodide.mjs", BASE).href);
    const pyodide = await loadPyodide({ indexURL: new URL("pyodide/", BASE).href });
    await shim.init(BASE);
    pyodide.registerJsModule("cod_shim", shim);
    await pyodide.loadPackage(["cod-retrieve"], { messageCallback: () => {} });
    browser = pyodide.pyimport("cod_retrieve.browser");
    return null;
  },

  create(options) {
    const id = nextObject++;
    const opts = { ...options };
    delete opts.hasGetToken;
    if (options.hasGetToken) opts.getToken = () => askHost("getToken", [id]);
    objects.set(id, browser.create(opts));
    return id;
  },

  setDirectory(cod, handle) { return objects.get(cod).set_directory(handle); },
  initBucket(cod, details) { return objects.get(cod).init_bucket(details); },
  getStats(cod, uids) { return objects.get(cod).get_stats(uids); },

  async download(cod, uids, zip) {
    const job = await objects.get(cod).download(uids, zip);
    const id = nextObject++;
    objects.set(id, job);
    return id;
  },

  // The page listens to an event: from now on its payloads are posted.
  listen(job, event) {
    objects.get(job).on(event, (payload) => {
      const buffer = event === "save" ? payload?.file?.buffer : undefined;
      self.postMessage({ type: "event", job, event, payload }, buffer ? [buffer] : []);
    });
    return null;
  },

  async start(job) {
    const j = objects.get(job);
    try {
      const result = await j.start();
      return { result, state: j.state, traffic: j.traffic() };
    } finally {
      objects.delete(job);
    }
  },

  pause(job) { objects.get(job)?.pause(); return null; },
  resume(job) { objects.get(job)?.resume(); return null; },
  cancel(job) { objects.get(job)?.cancel(); return null; },
  traffic(job) { return objects.get(job)?.traffic() ?? null; },
};

self.onmessage = async (ev) => {
  const msg = ev.data;
  if (msg?.type === "host-reply") {
    const call = hostCalls.get(msg.id);
    hostCalls.delete(msg.id);
    if (!call) return;
    if (msg.ok) call.resolve(msg.value);
    else call.reject(Object.assign(new Error(msg.error.message), { name: msg.error.name }));
    return;
  }
  const { id, op, args } = msg;
  try {
    const value = await ops[op](...args);
    self.postMessage({ id, ok: true, value });
  } catch (e) {
    self.postMessage({ id, ok: false, error: errorOf(e) });
  }
};
