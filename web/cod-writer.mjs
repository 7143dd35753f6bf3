// The writer worker: started by the job's Worker (cod-shim.mjs) to write files
// on a thread of its own: the origin-private file system through sync access
// handles, whose write and close block the thread that makes them (the
// browser is asked for quota and for the file's release), and whole files of
// a picked folder through createWritable. Made here, they no longer hold up
// Python's reading, checking and parsing.
// Messages (from the shim):
//   {op: "dir", dir: id, handle}                   a folder, sent once, named by id from then on
//   {id, op: "writeFile", dir, name, bytes, swap}  a whole file (bytes: a transferred Uint8Array);
//                                                  swap: through createWritable (a picked folder)
//   {id, op: "open", dir, name, file}              a file written in pieces: write, then close or abort
//   {id, op: "write", file, bytes} / {id, op: "close", file} / {id, op: "abort", file}
// Each call with an id is answered {id, ok} or {id, ok: false, error: {name, message}}, with
// the call's bytes buffer (transferred back, for the shim to fill again).
import { openSyncWriter, writeWholeFile, writeWholeWritable } from "./file-writers.mjs";

const dirs = new Map();
const files = new Map();

// A file opened here and not yet closed or aborted (a write that failed aborts it).
function openFile(id) {
  const w = files.get(id);
  if (!w) throw new Error(`file ${id} is not open in the writer (closed, aborted, or its earlier write failed)`);
  return w;
}

async function run(m) {
  switch (m.op) {
    case "writeFile": return (m.swap ? writeWholeWritable : writeWholeFile)(dirs.get(m.dir), m.name, m.bytes);
    case "open": files.set(m.file, await openSyncWriter(dirs.get(m.dir), m.name)); return;
    case "write": {
      const w = openFile(m.file);
      try {
        w.write(m.bytes);
      } catch (e) {
        files.delete(m.file);
        await w.discard();
        throw e;
      }
      return;
    }
    case "close": { const w = openFile(m.file); files.delete(m.file); return w.close(); }
    case "abort": { const w = files.get(m.file); files.delete(m.file); return w?.discard(); }
    default: throw new Error(`unknown writer call ${m.op}`);
  }
}

self.onmessage = async ({ data: m }) => {
  if (m.op === "dir") { dirs.set(m.dir, m.handle); return; }
  // The bytes' buffer goes back with the answer, to be filled again.
  const back = m.bytes ? { bytes: m.bytes.buffer, transfer: [m.bytes.buffer] } : { transfer: [] };
  try {
    await run(m);
    self.postMessage({ id: m.id, ok: true, bytes: back.bytes }, back.transfer);
  } catch (e) {
    self.postMessage({ id: m.id, ok: false, bytes: back.bytes,
                       error: { name: String(e?.name ?? "Error"), message: String(e?.message ?? e) } }, back.transfer);
  }
};

self.postMessage({ ready: true });
