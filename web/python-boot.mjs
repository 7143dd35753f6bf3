// Starts Python (Pyodide, the shim, the package) wherever it runs: the job's
// Worker (cod-worker.mjs) or the page itself (cod-retrieve.mjs, {worker: false}).
//
// Starting the interpreter is most of the wait (about 3 s on a slow machine,
// every visit, even with every file in the HTTP cache). So the first visit
// keeps a memory snapshot of the freshly started interpreter in Cache Storage
// (about 30 MB, per Pyodide version), and later visits start from it in a
// fraction of that. The snapshot is taken before anything of ours is loaded,
// so it stays valid when the package changes. Pyodide's snapshot options
// (_makeSnapshot, _loadSnapshot, makeMemorySnapshot) are marked internal; where
// they fail, or Cache Storage is not there (a private window), Python starts
// the slow way. Downloads come first: no snapshot is kept where it would take
// more than a tenth of the storage the site has left (a small disk, a small
// profile), so that it never squeezes or stalls a download into the
// origin-private file system.
import * as shim from "./cod-shim.mjs";

const CACHE = "cod-retrieve-python";
const SIZE_HEADER = "x-snapshot-bytes";
const ROOM_PER_SNAPSHOT_BYTE = 10;

// How Python started in this realm (devtools, tests, the benchmark): from "snapshot"
// or "fresh", the seconds it took, why a snapshot kept here was not used, and why
// a fresh start kept none for the next visit.
export const started = { from: null, seconds: null, snapshotProblem: null, snapshotSkipped: null };
globalThis.codRetrievePython = started;

export async function startPython(base) {
  const t0 = performance.now();
  const { loadPyodide, version } = await import(new URL("pyodide/pyodide.mjs", base).href);
  const indexURL = new URL("pyodide/", base).href;
  const key = new URL(`pyodide/memory-snapshot-${version}.bin`, base).href;
  const cache = await openCache();
  let pyodide = cache ? await fromSnapshot(cache, key, loadPyodide, indexURL) : null;
  started.from = pyodide ? "snapshot" : "fresh";
  pyodide ??= await freshMakingSnapshot(cache, key, loadPyodide, indexURL);
  // Pyodide's heap and malloc (internal, no public equivalent): CRC32C reads Python's
  // buffers in place (crc32c.mjs); without them it copies them.
  await shim.init(base, pyodide._module?.memory, pyodide._module?._malloc);
  pyodide.registerJsModule("cod_shim", shim);
  await pyodide.loadPackage(["cod-retrieve"], { messageCallback: () => {} });
  started.seconds = (performance.now() - t0) / 1000;
  return pyodide;
}

async function openCache() {
  try {
    return typeof caches === "object" ? await caches.open(CACHE) : null;
  } catch {
    return null;                  // no Cache Storage here (Firefox's private windows)
  }
}

async function fromSnapshot(cache, key, loadPyodide, indexURL) {
  let bytes;
  try {
    const hit = await cache.match(key);
    if (!hit) return null;
    bytes = new Uint8Array(await hit.arrayBuffer());
    if (bytes.length !== Number(hit.headers.get(SIZE_HEADER))) throw new Error("the snapshot is cut short");
    const pyodide = await loadPyodide({ indexURL, _loadSnapshot: bytes });
    // The snapshot froze the state of `random` as seeded when it was taken.
    pyodide.runPython("import random; random.seed()");
    return pyodide;
  } catch (e) {
    started.snapshotProblem = String(e?.message ?? e);
    console.warn(`cod-retrieve: Python's memory snapshot did not load (${started.snapshotProblem}); starting afresh`);
    await cache.delete(key).catch(() => {});
    return null;
  }
}

async function freshMakingSnapshot(cache, key, loadPyodide, indexURL) {
  if (!cache) {
    started.snapshotSkipped = "this browser gives the site no Cache Storage here";
    return loadPyodide({ indexURL });
  }
  const pyodide = await loadPyodide({ indexURL, _makeSnapshot: true });
  try {
    const snapshot = pyodide.makeMemorySnapshot();
    started.snapshotSkipped = await tooLittleRoom(snapshot.length);
    if (started.snapshotSkipped) return giveBackGlobals(pyodide);
    const headers = { [SIZE_HEADER]: String(snapshot.length), "content-type": "application/octet-stream" };
    cache.put(key, new Response(snapshot, { headers }))
      .then(() => dropOtherSnapshots(cache, key))
      .catch(() => {});                   // a full disk: the next visit starts afresh
  } catch (e) {
    started.snapshotSkipped = String(e?.message ?? e);
    console.warn(`cod-retrieve: no memory snapshot of Python (${started.snapshotSkipped})`);
  }
  return giveBackGlobals(pyodide);
}

function giveBackGlobals(pyodide) {
  // To be able to take the snapshot, Pyodide gave Python the JS globals behind a
  // recording proxy; give it the globals themselves, as a start from the snapshot does.
  pyodide._api.config.jsglobals = globalThis;
  pyodide.runPython("import sys; sys.modules.pop('js', None)");
  pyodide.registerJsModule("js", globalThis);
  return pyodide;
}

// Why a snapshot of `bytes` should not be kept (a sentence), or null: it would
// take more than a tenth of what is left of the site's storage. Where the
// browser cannot say, it is kept.
async function tooLittleRoom(bytes) {
  let estimate;
  try {
    estimate = await navigator.storage.estimate();
  } catch {
    return null;
  }
  const left = estimate.quota - estimate.usage;
  if (!(left < ROOM_PER_SNAPSHOT_BYTE * bytes)) return null;
  const mb = (n) => `${Math.round(n / 1e6)} MB`;
  return `the snapshot (${mb(bytes)}) would take more than a tenth of the ${mb(left)} left of this site's storage`;
}

// Snapshots of other Pyodide versions from this site (kept before it was
// updated) can never load again: 30 MB each of the origin's storage.
async function dropOtherSnapshots(cache, key) {
  const prefix = key.slice(0, key.lastIndexOf("/") + 1) + "memory-snapshot-";
  for (const request of await cache.keys()) {
    if (request.url.startsWith(prefix) && request.url !== key) await cache.delete(request);
  }
}
