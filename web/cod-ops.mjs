// The calls the page makes into the Python package (cod_retrieve.browser), in
// one place for both ways of running it: inside the dedicated Worker
// (cod-worker.mjs, the calls arrive as messages) or on the page's own thread
// (cod-retrieve.mjs with {worker: false}). `emit` hands a Job callback's payload
// to the page; `askHost` asks the page for what only it can do (a token).
import { started } from "./python-boot.mjs";

// A Python exception reaches JS as a PythonError whose message is the whole
// traceback; callers get a plain Error with the exception's own message, its
// class as name and kind (StorageFullError, BucketError, ...).
export function plainPythonError(e) {
  if (typeof e?.type !== "string" || typeof e?.message !== "string") return e;
  // The traceback ends with "<module.path.>Type: message" (the message may span lines).
  const head = new RegExp(`^(?:[\\w.]+\\.)?${e.type.replace(/[^\w]/g, "")}: `);
  const lines = e.message.trimEnd().split("\n");
  let at = lines.length - 1;
  while (at > 0 && !head.test(lines[at])) at -= 1;
  const message = lines.slice(at).join("\n").replace(head, "");
  return Object.assign(new Error(message), { name: e.type, kind: e.type });
}

export function createOps(host) {
  const ops = rawOps(host);
  for (const [name, fn] of Object.entries(ops)) {
    ops[name] = (...args) => {
      try {
        const out = fn(...args);
        return out instanceof Promise ? out.catch((e) => { throw plainPythonError(e); }) : out;
      } catch (e) {
        throw plainPythonError(e);
      }
    };
  }
  return ops;
}

function rawOps({ loadPython, emit, askHost }) {
  let browser = null;                 // the Python module cod_retrieve.browser
  const objects = new Map();          // id -> a Python CodDownload or Job
  let nextObject = 1;

  return {
    // Answers how Python started: {from: "snapshot" | "fresh", seconds, snapshotProblem,
    // snapshotSkipped} (python-boot.mjs).
    async boot(settings) {
      browser ??= await loadPython(settings);
      return { ...started };
    },

    create(options) {
      const id = nextObject++;
      const opts = { ...options };
      delete opts.hasGetToken;
      if (options.hasGetToken) opts.getToken = () => askHost("getToken", [id]);
      objects.set(id, browser.create(opts));
      return id;
    },

    readManifest(text, name) { return browser.read_manifest_text(text, name ?? "manifest"); },

    setDirectory(cod, handle) { return objects.get(cod).set_directory(handle); },
    initBucket(cod, details) { return objects.get(cod).init_bucket(details); },
    initSource(cod, details) { return objects.get(cod).init_source(details); },
    getStats(cod, uids, options) { return objects.get(cod).get_stats(uids, options ?? null); },

    thumbnail(cod, study, series) { return objects.get(cod).thumbnail(study, series); },
    verifyFolder(cod, uids, options) { return objects.get(cod).verify_folder(uids, options ?? null); },

    async download(cod, uids, zip, options) {
      const job = await objects.get(cod).download(uids, zip, options ?? null);
      const id = nextObject++;
      objects.set(id, job);
      return id;
    },

    // The page listens to an event: from now on its payloads are handed over.
    listen(job, event) {
      objects.get(job).on(event, (payload) => emit(job, event, payload));
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
    state(job) { return objects.get(job)?.state ?? null; },
  };
}
