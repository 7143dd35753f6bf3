// cod-retrieve's service worker: streamed zip downloads for engines without a
// usable origin-private file system. Registered by cod-retrieve.mjs only when
// that path is taken. The page announces a download with a MessagePort
// ({type: "cod-download", id, name, port}); a navigation to
// <scope>__cod-download__/<id>/<name> is answered with a streamed attachment
// whose pull() asks the page for the next chunk and waits for it, so the page
// writes only as fast as the browser saves (real backpressure, a chunk or two
// in flight). The page answers {chunk} | {done} | {error}; a download cancelled
// in the browser is told to the page as {type: "cancel"}.
"use strict";

const PREFIX = "__cod-download__/";
const pending = new Map(); // id -> { name, port }

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("message", (event) => {
  const d = event.data;
  if (!d || d.type !== "cod-download" || !event.ports[0]) return; // pings only keep us alive
  const port = event.ports[0];
  pending.set(String(d.id), { name: String(d.name), port });
  port.postMessage({ type: "ready" });
});

function contentDisposition(name) {
  const plain = name.replace(/[^\x20-\x7e]|["\\]/g, "_");
  return `attachment; filename="${plain}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  const rest = url.pathname.slice(new URL(self.registration.scope).pathname.length);
  if (!rest.startsWith(PREFIX)) return;
  const id = decodeURIComponent(rest.slice(PREFIX.length).split("/")[0]);
  const entry = pending.get(id);
  if (!entry) {
    event.respondWith(new Response("unknown or finished download", { status: 404 }));
    return;
  }
  pending.delete(id);
  const { port, name } = entry;
  let answer = null; // resolves the pull() that waits for the page
  let finished;
  const done = new Promise((resolve) => { finished = resolve; });
  const stream = new ReadableStream({
    pull(controller) {
      return new Promise((resolve) => {
        answer = (d) => {
          answer = null;
          if (d.type === "chunk") controller.enqueue(new Uint8Array(d.chunk));
          else if (d.type === "done") { controller.close(); finished(); }
          else { controller.error(new Error(d.message || "download aborted")); finished(); }
          resolve();
        };
        port.postMessage({ type: "pull" });
      });
    },
    cancel() {
      port.postMessage({ type: "cancel" });
      finished();
    },
  }, { highWaterMark: 1, size: () => 1 });
  port.onmessage = (ev) => {
    const d = ev.data || {};
    if (answer) answer(d); // the page only ever answers a pull
  };
  event.waitUntil(done);
  event.respondWith(new Response(stream, {
    headers: {
      "Content-Type": "application/zip",
      "Content-Disposition": contentDisposition(name),
      "Cache-Control": "no-store",
    },
  }));
});
