;; Imports a function from the `wapc` module that is not part of the contract.
(module
  (import "wapc" "__open_socket" (func (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32)
    (i32.const 1))
)
