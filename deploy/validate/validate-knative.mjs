// Validates Knative Services offline: node validate-knative.mjs FILE.yaml...
//
// Two checks per serving.knative.dev/v1 Service:
//  1. the @kubernetes-models/knative schema (`.validate()`): field names and
//     types, as the Knative API's Go types define them;
//  2. the rules Knative's admission webhook adds on top, which no schema
//     carries (knative.dev/serving pkg/apis/serving/k8s_validation.go:
//     validateContainersPorts, validateContainerPorts, validateProbe,
//     reservedEnvVars, reservedPorts, validateVolumeMounts), plus one of
//     waxosuit's own: the admin address must not be a port the queue-proxy
//     sidecar listens on in the same pod.
// Prints one line per problem and exits 1 when there is any.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { Service } from "@kubernetes-models/knative/serving.knative.dev/v1/Service";

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
    try {
      new Service(object).validate();
    } catch (e) {
      report(file, what, e.message);
    }
    for (const message of webhookRules(object)) report(file, what, message);
    if (errorCount === before) console.log(`PASS ${file}: ${what}`);
  }
}
process.exit(errorCount > 0 ? 1 : 0);
