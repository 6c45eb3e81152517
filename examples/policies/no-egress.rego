# No outbound HTTP, except for the actors listed (by claims name or by M…
# key) in `data.egress.actors` (see data.json).
#
# This file and read-only-kv.rego both add to the `deny` set of package
# waxosuit.invoke, so they can be loaded together: a call is allowed when no
# rule of the package denies it. (Neither declares `default allow`: two
# defaults for one rule would be a conflict. A denied call leaves `allow`
# undefined, which denies because the package exists.)
package waxosuit.invoke

allow if count(deny) == 0

deny contains msg if {
	input.capability == "wascc:http_client"
	input.direction == "outbound"
	not egress_allowed
	msg := sprintf("actor %s may not make outbound HTTP requests", [input.actor.name])
}

egress_allowed if input.actor.name in data.egress.actors

egress_allowed if input.actor.key in data.egress.actors
