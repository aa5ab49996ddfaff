;; A verdict function (spec/wasm-verdict.md): deny TCP SYNs to port 22 unless the source is
;; in 10.0.0.0/8; pass everything else to the normal policy.
(module
  (import "sluice" "pkt_u8" (func $u8 (param i32) (result i32)))
  (import "sluice" "pkt_u16" (func $u16 (param i32) (result i32)))
  (import "sluice" "pkt_u32" (func $u32 (param i32) (result i32)))
  (func (export "verdict") (param $len i32) (result i32)
    (local $l4 i32)
    ;; IPv4, TCP, long enough for the ports and flags
    (if (i32.lt_u (local.get $len) (i32.const 20)) (then (return (i32.const 0))))
    (if (i32.ne (i32.shr_u (call $u8 (i32.const 0)) (i32.const 4)) (i32.const 4))
      (then (return (i32.const 0))))
    (if (i32.ne (call $u8 (i32.const 9)) (i32.const 6)) (then (return (i32.const 0))))
    (local.set $l4 (i32.shl (i32.and (call $u8 (i32.const 0)) (i32.const 15)) (i32.const 2)))
    ;; SYN without ACK to port 22 (a short header traps: fail closed)
    (if (i32.ne (call $u16 (i32.add (local.get $l4) (i32.const 2))) (i32.const 22))
      (then (return (i32.const 0))))
    (if (i32.ne (i32.and (call $u8 (i32.add (local.get $l4) (i32.const 13))) (i32.const 0x12))
                (i32.const 0x02))
      (then (return (i32.const 0))))
    ;; allowed from 10.0.0.0/8, denied otherwise
    (select (i32.const 1) (i32.const 2)
      (i32.eq (i32.shr_u (call $u32 (i32.const 12)) (i32.const 24)) (i32.const 10)))))
