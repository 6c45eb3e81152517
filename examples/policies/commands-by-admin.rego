# Lattice commands (start/stop actors and providers) run on this host only
# when signed by one of the keys listed in `data.lattice.admins` (see
# data.json): the lattice already checks that a command is signed by a
# trusted host; this narrows who may change what runs here.
package waxosuit.command

default allow := false

allow if input.signer in data.lattice.admins
