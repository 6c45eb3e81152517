;; Second version of the echo guest, used to test hot swap: every operation
;; returns the payload prefixed with "v2:".
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 4093) "v2:")
  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (if (i32.gt_u (local.get $op_len) (i32.const 3000))
      (then (unreachable)))
    (if (i32.gt_u (local.get $msg_len) (i32.const 126976))
      (then (unreachable)))
    (call $guest_request (i32.const 1024) (i32.const 4096))
    (call $guest_response (i32.const 4093) (i32.add (local.get $msg_len) (i32.const 3)))
    (i32.const 1))
)
