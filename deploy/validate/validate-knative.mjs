// Validates Knative Services offline: node validate-knative.mjs FILE.yaml...
//
// Three checks per serving.knative.dev/v1 Service:
//  1. the @kubernetes-models/knative schema (`.validate()`): field types, as
//     Knative's CRD (knative-v1.10) describes them;
//  2. unknown fields, everywhere: that schema lists each object's properties
//     but (like the CRD) does not forbid others, so `runAsNonRot: true` or
//     `readinesProbe:` would pass it. The package carries the schema only as
//     compiled ajv code, so the object is handed to it through Proxies that
//     record which keys it looks up: a key of an object the schema describes
//     (it looked up at least one of its properties) that it never looked up
//     is not in the schema. Maps (labels, annotations, resources) are read by
//     iterating over their keys, so every key of those counts as looked up.
//     An object the schema does not describe at all (free-form in the CRD)
//     is an error unless FREE_FORM below lists its fields;
//  3. the rules Knative's admission webhook adds on top, which no schema
//     carries (knative.dev/serving pkg/apis/serving/k8s_validation.go:
//     validateContainersPorts, validateContainerPorts, validateProbe,
//     reservedEnvVars, reservedPorts, validateVolumeMounts,
//     validateSecurityContext; pkg/apis/autoscaling/annotation_validation.go
//     for the autoscaling.knative.dev/* annotations), plus waxosuit's own:
//     the admin address must not be a port the queue-proxy sidecar listens
//     on in the same pod, and an autoscaling.knative.dev/ annotation Knative
//     does not read is a typo.
// Prints one line per problem and exits 1 when there is any.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { Service } from "@kubernetes-models/knative/serving.knative.dev/v1/Service";

// Objects Knative's CRD leaves free-form (x-kubernetes-preserve-unknown-fields
// without properties), keyed by their path with indices dropped, and the
// fields the Kubernetes type has.
const FREE_FORM = new Map([["spec.template.spec.volumes.emptyDir", new Set(["medium", "sizeLimit"])]]);

// `value` copied, with every object behind a Proxy that records the keys read.
function instrument(value, path, records) {
  if (Array.isArray(value)) return value.map((v, i) => instrument(v, `${path}[${i}]`, records));
  if (value === null || typeof value !== "object") return value;
  const record = { path, keys: Object.keys(value), read: new Set(), iterated: false };
  records.push(record);
  const target = {};
  for (const [k, v] of Object.entries(value)) target[k] = instrument(v, path === "" ? k : `${path}.${k}`, records);
  return new Proxy(target, {
    get(t, k, receiver) {
      if (typeof k === "string") record.read.add(k);
      return Reflect.get(t, k, receiver);
    },
    has(t, k) {
      if (typeof k === "string") record.read.add(k);
      return Reflect.has(t, k);
    },
    ownKeys(t) {
      record.iterated = true;
      return Reflect.ownKeys(t);
    },
  });
}

// Runs the model's schema on `object`; returns [schemaError, unknownFieldErrors].
function schemaCheck(model, object) {
  const records = [];
  const proxied = instrument(object, "", records);
  let schemaError = null;
  try {
    model.prototype.validate.call(proxied);
  } catch (e) {
    schemaError = e.message;
  }
  const unknown = [];
  // Below an unknown or unchecked field, one report is enough. Parents come
  // before their children in `records`.
  const reported = [];
  const under = (path) => reported.some((p) => path === p || path.startsWith(`${p}.`) || path.startsWith(`${p}[`));
  for (const { path, keys, read, iterated } of records) {
    if (iterated || keys.length === 0 || under(path)) continue;
    const at = (k) => (path === "" ? k : `${path}.${k}`);
    let known = read;
    if (read.size === 0) {
      known = FREE_FORM.get(path.replace(/\[\d+\]/g, ""));
      if (known === undefined) {
        unknown.push(`${path}: the Knative schema does not describe this object, so its fields cannot be checked`);
        reported.push(path);
        continue;
      }
    }
    for (const k of keys.filter((k) => !known.has(k))) {
      unknown.push(`${at(k)}: unknown field`);
      reported.push(at(k));
    }
  }
  return [schemaError, unknown];
}

// autoscaling.knative.dev/* annotations Knative reads (pkg/apis/autoscaling/
// register.go; the camelCase spellings are deprecated aliases and not
// accepted here), each with a check of its value (annotation_validation.go).
const nonNegativeInt = (v) => (/^\d+$/.test(v) && Number(v) <= 2147483647 ? null : "must be a non-negative integer");
const number = (min, max) => (v) => {
  const n = v.trim() === "" ? NaN : Number(v);
  return Number.isFinite(n) && n >= min && n <= max ? null : `must be a number from ${min} to ${max}`;
};
const duration = (min, max) => (v) => {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(v);
  if (v === "" || m === null) return "must be a duration in whole seconds, like 30s or 1m30s";
  const seconds = Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
  return seconds >= min && seconds <= max ? null : `must be from ${min}s to ${max}s`;
};
const oneOf = (...allowed) => (v) => (allowed.includes(v) ? null : `must be one of ${allowed.join(", ")}`);
const KPA = "kpa.autoscaling.knative.dev";
const AUTOSCALING = new Map([
  ["class", (v) => (v.endsWith(".autoscaling.knative.dev") && ![KPA, "hpa.autoscaling.knative.dev"].includes(v) ? "unknown autoscaler class" : null)],
  ["min-scale", nonNegativeInt],
  ["max-scale", nonNegativeInt],
  ["initial-scale", nonNegativeInt],
  ["activation-scale", (v) => nonNegativeInt(v) ?? (Number(v) < 2 ? "must be greater than 1" : null)],
  ["scale-down-delay", duration(0, 3600)],
  ["scale-to-zero-pod-retention-period", duration(0, 3600)],
  ["window", duration(6, 3600)],
  // With the KPA (the default class) only these two; other classes read their own.
  ["metric", (v, a) => ((a["autoscaling.knative.dev/class"] ?? KPA) === KPA ? oneOf("concurrency", "rps")(v) : null)],
  ["metric-aggregation-algorithm", oneOf("linear", "weighted-exponential", "weightedExponential")],
  ["target", number(0.01, Number.MAX_VALUE)],
  ["target-utilization-percentage", number(1, 100)],
  ["target-burst-capacity", (v) => (number(-1, Number.MAX_VALUE)(v) === null && (Number(v) >= 0 || Number(v) === -1) ? null : "must be -1 or a non-negative number")],
  ["panic-window-percentage", number(1, 100)],
  ["panic-threshold-percentage", number(110, 1000)],
]);

function annotationRules(annotations, path) {
  const errors = [];
  const scales = {};
  for (const [key, value] of Object.entries(annotations ?? {})) {
    if (!key.startsWith("autoscaling.knative.dev/")) continue;
    const name = key.slice("autoscaling.knative.dev/".length);
    const check = AUTOSCALING.get(name);
    if (check === undefined) {
      errors.push(`${path}.${key}: not an annotation Knative reads (${[...AUTOSCALING.keys()].join(", ")})`);
      continue;
    }
    if (typeof value !== "string") {
      errors.push(`${path}.${key}: must be a string (quote it: "${value}")`);
      continue;
    }
    const problem = check(value, annotations);
    if (problem) errors.push(`${path}.${key}: invalid value "${value}": ${problem}`);
    else scales[name] = Number(value);
  }
  if (scales["max-scale"] > 0 && scales["min-scale"] > scales["max-scale"]) {
    errors.push(`${path}: max-scale=${scales["max-scale"]} is less than min-scale=${scales["min-scale"]}`);
  }
  return errors;
}

// networking.BackendHTTPPort, BackendHTTP2Port, QueueAdminPort,
// AutoscalingQueueMetricsPort, UserQueueMetricsPort, ProfilingDefaultPort.
const RESERVED_PORTS = new Set([8012, 8013, 8022, 9090, 9091, 8008]);
const RESERVED_ENV = new Set(["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"]);
const PORT_NAMES = new Set(["", "http1", "h2c"]);

function webhookRules(service) {
  const errors = [];
  const spec = service.spec?.template?.spec ?? {};
  const containers = spec.containers ?? [];
  const at = (i, field) => `spec.template.spec.containers[${i}].${field}`;
  if (containers.length === 0) {
    errors.push("spec.template.spec.containers: missing field(s)");
    return errors;
  }
  const withPorts = containers.flatMap((c, i) => (c.ports ?? []).map((p) => ({ p, i })));
  if (withPorts.length > 1) {
    errors.push(
      "spec.template.spec.containers[*].ports: more than one container port is set " +
        "(only a single port is allowed across all containers)",
    );
  }
  if (withPorts.length === 0 && containers.length > 1) {
    errors.push("spec.template.spec.containers[*].ports: missing field(s)");
  }
  // The serving container is the one with the port (or the only one).
  const servingIndex = withPorts.length > 0 ? withPorts[0].i : 0;
  const port = withPorts[0]?.p ?? {};
  const portName = port.name ?? "";
  const containerPort = port.containerPort ?? 8080;
  if (!PORT_NAMES.has(portName)) {
    errors.push(`${at(servingIndex, "ports")}: port name ${portName} is not allowed (empty, http1 or h2c)`);
  }
  if (RESERVED_PORTS.has(containerPort)) {
    errors.push(`${at(servingIndex, "ports.containerPort")}: ${containerPort} is a reserved port`);
  }
  if (port.protocol !== undefined && port.protocol !== "TCP") {
    errors.push(`${at(servingIndex, "ports.protocol")}: invalid value ${port.protocol}`);
  }
  const volumes = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
  containers.forEach((c, i) => {
    if (!c.image) errors.push(`${at(i, "image")}: missing field(s)`);
    if (c.name === "queue-proxy") errors.push(`${at(i, "name")}: queue-proxy is reserved`);
    for (const e of c.env ?? []) {
      if (i === servingIndex ? RESERVED_ENV.has(e.name) : RESERVED_ENV.has(e.name) && e.name !== "PORT") {
        errors.push(`${at(i, "env")}: ${e.name} is a reserved environment variable`);
      }
      if (e.name === "WAXOSUIT_ADMIN" && typeof e.value === "string") {
        const admin = Number(e.value.split(":").pop());
        if (RESERVED_PORTS.has(admin)) {
          errors.push(
            `${at(i, "env")}: WAXOSUIT_ADMIN=${e.value}: port ${admin} is taken by Knative's queue-proxy in the same pod`,
          );
        }
      }
    }
    for (const [kind, probe] of [
      ["readinessProbe", c.readinessProbe],
      ["livenessProbe", c.livenessProbe],
      ["startupProbe", c.startupProbe],
    ]) {
      if (!probe) continue;
      const handlers = ["httpGet", "tcpSocket", "exec", "grpc"].filter((h) => probe[h]);
      if (handlers.length !== 1) {
        errors.push(`${at(i, kind)}: expected exactly one of httpGet, tcpSocket, exec, grpc`);
      }
      for (const h of ["httpGet", "tcpSocket"]) {
        const p = probe[h]?.port;
        if (p === undefined) continue;
        if (i === servingIndex && typeof p === "string" && p !== portName) {
          errors.push(`${at(i, `${kind}.${h}.port`)}: invalid value ${p}: probe port must match container port`);
        }
        // Accepted by the webhook, but Knative rewrites a liveness probe's
        // port to the container port (unless multi-container-probing is
        // enabled): a probe meant for another port would hit the wrong one.
        if (i === servingIndex && kind !== "readinessProbe" && typeof p === "number" && p !== containerPort) {
          errors.push(
            `${at(i, `${kind}.${h}.port`)}: ${p} is rewritten to the container port ${containerPort} by Knative`,
          );
        }
      }
    }
    // SecurityContextMask (the schema has its fields): seccompProfile is
    // allowed since knative-v1.8; Localhost needs the profile's path.
    const seccomp = c.securityContext?.seccompProfile;
    if (seccomp && seccomp.type === "Localhost" && !seccomp.localhostProfile) {
      errors.push(`${at(i, "securityContext.seccompProfile.localhostProfile")}: missing field(s)`);
    }
    for (const m of c.volumeMounts ?? []) {
      const v = volumes.get(m.name);
      if (!v) {
        errors.push(`${at(i, "volumeMounts")}: volumeMount ${m.name} has no matching volume`);
      } else if (!v.emptyDir && !v.persistentVolumeClaim && !v.ephemeral && !m.readOnly) {
        errors.push(`${at(i, "volumeMounts")}: volume mount ${m.name} should be readOnly for this type of volume`);
      }
    }
  });
  return errors;
}

let errorCount = 0;
const report = (file, what, message) => {
  errorCount += 1;
  console.log(`ERROR ${file}: ${what}: ${message}`);
};
const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate-knative.mjs FILE.yaml...");
  process.exit(2);
}
for (const file of files) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      report(file, "YAML", doc.errors.map((e) => e.message).join("; "));
      continue;
    }
    const object = doc.toJS();
    if (object === null) continue;
    const what = `${object.kind}/${object.metadata?.name}`;
    if (object.apiVersion !== Service.apiVersion || object.kind !== Service.kind) {
      report(file, what, `not a ${Service.apiVersion} ${Service.kind}: nothing here validates it`);
      continue;
    }
    const before = errorCount;
    const [schemaError, unknownFields] = schemaCheck(Service, object);
    if (schemaError) report(file, what, schemaError);
    for (const message of unknownFields) report(file, what, message);
    for (const message of webhookRules(object)) report(file, what, message);
    for (const message of annotationRules(object.metadata?.annotations, "metadata.annotations")) {
      report(file, what, message);
    }
    for (const message of annotationRules(object.spec?.template?.metadata?.annotations, "spec.template.metadata.annotations")) {
      report(file, what, message);
    }
    if (errorCount === before) console.log(`PASS ${file}: ${what}`);
  }
}
process.exit(errorCount > 0 ? 1 : 0);
