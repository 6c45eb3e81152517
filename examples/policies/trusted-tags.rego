# Start only actors whose signed claims carry the tag `approved`.
#
# Tags are part of the claims the issuer signed (`waxosuit claims sign
# --tag approved`), so an actor cannot add one to itself. The host checks
# the signature before it asks this policy.
package waxosuit.start

default allow := false

allow if "approved" in input.claims.wascap.tags
