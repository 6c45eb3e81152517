// Fails the build when the module imports anything but the waPC host
// functions or lacks the waPC exports: Waxosuit refuses such a module at
// load, and finding out here is cheaper than at `waxosuit up`. The usual
// culprit is AssemblyScript's `env.abort` (see `use` in asconfig.json).
import { readFileSync } from "node:fs";

const WAPC_IMPORTS = new Set([
  "__host_call",
  "__host_response",
  "__host_response_len",
  "__host_error",
  "__host_error_len",
  "__guest_request",
  "__guest_response",
  "__guest_error",
  "__console_log",
]);

const path = process.argv[2];
if (!path) {
  console.error("usage: node check-imports.mjs MODULE.wasm");
  process.exit(2);
}
const module = new WebAssembly.Module(readFileSync(path));
const problems = [];
for (const { module: from, name, kind } of WebAssembly.Module.imports(module)) {
  if (from !== "wapc" || kind !== "function" || !WAPC_IMPORTS.has(name)) {
    problems.push(`imports ${kind} "${from}"."${name}", which is not a waPC host function`);
  }
}
const exports = new Map(WebAssembly.Module.exports(module).map((e) => [e.name, e.kind]));
if (exports.get("__guest_call") !== "function") {
  problems.push('does not export the function "__guest_call"');
}
if (exports.get("memory") !== "memory") {
  problems.push('does not export its memory as "memory"');
}
if (problems.length > 0) {
  for (const problem of problems) {
    console.error(`${path} ${problem}`);
  }
  process.exit(1);
}
console.log(`${path}: waPC imports and exports only`);
