;; A module that imports WASI. Actors reach the world only through
;; capabilities, so the runtime must refuse to load it.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32)
    (i32.const 1))
)
