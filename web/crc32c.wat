;; CRC32C (Castagnoli, reflected polynomial 0x82F63B78) as GCS reports it,
;; slicing-by-8: eight 1 KiB tables, eight bytes per step. The memory is
;; imported, so the module can read Python's buffers where they lie in
;; Pyodide's WebAssembly heap, with no copy (crc32c.mjs). Assembled into
;; crc32c.wasm by `build.py site` (wat2wasm, Debian's wabt).
;;   init(base): fills the tables at `base` (8 KiB of the memory, kept for good)
;;   update(crc, ptr, len) -> crc: continues a CRC over len bytes at ptr (start with 0)
;;   update2(crc, ptr, n) -> two registers: see below
(module
  (import "env" "memory" (memory 0))
  (global $tab (mut i32) (i32.const 0))
  (func (export "init") (param $base i32) (local $i i32) (local $c i32) (local $j i32) (local $k i32)
    (global.set $tab (local.get $base))
    (loop $fill
      (local.set $c (local.get $i))
      (local.set $j (i32.const 8))
      (loop $bits
        (local.set $c (i32.xor (i32.shr_u (local.get $c) (i32.const 1))
          (i32.and (i32.sub (i32.const 0) (i32.and (local.get $c) (i32.const 1))) (i32.const 0x82F63B78))))
        (br_if $bits (local.tee $j (i32.sub (local.get $j) (i32.const 1)))))
      (i32.store (i32.add (local.get $base) (i32.shl (local.get $i) (i32.const 2))) (local.get $c))
      (br_if $fill (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 256))))
    (local.set $k (i32.const 1))
    (loop $tables
      (local.set $i (i32.const 0))
      (loop $row
        (local.set $c (i32.load (i32.add (local.get $base)
          (i32.add (i32.shl (i32.sub (local.get $k) (i32.const 1)) (i32.const 10)) (i32.shl (local.get $i) (i32.const 2))))))
        (local.set $c (i32.xor (i32.shr_u (local.get $c) (i32.const 8))
          (i32.load (i32.add (local.get $base) (i32.shl (i32.and (local.get $c) (i32.const 255)) (i32.const 2))))))
        (i32.store (i32.add (local.get $base) (i32.add (i32.shl (local.get $k) (i32.const 10)) (i32.shl (local.get $i) (i32.const 2)))) (local.get $c))
        (br_if $row (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 256))))
      (br_if $tables (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 1))) (i32.const 8)))))
  (func (export "update") (param $crc i32) (param $p i32) (param $n i32) (result i32) (local $w0 i32) (local $w1 i32)
    (local.set $crc (i32.xor (local.get $crc) (i32.const -1)))
    (block $done
      (br_if $done (i32.lt_u (local.get $n) (i32.const 8)))
      (loop $wide
        (local.set $w0 (i32.load offset=0 (local.get $p)))
        (local.set $w1 (i32.load offset=4 (local.get $p)))
        (local.set $w0 (i32.xor (local.get $w0) (local.get $crc)))
        ;; crc = T7[byte 0] ^ T6[byte 1] ^ ... ^ T0[byte 7], table k at $tab + 1024 k
        (i32.load offset=7168 (i32.add (global.get $tab) (i32.shl (i32.and (local.get $w0) (i32.const 255)) (i32.const 2))))
        (i32.load offset=6144 (i32.add (global.get $tab) (i32.shl (i32.and (i32.shr_u (local.get $w0) (i32.const 8)) (i32.const 255)) (i32.const 2))))
        i32.xor
        (i32.load offset=5120 (i32.add (global.get $tab) (i32.shl (i32.and (i32.shr_u (local.get $w0) (i32.const 16)) (i32.const 255)) (i32.const 2))))
        i32.xor
        (i32.load offset=4096 (i32.add (global.get $tab) (i32.shl (i32.shr_u (local.get $w0) (i32.const 24)) (i32.const 2))))
        i32.xor
        (i32.load offset=3072 (i32.add (global.get $tab) (i32.shl (i32.and (local.get $w1) (i32.const 255)) (i32.const 2))))
        i32.xor
        (i32.load offset=2048 (i32.add (global.get $tab) (i32.shl (i32.and (i32.shr_u (local.get $w1) (i32.const 8)) (i32.const 255)) (i32.const 2))))
        i32.xor
        (i32.load offset=1024 (i32.add (global.get $tab) (i32.shl (i32.and (i32.shr_u (local.get $w1) (i32.const 16)) (i32.const 255)) (i32.const 2))))
        i32.xor
        (i32.load offset=0 (i32.add (global.get $tab) (i32.shl (i32.shr_u (local.get $w1) (i32.const 24)) (i32.const 2))))
        i32.xor
        local.set $crc
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (br_if $wide (i32.ge_u (local.tee $n (i32.sub (local.get $n) (i32.const 8))) (i32.const 8)))))
    (block $end
      (br_if $end (i32.eqz (local.get $n)))
      (loop $byte
        (local.set $crc (i32.xor (i32.shr_u (local.get $crc) (i32.const 8))
          (i32.load (i32.add (global.get $tab) (i32.shl (i32.and (i32.xor (local.get $crc) (i32.load8_u (local.get $p))) (i32.const 255)) (i32.const 2))))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br_if $byte (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
    (i32.xor (local.get $crc) (i32.const -1)))
  ;; update2(crc, p, n) -> (reg0, reg1): two streams of n bytes each (n a multiple of 8)
  ;; at p and p + n, stepped together so that their table lookups overlap (about 1.7x
  ;; update's speed in V8). reg0 continues crc; reg1 starts from 0. Both are raw
  ;; registers, not inverted: crc32c.mjs joins them (shifting reg0 over n bytes).
  (func (export "update2") (param $crc i32) (param $p i32) (param $n i32) (result i32 i32)
    (local $i i32) (local $q i32) (local $c0 i32) (local $a0 i32) (local $b0 i32) (local $c1 i32) (local $a1 i32) (local $b1 i32)
    (local.set $c0 (i32.xor (local.get $crc) (i32.const -1)))
    (local.set $q (i32.add (local.get $p) (local.get $n)))
    (block $done
      (br_if $done (i32.eqz (local.get $n)))
      (loop $l
      ;; stream 0 at p, stream 1 at p + n: eight bytes of each per step
      (local.set $a0 (i32.load (i32.add (local.get $p) (local.get $i))))
      (local.set $b0 (i32.load offset=4 (i32.add (local.get $p) (local.get $i))))
      (local.set $a0 (i32.xor (local.get $a0) (local.get $c0)))
      (local.set $a1 (i32.load (i32.add (local.get $q) (local.get $i))))
      (local.set $b1 (i32.load offset=4 (i32.add (local.get $q) (local.get $i))))
      (local.set $a1 (i32.xor (local.get $a1) (local.get $c1)))
      (i32.load offset=7168 (i32.add (global.get $tab) (i32.shl (i32.and (local.get $a0) (i32.const 255)) (i32.const 2))))
      (i32.load offset=6144 (i32.add (global.get $tab) (i32.shl (i32.and (i32.shr_u (local.get $a0) (i32.const 8)) (i32.const 255)) (i32.const 2))))
      i32.xor
      (i32.load offset=5120 (i32.add (global.get $tab) (i32.shl (i32.and (i32.shr_u (local.get $a0) (i32.const 16)) (i32.const 255)) (i32.const 2))))
      i32.xor
      (i32.load offset=4096 (i32.add (global.get $tab) (i32.shl (i32.shr_u (local.get $a0) (i32.const 24)) (i32.const 2))))
      i32.xor
      (i32.load offset=3072 (i32.add (global.get $tab) (i32.shl (i32.and (local.get $b0) (i32.const 255)) (i32.const 2))))
      i32.xor
      (i32.load offset=2048 (i32.add (global.get $tab) (i32.shl (i32.and (i32.shr_u (local.get $b0) (i32.const 8)) (i32.const 255)) (i32.const 2))))
      i32.xor
      (i32.load offset=1024 (i32.add (global.get $tab) (i32.shl (i32.and (i32.shr_u (local.get $b0) (i32.const 16)) (i32.const 255)) (i32.const 2))))
      i32.xor
      (i32.load offset=0 (i32.add (global.get $tab) (i32.shl (i32.shr_u (local.get $b0) (i32.const 24)) (i32.const 2))))
      i32.xor
      local.set $c0
      (i32.load offset=7168 (i32.add (global.get $tab) (i32.shl (i32.and (local.get $a1) (i32.const 255)) (i32.const 2))))
      (i32.load offset=6144 (i32.add (global.get $tab) (i32.shl (i32.and (i32.shr_u (local.get $a1) (i32.const 8)) (i32.const 255)) (i32.const 2))))
      i32.xor
      (i32.load offset=5120 (i32.add (global.get $tab) (i32.shl (i32.and (i32.shr_u (local.get $a1) (i32.const 16)) (i32.const 255)) (i32.const 2))))
      i32.xor
      (i32.load offset=4096 (i32.add (global.get $tab) (i32.shl (i32.shr_u (local.get $a1) (i32.const 24)) (i32.const 2))))
      i32.xor
      (i32.load offset=3072 (i32.add (global.get $tab) (i32.shl (i32.and (local.get $b1) (i32.const 255)) (i32.const 2))))
      i32.xor
      (i32.load offset=2048 (i32.add (global.get $tab) (i32.shl (i32.and (i32.shr_u (local.get $b1) (i32.const 8)) (i32.const 255)) (i32.const 2))))
      i32.xor
      (i32.load offset=1024 (i32.add (global.get $tab) (i32.shl (i32.and (i32.shr_u (local.get $b1) (i32.const 16)) (i32.const 255)) (i32.const 2))))
      i32.xor
      (i32.load offset=0 (i32.add (global.get $tab) (i32.shl (i32.shr_u (local.get $b1) (i32.const 24)) (i32.const 2))))
      i32.xor
      local.set $c1
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 8))) (local.get $n)))))
    (local.get $c0) (local.get $c1)))
