;; Guest whose `wapc_init` calls the host (default/test:ping/Ping with
;; "init") and keeps the reply: its initialisation has an effect outside the
;; instance, so it must run in every instance and cannot be pre-initialised.
;; Operation "seen" (any name) replies with the reply `wapc_init` received.
(module
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapc" "__host_response" (func $host_response (param i32)))
  (import "wapc" "__host_response_len" (func $host_response_len (result i32)))

  (memory (export "memory") 1)
  (global $len (mut i32) (i32.const 0))

  (data (i32.const 16) "default")    ;; 7 bytes
  (data (i32.const 32) "test:ping")  ;; 9 bytes
  (data (i32.const 48) "Ping")       ;; 4 bytes
  (data (i32.const 64) "init")       ;; 4 bytes

  (func (export "wapc_init")
    (if (call $host_call
          (i32.const 16) (i32.const 7)
          (i32.const 32) (i32.const 9)
          (i32.const 48) (i32.const 4)
          (i32.const 64) (i32.const 4))
      (then
        (global.set $len (call $host_response_len))
        (if (i32.gt_u (global.get $len) (i32.const 1024))
          (then (unreachable)))
        (call $host_response (i32.const 1024)))))

  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (call $guest_response (i32.const 1024) (global.get $len))
    (i32.const 1))
)
