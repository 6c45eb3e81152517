;; waPC "namespace" generation guest: 6-argument `__host_call(ns_ptr, ns_len, op_ptr, op_len, ptr, len)`
;; (binding is implicitly "default"). Every call forwards its payload
;; to namespace "test:ping", operation "Ping" and returns the reply (or the host error as guest error).
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__guest_error" (func $guest_error (param i32 i32)))
  (import "wapc" "__host_call" (func $host_call (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapc" "__host_response" (func $host_response (param i32)))
  (import "wapc" "__host_response_len" (func $host_response_len (result i32)))
  (import "wapc" "__host_error" (func $host_error (param i32)))
  (import "wapc" "__host_error_len" (func $host_error_len (result i32)))
  (memory (export "memory") 4)
  (data (i32.const 16) "test:ping") ;; 9 bytes
  (data (i32.const 32) "Ping") ;; 4 bytes
  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (if (i32.gt_u (local.get $op_len) (i32.const 3000))
      (then (unreachable)))
    (if (i32.gt_u (local.get $msg_len) (i32.const 65536))
      (then (unreachable)))
    (call $guest_request (i32.const 1024) (i32.const 4096))
    (if (call $host_call (i32.const 16) (i32.const 9) (i32.const 32) (i32.const 4) (i32.const 4096) (local.get $msg_len))
      (then
        (if (i32.gt_u (call $host_response_len) (i32.const 131072))
          (then (unreachable)))
        (call $host_response (i32.const 131072))
        (call $guest_response (i32.const 131072) (call $host_response_len))
        (return (i32.const 1))))
    (if (i32.gt_u (call $host_error_len) (i32.const 131072))
      (then (unreachable)))
    (call $host_error (i32.const 131072))
    (call $guest_error (i32.const 131072) (call $host_error_len))
    (i32.const 0))
)
