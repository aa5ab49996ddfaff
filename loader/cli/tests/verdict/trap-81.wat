;; Traps (`unreachable`) on TCP to port 81, returns 7 (a bad verdict, also a trap) for port
;; 82, and passes everything else.
(module
  (import "sluice" "pkt_u8" (func $u8 (param i32) (result i32)))
  (import "sluice" "pkt_u16" (func $u16 (param i32) (result i32)))
  (func (export "verdict") (param $len i32) (result i32)
    (local $port i32)
    (local.set $port
      (call $u16 (i32.add (i32.shl (i32.and (call $u8 (i32.const 0)) (i32.const 15))
                                   (i32.const 2))
                          (i32.const 2))))
    (if (i32.eq (local.get $port) (i32.const 81)) (then unreachable))
    (if (result i32) (i32.eq (local.get $port) (i32.const 82))
      (then (i32.const 7))
      (else (i32.const 0)))))
