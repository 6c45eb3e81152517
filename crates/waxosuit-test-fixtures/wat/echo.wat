;; Hand-written waPC guest against the final 8-argument `__host_call` ABI.
;;
;; Memory layout: operation name at 1024, request payload at 4096, responses
;; right after the payload. Memory grows on demand for large payloads.
;;
;; Operations: "echo" (returns the payload), "ping" (host call
;; default/test:ping/Ping with the payload, returns the reply or reports the
;; host error as a guest error), "fail" (guest error), "trap" (unreachable),
;; "loop" (never returns), "zero" (returns 0 without an error message),
;; "none" (returns 1 without a response). Anything else is a guest error.
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__guest_error" (func $guest_error (param i32 i32)))
  (import "wapc" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapc" "__host_response" (func $host_response (param i32)))
  (import "wapc" "__host_response_len" (func $host_response_len (result i32)))
  (import "wapc" "__host_error" (func $host_error (param i32)))
  (import "wapc" "__host_error_len" (func $host_error_len (result i32)))
  (import "wapc" "__console_log" (func $console_log (param i32 i32)))

  (memory (export "memory") 2)

  (data (i32.const 16) "default")      ;; binding, 7 bytes
  (data (i32.const 32) "test:ping")    ;; namespace, 9 bytes
  (data (i32.const 48) "Ping")         ;; operation, 4 bytes
  (data (i32.const 64) "wat failure")  ;; 11 bytes
  (data (i32.const 80) "unknown operation") ;; 17 bytes
  (data (i32.const 112) "wat echo guest ready") ;; 20 bytes

  ;; Grows memory so that [0, end) is addressable; returns 0 on failure.
  (func $ensure (param $end i32) (result i32)
    (local $have i32)
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.le_u (local.get $end) (local.get $have))
      (then (return (i32.const 1))))
    (i32.ne
      (memory.grow
        (i32.shr_u
          (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
          (i32.const 16)))
      (i32.const -1)))

  (func (export "wapc_init")
    (call $console_log (i32.const 112) (i32.const 20)))

  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (local $op i32)
    (local $resp i32)
    (local $len i32)
    (if (i32.gt_u (local.get $op_len) (i32.const 3000))
      (then (unreachable)))
    (if (i32.eqz (call $ensure (i32.add (i32.const 4096) (local.get $msg_len))))
      (then (unreachable)))
    (call $guest_request (i32.const 1024) (i32.const 4096))
    (if (i32.ne (local.get $op_len) (i32.const 4))
      (then
        (call $guest_error (i32.const 80) (i32.const 17))
        (return (i32.const 0))))
    (local.set $op (i32.load (i32.const 1024)))
    ;; "echo"
    (if (i32.eq (local.get $op) (i32.const 0x6f686365))
      (then
        (call $guest_response (i32.const 4096) (local.get $msg_len))
        (return (i32.const 1))))
    ;; "ping"
    (if (i32.eq (local.get $op) (i32.const 0x676e6970))
      (then
        (local.set $resp (i32.add (i32.const 4096) (local.get $msg_len)))
        (if (call $host_call
              (i32.const 16) (i32.const 7)
              (i32.const 32) (i32.const 9)
              (i32.const 48) (i32.const 4)
              (i32.const 4096) (local.get $msg_len))
          (then
            (local.set $len (call $host_response_len))
            (if (i32.eqz (call $ensure (i32.add (local.get $resp) (local.get $len))))
              (then (unreachable)))
            (call $host_response (local.get $resp))
            (call $guest_response (local.get $resp) (local.get $len))
            (return (i32.const 1))))
        (local.set $len (call $host_error_len))
        (if (i32.eqz (call $ensure (i32.add (local.get $resp) (local.get $len))))
          (then (unreachable)))
        (call $host_error (local.get $resp))
        (call $guest_error (local.get $resp) (local.get $len))
        (return (i32.const 0))))
    ;; "fail"
    (if (i32.eq (local.get $op) (i32.const 0x6c696166))
      (then
        (call $guest_error (i32.const 64) (i32.const 11))
        (return (i32.const 0))))
    ;; "trap"
    (if (i32.eq (local.get $op) (i32.const 0x70617274))
      (then (unreachable)))
    ;; "loop"
    (if (i32.eq (local.get $op) (i32.const 0x706f6f6c))
      (then (loop $forever (br $forever))))
    ;; "zero"
    (if (i32.eq (local.get $op) (i32.const 0x6f72657a))
      (then (return (i32.const 0))))
    ;; "none"
    (if (i32.eq (local.get $op) (i32.const 0x656e6f6e))
      (then (return (i32.const 1))))
    (call $guest_error (i32.const 80) (i32.const 17))
    (i32.const 0))
)
