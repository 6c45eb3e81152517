;; Guest whose initialisation leaves state behind in memory and in
;; non-exported mutable globals, and makes no host call: the runtime can
;; pre-initialise it (run `_start` and `wapc_init` once, start every
;; instance from the result).
;;
;; `_start` sets $started to 7; `wapc_init` adds 41 to $counter and writes
;; "init-done" at 256. Operations:
;;   "peek": replies with the 9 bytes at 256, then $counter and $started
;;           as little-endian i32s (17 bytes);
;;   "poke": overwrites the 9 bytes with "XXXXXXXXX" and adds 1000 to
;;           $counter (state that must stay in this one instance).
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__guest_error" (func $guest_error (param i32 i32)))

  (memory (export "memory") 1)
  (global $counter (mut i32) (i32.const 0))
  (global $started (mut i32) (i32.const 0))

  (data (i32.const 64) "unknown operation") ;; 17 bytes
  (data (i32.const 96) "XXXXXXXXX")         ;; 9 bytes

  (func (export "_start")
    (global.set $started (i32.const 7)))

  (func (export "wapc_init")
    (global.set $counter (i32.add (global.get $counter) (i32.const 41)))
    ;; "init-done"
    (i64.store (i32.const 256) (i64.const 0x6e6f642d74696e69))
    (i32.store8 (i32.const 264) (i32.const 0x65)))

  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (local $op i32)
    (if (i32.or (i32.ne (local.get $op_len) (i32.const 4))
                (i32.gt_u (local.get $msg_len) (i32.const 1024)))
      (then
        (call $guest_error (i32.const 64) (i32.const 17))
        (return (i32.const 0))))
    (call $guest_request (i32.const 1024) (i32.const 2048))
    (local.set $op (i32.load (i32.const 1024)))
    ;; "peek"
    (if (i32.eq (local.get $op) (i32.const 0x6b656570))
      (then
        (i32.store (i32.const 265) (global.get $counter))
        (i32.store (i32.const 269) (global.get $started))
        (call $guest_response (i32.const 256) (i32.const 17))
        (return (i32.const 1))))
    ;; "poke"
    (if (i32.eq (local.get $op) (i32.const 0x656b6f70))
      (then
        (memory.copy (i32.const 256) (i32.const 96) (i32.const 9))
        (global.set $counter (i32.add (global.get $counter) (i32.const 1000)))
        (call $guest_response (i32.const 96) (i32.const 0))
        (return (i32.const 1))))
    (call $guest_error (i32.const 64) (i32.const 17))
    (i32.const 0))
)
