// {{name}}: a Waxosuit actor that greets every HTTP request.
//
// Bound to `wascc:http_server`, it answers each request (operation
// `HandleRequest`) with `200 OK` and a greeting naming the path that was
// asked for. To reach a capability (key-value, messaging, logging, ...),
// call `hostCall("default", "wascc:keyvalue", "Add", payload)` from a
// handler, and grant the capability when signing (`--cap wascc:keyvalue`).
import { handleAbort, handleCall, register, Result } from "@wapc/as-guest";
import { Decoder, Encoder, Sizer, Writer } from "@wapc/as-msgpack";

register("HandleRequest", greet);
// The host probes every actor with `HealthRequest`; an operation without a
// handler would count as an unhealthy actor.
register("HealthRequest", health);

// The waPC entry point the host calls for every operation. Keep it.
export function __guest_call(operationSize: usize, payloadSize: usize): bool {
  return handleCall(operationSize, payloadSize);
}

// asconfig.json routes AssemblyScript's `abort` here (`--use abort=...`):
// the default is an `env.abort` import, which the host refuses to load. The
// message reaches the host as the call's guest error; the compiler follows
// every abort with `unreachable`, so the call still ends in a trap.
function abortToGuestError(
  message: string | null,
  fileName: string | null,
  lineNumber: u32,
  columnNumber: u32,
): void {
  handleAbort(message, fileName, lineNumber, columnNumber);
}

function health(_payload: ArrayBuffer): Result<ArrayBuffer> {
  return Result.ok<ArrayBuffer>(new ArrayBuffer(0));
}

function greet(payload: ArrayBuffer): Result<ArrayBuffer> {
  const decoder = new Decoder(payload);
  const path = readPath(decoder);
  const error = decoder.error();
  if (error != null) {
    // Returning an error fails the call; the host then answers 500.
    return Result.error<ArrayBuffer>(
      new Error("cannot decode the HTTP request: " + error.message),
    );
  }
  const greeting = "Hello from {{name}}! You asked for " + path + "\n";
  return Result.ok<ArrayBuffer>(encodeResponse(200, "OK", String.UTF8.encode(greeting)));
}

// The `path` of `wascc:http_server`'s Request, a MessagePack map keyed
// `method`, `path`, `queryString`, `header` and `body`.
function readPath(decoder: Decoder): string {
  let path = "";
  let fields = decoder.readMapSize();
  // On malformed input the decoder records an error and returns zeros;
  // stopping at once keeps a bogus map length from driving the loop.
  while (fields > 0 && decoder.error() == null) {
    fields--;
    if (decoder.readString() == "path") {
      path = decoder.readString();
    } else {
      decoder.skip();
    }
  }
  return path;
}

// `wascc:http_server`'s Response: a map keyed `statusCode`, `status`,
// `header` and `body` (MessagePack bin).
function encodeResponse(statusCode: u32, status: string, body: ArrayBuffer): ArrayBuffer {
  const sizer = new Sizer();
  writeResponse(sizer, statusCode, status, body);
  const buffer = new ArrayBuffer(sizer.length);
  writeResponse(new Encoder(buffer), statusCode, status, body);
  return buffer;
}

function writeResponse(writer: Writer, statusCode: u32, status: string, body: ArrayBuffer): void {
  // as-msgpack writes an empty byte array as nil, which the host's `body`
  // (bin) does not accept; an absent `body` means empty.
  const hasBody = body.byteLength > 0;
  writer.writeMapSize(hasBody ? 4 : 3);
  writer.writeString("statusCode");
  writer.writeUInt32(statusCode);
  writer.writeString("status");
  writer.writeString(status);
  writer.writeString("header");
  writer.writeMapSize(1);
  writer.writeString("Content-Type");
  // The path is echoed back: plain text keeps a browser from rendering it.
  writer.writeString("text/plain; charset=utf-8");
  if (hasBody) {
    writer.writeString("body");
    writer.writeByteArray(body);
  }
}
