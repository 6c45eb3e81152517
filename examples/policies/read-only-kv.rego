# The key-value store is read-only: every operation of the waSCC key-value
# contract that changes data is denied; reads (Get, Range, SetQuery,
# SetUnion, SetIntersection, KeyExists) go through.
#
# Composes with no-egress.rego through the shared `deny` set.
package waxosuit.invoke

allow if count(deny) == 0

kv_writes := {"Set", "Add", "Del", "Clear", "Push", "ListItemDelete", "SetAdd", "SetRemove"}

deny contains msg if {
	input.capability == "wascc:keyvalue"
	input.operation in kv_writes
	msg := sprintf("key-value operation %s changes data, and the store is read-only", [input.operation])
}
