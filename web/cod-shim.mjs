// The thin JS side of the Python package: byte copies, CRC32C in WebAssembly,
// and a directory listing. Registered in Pyodide as the module `cod_shim`.
let hasher = null;

export async function init(baseUrl) {
  if (!globalThis.hashwasm) await import(new URL("vendor/hash-wasm-crc32.js", baseUrl).href);
  hasher = await globalThis.hashwasm.createCRC32(0x82f63b78); // CRC32C (Castagnoli)
}

export function crcReady() {
  return hasher !== null;
}

// Copy a Python buffer (bytes, bytearray, memoryview) into a fresh Uint8Array.
export function toU8(pyBuffer) {
  const view = pyBuffer.getBuffer("u8");
  try {
    return view.data.slice();
  } finally {
    view.release();
  }
}

// One hasher serves every stream: each keeps its own saved state.
export function crcUpdate(state, pyBuffer) {
  hasher.init();
  if (state) hasher.load(state);
  const view = pyBuffer.getBuffer("u8");
  try {
    hasher.update(view.data);
  } finally {
    view.release();
  }
  return hasher.save();
}

export function crcDigest(state) {
  hasher.init();
  if (state) hasher.load(state);
  const b = hasher.digest("binary");
  return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
}

export async function listNames(dirHandle) {
  const names = [];
  for await (const name of dirHandle.keys()) names.push(name);
  return names;
}

// Zip mode: hand a finished OPFS spool file (a disk-backed File) to the
// browser's download through an object URL and an <a download> click. The
// browser reads the file asynchronously, so the URL stays valid for a while.
export function deliverFile(file, name) {
  if (typeof document === "undefined") throw new Error("no document to start a download from");
  const url = URL.createObjectURL(file);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.rel = "noopener";
  a.style.display = "none";
  document.body.append(a);
  a.click();
  a.remove();
  const keepMs = 120_000 + Math.ceil(file.size / 20e6) * 1000;
  setTimeout(() => URL.revokeObjectURL(url), keepMs);
}

// A whole small file in one call: one promise for Python to await instead of
// four (each await is a trip through the event loop). createWritable writes to
// a swap file, so the name shows nothing until close() succeeds.
export async function writeFile(dirHandle, name, bytes) {
  const handle = await dirHandle.getFileHandle(name, { create: true });
  const writable = await handle.createWritable();
  try {
    await writable.write(bytes);
  } catch (e) {
    await writable.abort().catch(() => {});
    throw e;
  }
  await writable.close();
}
