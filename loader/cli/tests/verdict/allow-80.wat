;; Allows TCP to port 80 outright (IHL-aware); passes everything else.
(module
  (import "sluice" "pkt_u8" (func $u8 (param i32) (result i32)))
  (import "sluice" "pkt_u16" (func $u16 (param i32) (result i32)))
  (func (export "verdict") (param $len i32) (result i32)
    (if (result i32)
      (i32.and
        (i32.eq (call $u8 (i32.const 9)) (i32.const 6))
        (i32.eq (call $u16 (i32.add (i32.shl (i32.and (call $u8 (i32.const 0)) (i32.const 15))
                                              (i32.const 2))
                                     (i32.const 2)))
                (i32.const 80)))
      (then (i32.const 1))
      (else (i32.const 0)))))
