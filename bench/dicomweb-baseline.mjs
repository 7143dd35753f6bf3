// Plain-JavaScript baseline for a DICOMweb download (no Python): for each series,
// fetch the WADO-RS multipart answer (transfer-syntax=*, streamed, `concurrency` series
// at a time), find the parts between the boundaries as the bytes arrive, and write each
// part to its own OPFS file with createWritable (one write per file, `writes` files in
// flight). No listing (the series are given), no check of what a part holds.

const enc = new TextEncoder();

function indexOf(hay, needle, from) {
  const first = needle[0];
  outer: for (let i = hay.indexOf(first, from); i !== -1 && i <= hay.length - needle.length; i = hay.indexOf(first, i + 1)) {
    for (let j = 1; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

async function series(root, study, uid, dir, pool) {
  const resp = await fetch(`${root}/studies/${study}/series/${uid}`,
    { headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
  if (!resp.ok) throw new Error(`series ${uid}: HTTP ${resp.status}`);
  const boundary = /boundary="?([^";]+)"?/.exec(resp.headers.get("content-type"))[1];
  const delim = enc.encode(`\r\n--${boundary}`);
  const reader = resp.body.getReader();
  let buf = new Uint8Array(0), files = 0, bytes = 0, started = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const joined = new Uint8Array(buf.length + value.length);
    joined.set(buf); joined.set(value, buf.length);
    buf = joined;
    if (!started) {                                  // the first delimiter has no CRLF before it
      const at = indexOf(buf, delim.subarray(2), 0);
      if (at === -1) continue;
      buf = buf.subarray(at - 2 < 0 ? 0 : at - 2);
      if (at < 2) { const b = new Uint8Array(buf.length + 2); b.set([13, 10]); b.set(buf, 2); buf = b; }
      started = true;
    }
    for (;;) {                                       // whole parts: delimiter, headers, body, delimiter
      const headEnd = indexOf(buf, enc.encode("\r\n\r\n"), delim.length);
      if (headEnd === -1) break;
      const next = indexOf(buf, delim, headEnd + 4);
      if (next === -1) break;
      const body = buf.slice(headEnd + 4, next);
      buf = buf.subarray(next);
      const name = `part-${uid}-${files++}.dcm`;
      bytes += body.length;
      await pool.add(async () => {
        const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
        await w.write(body);
        await w.close();
      });
    }
  }
  return { files, bytes };
}

class Pool {
  constructor(limit) { this.limit = limit; this.running = new Set(); }
  async add(task) {
    while (this.running.size >= this.limit) await Promise.race(this.running);
    const p = task().finally(() => this.running.delete(p));
    this.running.add(p);
  }
  async drain() { await Promise.all(this.running); }
}

export async function runDicomwebBaseline({ root, study, series: all, folder, concurrency = 3, writes = 8 }) {
  const top = await navigator.storage.getDirectory();
  const dir = await top.getDirectoryHandle(folder, { create: true });
  const pool = new Pool(writes);
  const t0 = performance.now();
  const queue = [...all];
  let files = 0, bytes = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (queue.length) {
      const r = await series(root, study, queue.shift(), dir, pool);
      files += r.files; bytes += r.bytes;
    }
  }));
  await pool.drain();
  return { seconds: (performance.now() - t0) / 1000, files, bytes };
}

export async function runDicomwebProject({ root, study, folder, concurrency = 3 }) {
  const { createCodDownload } = await import("/cod-retrieve.mjs");
  const cod = await createCodDownload({ concurrency });
  const top = await navigator.storage.getDirectory();
  await cod.initDirectory({ handle: await top.getDirectoryHandle(folder, { create: true }) });
  cod.initSource({ dicomweb: root });
  const t0 = performance.now();
  const job = await cod.download([study], false);
  const errors = [];
  job.onError((p) => errors.push(p.error.message));
  const result = await job.start();
  return { seconds: (performance.now() - t0) / 1000, errors, saved: result.succeeded.length, bytes: result.bytesDone };
}
