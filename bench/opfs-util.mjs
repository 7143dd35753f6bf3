// OPFS helpers shared by the bench pages: empty the origin-private file system,
// and count the .dcm files (and their bytes) under a folder without reading them.

export async function clearOpfs() {
  const root = await navigator.storage.getDirectory();
  const names = [];
  for await (const name of root.keys()) names.push(name);
  for (const name of names) await root.removeEntry(name, { recursive: true });
  return names.length;
}

export async function freshFolder(name) {
  await clearOpfs();
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle(name, { create: true });
}

export async function countFiles(name) {
  const root = await navigator.storage.getDirectory();
  const dir = await root.getDirectoryHandle(name);
  let dcmFiles = 0, dcmBytes = 0;
  const other = [];
  async function walk(d, prefix) {
    for await (const [n, h] of d.entries()) {
      if (h.kind === "directory") { await walk(h, prefix + n + "/"); continue; }
      if (!n.endsWith(".dcm")) { other.push(prefix + n); continue; }
      dcmFiles += 1;
      dcmBytes += (await h.getFile()).size;
    }
  }
  await walk(dir, "");
  return { dcmFiles, dcmBytes, other };
}

// Names and total size of the files directly under OPFS folder `name` (the
// ceiling's one file per series tar).
export async function countTars(name) {
  const root = await navigator.storage.getDirectory();
  const dir = await root.getDirectoryHandle(name);
  let tarFiles = 0, tarBytes = 0;
  for await (const [, h] of dir.entries()) {
    if (h.kind !== "file") continue;
    tarFiles += 1;
    tarBytes += (await h.getFile()).size;
  }
  return { tarFiles, tarBytes };
}

// The main thread's long tasks (over 50 ms, PerformanceObserver "longtask"),
// watched from the moment a bench page loads; `longestTaskSince(t0)` is the
// longest that started at or after performance.now() = t0 (null: none seen,
// or the browser has no longtask timing).
const longTasks = [];
let longTaskTiming = false;
try {
  new PerformanceObserver((list) => { for (const e of list.getEntries()) longTasks.push(e); })
    .observe({ type: "longtask", buffered: false });
  longTaskTiming = true;
} catch { /* no longtask timing */ }

export async function longestTaskSince(t0) {
  if (!longTaskTiming) return null;
  await new Promise((r) => setTimeout(r, 0));     // entries are delivered in a task of their own
  return longTasks.filter((e) => e.startTime >= t0).reduce((m, e) => Math.max(m, e.duration), 0);
}
