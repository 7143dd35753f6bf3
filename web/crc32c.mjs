// CRC32C in WebAssembly (crc32c.wat), reading Python's buffers in place.
//
// Given Pyodide's WebAssembly memory and its allocator, the module is
// instantiated on that memory: a buffer Python lends (a PyProxy's
// getBuffer() view, which lies in the heap) is checked where it is, with no
// copy, and the tables take 8 KiB of the heap for good. Any other bytes, or
// every byte where no heap is given, go through a second instance on a
// memory of its own, copied in 1 MiB pieces.
//
// Long inputs are cut into two halves checked side by side (update2) and
// joined: a CRC register run over n more bytes of zeros is the register
// times x^(8n) modulo the polynomial, so reg(A then B) = reg(A) x^(8|B|) + reg(B).

const TABLES = 8 * 1024;
const PIECE = 1 << 20;
const TWO_STREAMS = 4096;        // shorter inputs: one stream
const POLY = 0x82f63b78;         // reflected

// a * b modulo the polynomial (bit-reflected: bit 31 is x^0).
function multModP(a, b) {
  let p = 0;
  for (let m = 0x80000000; m !== 0 && a !== 0; m >>>= 1) {
    if (a & m) { p ^= b; a ^= m; }
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

const X2N = [0x40000000];        // x^(2^k) modulo the polynomial: x^1, x^2, x^4, ...
for (let k = 1; k < 64; k++) X2N.push(multModP(X2N[k - 1], X2N[k - 1]));

// x^(8 n) modulo the polynomial.
function xPowBytes(n) {
  let p = 0x80000000, k = 3;
  for (; n > 0; n = Math.floor(n / 2), k++) if (n % 2) p = multModP(X2N[k], p);
  return p;
}

function bind(exports) {
  return (crc, ptr, n) => {
    if (n < TWO_STREAMS) return exports.update(crc, ptr, n) >>> 0;
    const half = Math.floor(n / 16) * 8;
    const [a, b] = exports.update2(crc, ptr, half);
    const joined = ~(multModP(xPowBytes(half), a >>> 0) ^ b) >>> 0;
    const rest = n - 2 * half;
    return rest ? exports.update(joined, ptr + 2 * half, rest) >>> 0 : joined;
  };
}

export async function loadCrc32c(url, heap = null, alloc = null) {
  const module = await WebAssembly.compile(await (await fetch(url)).arrayBuffer());
  let direct = null;
  if (heap instanceof WebAssembly.Memory && typeof alloc === "function") {
    try {
      const exports = new WebAssembly.Instance(module, { env: { memory: heap } }).exports;
      exports.init(alloc(TABLES));
      direct = bind(exports);
    } catch {
      direct = null;         // a heap the module cannot import: copy instead
    }
  }
  const own = new WebAssembly.Memory({ initial: Math.ceil((TABLES + PIECE) / 65536) });
  const exports = new WebAssembly.Instance(module, { env: { memory: own } }).exports;
  exports.init(0);
  const copying = bind(exports);
  const scratch = new Uint8Array(own.buffer, TABLES, PIECE);

  // crc: the value so far (0 to start); bytes: a Uint8Array. Returns the new value, unsigned.
  return function update(crc, bytes) {
    if (direct !== null && bytes.buffer === heap.buffer) return direct(crc, bytes.byteOffset, bytes.byteLength);
    for (let at = 0; at < bytes.byteLength; at += PIECE) {
      const piece = bytes.subarray(at, at + PIECE);
      scratch.set(piece);
      crc = copying(crc, TABLES, piece.byteLength);
    }
    return crc >>> 0;
  };
}
