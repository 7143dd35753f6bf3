// CRC32C in WebAssembly (crc32c.wat), reading Python's buffers in place.
//
// Given Pyodide's WebAssembly memory and its allocator, the module is
// instantiated on that memory: a buffer Python lends (a PyProxy's
// getBuffer() view, which lies in the heap) is checked where it is, with no
// copy, and the tables take 8 KiB of the heap for good. Any other bytes, or
// every byte where no heap is given, go through a second instance on a
// memory of its own, copied in 1 MiB pieces.

const TABLES = 8 * 1024;
const PIECE = 1 << 20;

export async function loadCrc32c(url, heap = null, alloc = null) {
  const module = await WebAssembly.compile(await (await fetch(url)).arrayBuffer());
  let direct = null;
  if (heap instanceof WebAssembly.Memory && typeof alloc === "function") {
    try {
      direct = new WebAssembly.Instance(module, { env: { memory: heap } }).exports;
      direct.init(alloc(TABLES));
    } catch {
      direct = null;         // a heap the module cannot import: copy instead
    }
  }
  const own = new WebAssembly.Memory({ initial: Math.ceil((TABLES + PIECE) / 65536) });
  const copying = new WebAssembly.Instance(module, { env: { memory: own } }).exports;
  copying.init(0);
  const scratch = new Uint8Array(own.buffer, TABLES, PIECE);

  // crc: the value so far (0 to start); bytes: a Uint8Array. Returns the new value, unsigned.
  return function update(crc, bytes) {
    if (direct !== null && bytes.buffer === heap.buffer) {
      return direct.update(crc, bytes.byteOffset, bytes.byteLength) >>> 0;
    }
    for (let at = 0; at < bytes.byteLength; at += PIECE) {
      const piece = bytes.subarray(at, at + PIECE);
      scratch.set(piece);
      crc = copying.update(crc, TABLES, piece.byteLength);
    }
    return crc >>> 0;
  };
}
