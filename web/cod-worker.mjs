// The dedicated Worker that runs Pyodide and every download job, so the page's
// main thread only renders. Started by cod-retrieve.mjs (from a blob: URL that
// imports this module, so a portal on another origin can use it). Messages:
//   page -> worker  {id, op, args}              a call (cod-ops.mjs); answered {id, ok, value | error}
//   worker -> page  {type: "event", job, event, payload}   a Job callback's payload
//   worker -> page  {type: "host", id, op, args}            something only the page can do
//   page -> worker  {type: "host-reply", id, ok, value | error}
import * as shim from "./cod-shim.mjs";
import { createOps } from "./cod-ops.mjs";
import { startPython } from "./python-boot.mjs";

const BASE = new URL(".", import.meta.url);
const hostCalls = new Map();
let nextHostCall = 1;

function askHost(op, args = []) {
  const id = nextHostCall++;
  return new Promise((resolve, reject) => {
    hostCalls.set(id, { resolve, reject });
    self.postMessage({ type: "host", id, op, args });
  });
}

async function loadPython({ serviceWorkerUsable }) {
  shim.setHost({
    serviceWorkerUsable,
    call: (op, ...args) => askHost(op, args),
    deliver: (file, name) => self.postMessage({ type: "host", id: 0, op: "deliver", args: [file, name] }),
  });
  const pyodide = await startPython(BASE);
  return pyodide.pyimport("cod_retrieve.browser");
}

const ops = createOps({
  loadPython,
  askHost,
  emit(job, event, payload) {
    const buffer = event === "save" ? payload?.file?.buffer : undefined;
    self.postMessage({ type: "event", job, event, payload }, buffer ? [buffer] : []);
  },
});

// The calls, for devtools and tests (what a job asked of the network: ops.traffic(job)).
globalThis.codRetrieveOps = ops;

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
    self.postMessage({ id, ok: true, value: await ops[op](...args) });
  } catch (e) {
    self.postMessage({ id, ok: false, error: { name: String(e?.name ?? "Error"), message: String(e?.message ?? e),
                                               kind: e?.kind } });
  }
};
