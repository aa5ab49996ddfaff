;; The issue's example as a verdict module (spec/wasm-verdict.md): drop TCP SYNs to port 22
;; unless the source is in 10.0.0.0/8; everything else passes to the normal policy.
(module
  (import "sluice" "pkt_u8" (func $u8 (param i32) (result i32)))
  (import "sluice" "pkt_u16" (func $u16 (param i32) (result i32)))
  (func (export "verdict") (param $len i32) (result i32)
    (local $l4 i32)
    ;; Not TCP: pass.
    (if (i32.ne (call $u8 (i32.const 9)) (i32.const 6))
      (then (return (i32.const 0))))
    (local.set $l4 (i32.shl (i32.and (call $u8 (i32.const 0)) (i32.const 15)) (i32.const 2)))
    ;; Not to port 22: pass.
    (if (i32.ne (call $u16 (i32.add (local.get $l4) (i32.const 2))) (i32.const 22))
      (then (return (i32.const 0))))
    ;; Not a SYN (or a SYN-ACK): pass.
    (if (i32.ne (i32.and (call $u8 (i32.add (local.get $l4) (i32.const 13))) (i32.const 0x12))
                (i32.const 0x02))
      (then (return (i32.const 0))))
    ;; From 10.0.0.0/8: pass; from anywhere else: deny.
    (if (result i32) (i32.eq (call $u8 (i32.const 12)) (i32.const 10))
      (then (i32.const 0))
      (else (i32.const 2)))))
