;; A guest that hands the host invalid pointers and strings.
;;
;; "oob_response": `__guest_response` with a range far outside linear memory.
;; "bad_utf8": `__host_call` whose namespace is not UTF-8; the host error it
;;   gets back is reported as the guest error.
;; "oob_host_call": `__host_call` whose payload range is out of bounds.
;; "oob_request": a second `__guest_request` with an out-of-bounds payload pointer.
;; "long_error": `__guest_error` of 60,000 bytes (more than the host keeps).
;; "oob_error": `__guest_error` whose first bytes are in memory, the rest not.
;; Anything else echoes the payload, to show the host is fine afterwards.
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__guest_error" (func $guest_error (param i32 i32)))
  (import "wapc" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapc" "__host_error" (func $host_error (param i32)))
  (import "wapc" "__host_error_len" (func $host_error_len (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "default")
  (data (i32.const 32) "\ff\fe\fd")          ;; invalid UTF-8 namespace
  (data (i32.const 48) "Ping")
  (data (i32.const 64) "oob_response")       ;; 12 bytes
  (data (i32.const 80) "bad_utf8")           ;; 8 bytes
  (data (i32.const 96) "oob_host_call")      ;; 13 bytes
  (data (i32.const 112) "oob_request")       ;; 11 bytes
  (data (i32.const 128) "long_error")        ;; 10 bytes
  (data (i32.const 144) "oob_error")         ;; 9 bytes

  ;; Compares the operation at 1024 (length $len) with the string at $s.
  (func $op_is (param $len i32) (param $s i32) (param $slen i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $len) (local.get $slen))
      (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (if (i32.ne (i32.load8_u (i32.add (i32.const 1024) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $s) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (if (i32.gt_u (local.get $op_len) (i32.const 3000))
      (then (unreachable)))
    (if (i32.gt_u (local.get $msg_len) (i32.const 32768))
      (then (unreachable)))
    (call $guest_request (i32.const 1024) (i32.const 4096))
    (if (call $op_is (local.get $op_len) (i32.const 112) (i32.const 11))
      (then
        ;; Asking again is allowed; this time the payload pointer is invalid.
        (call $guest_request (i32.const 1024) (i32.const 0x7fff0000))
        (call $guest_response (i32.const 0) (i32.const 0))
        (return (i32.const 1))))
    (if (call $op_is (local.get $op_len) (i32.const 144) (i32.const 9))
      (then
        (call $guest_error (i32.const 1000) (i32.const 100000))
        (return (i32.const 0))))
    (if (call $op_is (local.get $op_len) (i32.const 128) (i32.const 10))
      (then
        (call $guest_error (i32.const 0) (i32.const 60000))
        (return (i32.const 0))))
    (if (call $op_is (local.get $op_len) (i32.const 64) (i32.const 12))
      (then
        (call $guest_response (i32.const 0xfffffff0) (i32.const 4096))
        (return (i32.const 1))))
    (if (call $op_is (local.get $op_len) (i32.const 80) (i32.const 8))
      (then
        (if (call $host_call (i32.const 16) (i32.const 7) (i32.const 32) (i32.const 3)
                             (i32.const 48) (i32.const 4) (i32.const 4096) (local.get $msg_len))
          (then
            (call $guest_response (i32.const 4096) (i32.const 0))
            (return (i32.const 1))))
        (call $host_error (i32.const 40000))
        (call $guest_error (i32.const 40000) (call $host_error_len))
        (return (i32.const 0))))
    (if (call $op_is (local.get $op_len) (i32.const 96) (i32.const 13))
      (then
        (if (call $host_call (i32.const 16) (i32.const 7) (i32.const 48) (i32.const 4)
                             (i32.const 48) (i32.const 4) (i32.const 65000) (i32.const 100000))
          (then
            (call $guest_response (i32.const 4096) (i32.const 0))
            (return (i32.const 1))))
        (call $host_error (i32.const 40000))
        (call $guest_error (i32.const 40000) (call $host_error_len))
        (return (i32.const 0))))
    (call $guest_response (i32.const 4096) (local.get $msg_len))
    (i32.const 1))
)
