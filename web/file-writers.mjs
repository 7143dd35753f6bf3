// Writing whole files, for the writer worker (cod-writer.mjs) and the shim.
//
// In the origin-private file system, through createSyncAccessHandle
// (dedicated Workers only). The bytes go to a hidden
// `.<name>.<random>.part` (what Python clears as a killed writer's leftover)
// that close() moves onto the name, so nothing shows under a final name until
// it is complete, as with createWritable.

export const syncWritable = typeof FileSystemFileHandle !== "undefined" &&
  typeof FileSystemFileHandle.prototype.createSyncAccessHandle === "function" &&
  typeof FileSystemFileHandle.prototype.move === "function";

export class SyncWriter {
  constructor(dir, name, temp, handle, access) {
    Object.assign(this, { dir, name, temp, handle, access, at: 0 });
  }

  // Synchronous: all of `bytes` (a Uint8Array) is in the file when it returns.
  write(bytes) {
    for (let done = 0; done < bytes.byteLength;) {
      const n = syncWriteResult(this.access.write(done ? bytes.subarray(done) : bytes, { at: this.at }),
                                bytes.byteLength - done, this.name);
      done += n;
      this.at += n;
    }
  }

  async close() {
    try {
      // No flush(): in Chromium it is an fdatasync per file; createWritable's
      // close() does not sync either.
      const size = this.access.getSize();
      if (size !== this.at) throw new Error(`${this.name} holds ${size} bytes after writing ${this.at}`);
      this.access.close();
      await this.handle.move(this.name);
    } catch (e) {
      await this.discard();
      throw e;
    }
  }

  async discard() {
    try { this.access.close(); } catch { /* closed already */ }
    await this.dir.removeEntry(this.temp).catch(() => {});
  }
}

// A sync write does not throw when the quota is used up. Chromium writes what
// fits and returns base::File's error code as an unsigned number (4294967288 =
// -8, FILE_ERROR_NO_SPACE); Firefox writes nothing and returns 0. Anything but
// 1..wanted bytes fails.
function syncWriteResult(n, wanted, name) {
  if (n > 0 && n <= wanted) return n;
  const code = n | 0;
  if (code === -8 || code === 0) {
    throw Object.assign(new Error(`the storage quota is used up while writing ${name}`), { name: "QuotaExceededError" });
  }
  throw new Error(`writing ${name} failed (file error ${code})`);
}

export async function openSyncWriter(dir, name) {
  const temp = `.${name}.${Math.random().toString(36).slice(2, 10)}.part`;
  const handle = await dir.getFileHandle(temp, { create: true });
  try {
    return new SyncWriter(dir, name, temp, handle, await handle.createSyncAccessHandle());
  } catch (e) {
    await dir.removeEntry(temp).catch(() => {});
    throw e;
  }
}

// A whole file: open, one write, close; nothing left behind if any step fails.
export async function writeWholeFile(dir, name, bytes) {
  const w = await openSyncWriter(dir, name);
  try {
    w.write(bytes);
  } catch (e) {
    await w.discard();
    throw e;
  }
  await w.close();
}

// Anywhere else (a picked folder), through createWritable: its swap file shows
// nothing new under the name until close() succeeds. When the write or close
// fails, the file getFileHandle({create}) left empty is removed again (a file
// that had content keeps it): nothing under a final name unless it is complete.
export async function writeWholeWritable(dir, name, bytes) {
  const handle = await dir.getFileHandle(name, { create: true });
  let writable;
  try {
    writable = await handle.createWritable();
    await writable.write(bytes);
    await writable.close();
  } catch (e) {
    await writable?.abort().catch(() => {});
    await removeIfEmpty(dir, name, handle);
    throw e;
  }
}

export async function removeIfEmpty(dir, name, handle) {
  try {
    if ((await handle.getFile()).size === 0) await dir.removeEntry(name);
  } catch { /* gone already */ }
}
