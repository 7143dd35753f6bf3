// Plain-JavaScript baseline (no Python): stream each series tar with fetch,
// parse the 512-byte tar headers incrementally (PAX 'x' records give the path
// and size of the next member), and write every member to its own OPFS file
// with createWritable (one write per file, several files in flight), in an OPFS
// folder or in a folder the caller has (the real picker's).
// No CRC32C checks, no metadata.json, no listing: the caller passes the series.

const BLOCK = 512;
const ascii = new TextDecoder("latin1");
const utf8 = new TextDecoder("utf-8");

function cstr(b, off, len) {
  let end = off;
  while (end < off + len && b[end] !== 0) end++;
  return utf8.decode(b.subarray(off, end));
}

function octal(b, off, len) {
  const s = ascii.decode(b.subarray(off, off + len)).replace(/\0.*$/, "").trim();
  return s ? parseInt(s, 8) : 0;
}

function parsePax(buf) {
  // records: "<len> <key>=<value>\n"
  const out = {};
  let i = 0;
  while (i < buf.length) {
    let sp = i;
    while (sp < buf.length && buf[sp] !== 0x20) sp++;
    const len = parseInt(ascii.decode(buf.subarray(i, sp)), 10);
    if (!len) break;
    const rec = utf8.decode(buf.subarray(sp + 1, i + len - 1));
    const eq = rec.indexOf("=");
    out[rec.slice(0, eq)] = rec.slice(eq + 1);
    i += len;
  }
  return out;
}

class TarToOpfs {
  constructor(dir, writer) {
    this.dir = dir;            // series folder handle
    this.writer = writer;      // shared write pool
    this.header = new Uint8Array(BLOCK);
    this.headerFill = 0;
    this.state = "header";     // header | data | pad | end
    this.member = null;        // {path, size, type, buf, fill}
    this.skip = 0;
    this.pax = null;
    this.files = 0;
  }

  // Feeds one network chunk; awaits a write slot whenever a member completes.
  async feed(chunk) {
    let p = 0;
    while (p < chunk.length) {
      if (this.state === "end") return;
      if (this.state === "header") {
        const n = Math.min(BLOCK - this.headerFill, chunk.length - p);
        this.header.set(chunk.subarray(p, p + n), this.headerFill);
        this.headerFill += n; p += n;
        if (this.headerFill === BLOCK) {
          this.headerFill = 0;
          if (this.onHeader()) await this.onMemberDone();   // empty member
        }
      } else if (this.state === "data") {
        const m = this.member;
        const n = Math.min(m.size - m.fill, chunk.length - p);
        if (m.buf) m.buf.set(chunk.subarray(p, p + n), m.fill);
        m.fill += n; p += n;
        if (m.fill === m.size) await this.onMemberDone();
      } else if (this.state === "pad") {
        const n = Math.min(this.skip, chunk.length - p);
        this.skip -= n; p += n;
        if (this.skip === 0) this.state = "header";
      }
    }
  }

  onHeader() {
    const h = this.header;
    if (h.every((x) => x === 0)) { this.state = "end"; return false; }
    const type = String.fromCharCode(h[156] || 0x30);
    let size = octal(h, 124, 12);
    let name = cstr(h, 0, 100);
    const prefix = cstr(h, 345, 155);
    if (prefix) name = prefix + "/" + name;
    if (this.pax && (type !== "x" && type !== "g")) {
      if (this.pax.path) name = this.pax.path;
      if (this.pax.size) size = parseInt(this.pax.size, 10);
      this.pax = null;
    }
    const keep = type === "0" || type === "x";   // regular files and PAX records
    this.member = { path: name, size, type, buf: keep ? new Uint8Array(size) : null, fill: 0 };
    this.state = "data";
    return size === 0;
  }

  async onMemberDone() {
    const m = this.member;
    this.member = null;
    this.skip = (BLOCK - (m.size % BLOCK)) % BLOCK;
    this.state = this.skip ? "pad" : "header";
    if (m.type === "x") this.pax = parsePax(m.buf);
    else if (m.type === "0") { this.files += 1; await this.writer.write(this.dir, m.path, m.buf); }
  }
}

class WritePool {
  constructor(limit) { this.limit = limit; this.inFlight = new Set(); this.dirs = new Map(); this.error = null; }

  async folder(base, parts) {
    let dir = base;
    for (const part of parts) {
      let key = this.dirs.get(dir);
      if (!key) { key = new Map(); this.dirs.set(dir, key); }
      let next = key.get(part);
      if (!next) { next = dir.getDirectoryHandle(part, { create: true }); key.set(part, next); }
      dir = await next;
    }
    return dir;
  }

  async write(base, path, buf) {
    while (this.inFlight.size >= this.limit) await Promise.race(this.inFlight);
    if (this.error) throw this.error;
    const p = (async () => {
      const parts = path.split("/");
      const dir = await this.folder(base, parts.slice(0, -1));
      const fh = await dir.getFileHandle(parts[parts.length - 1], { create: true });
      const w = await fh.createWritable();
      await w.write(buf);
      await w.close();
    })().catch((e) => { this.error ??= e; }).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  async drain() {
    while (this.inFlight.size) await Promise.race(this.inFlight);
    if (this.error) throw this.error;
  }
}

function tarUrl(cfg, series) {
  const name = `${cfg.datastore}/studies/${cfg.study}/series/${series}.tar`;
  return `${cfg.apiBase}/storage/v1/b/${encodeURIComponent(cfg.bucket)}/o/${encodeURIComponent(name)}?alt=media`;
}

// The raw ceiling: each series tar fetched (cfg.concurrency at a time) and piped
// into one OPFS file with createWritable. No parsing, no checks, one file per
// series: what the network and the disk take when nothing else is done.
export async function runCeiling(cfg) {
  const root = await navigator.storage.getDirectory();
  const top = await root.getDirectoryHandle(cfg.folder, { create: true });
  const queue = [...cfg.series];
  const t0 = performance.now();
  async function worker() {
    while (queue.length) {
      const series = queue.shift();
      const resp = await fetch(tarUrl(cfg, series), { headers: { Authorization: `Bearer ${cfg.token ?? "t"}` } });
      if (!resp.ok) throw new Error(`${resp.status} for ${series}.tar`);
      const fh = await top.getFileHandle(`${series}.tar`, { create: true });
      await resp.body.pipeTo(await fh.createWritable());
    }
  }
  await Promise.all(Array.from({ length: Math.min(cfg.concurrency ?? 3, cfg.series.length) }, worker));
  return { seconds: (performance.now() - t0) / 1000 };
}

// cfg: {apiBase, bucket, datastore, study, series: [uid...], token, concurrency, writesInFlight, folder}
// top: the folder to write into (null: OPFS folder cfg.folder)
export async function runBaseline(cfg, top = null) {
  const root = await navigator.storage.getDirectory();
  top ??= await root.getDirectoryHandle(cfg.folder, { create: true });
  const studyDir = await top.getDirectoryHandle(cfg.study, { create: true });
  const pool = new WritePool(cfg.writesInFlight ?? 8);
  const queue = [...cfg.series];
  let bytes = 0, files = 0;
  const t0 = performance.now();

  async function one(series) {
    const url = tarUrl(cfg, series);
    const resp = await fetch(url, { headers: { Authorization: `Bearer ${cfg.token ?? "t"}` } });
    if (!resp.ok) throw new Error(`${resp.status} for ${url}`);
    const dir = await studyDir.getDirectoryHandle(series, { create: true });
    const tar = new TarToOpfs(dir, pool);
    const reader = resp.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      bytes += value.length;
      await tar.feed(value);
    }
    files += tar.files;
  }

  async function worker() {
    while (queue.length) await one(queue.shift());
  }
  const n = Math.min(cfg.concurrency ?? 3, cfg.series.length);
  await Promise.all(Array.from({ length: n }, worker));
  await pool.drain();
  return { seconds: (performance.now() - t0) / 1000, tarBytes: bytes, files };
}
