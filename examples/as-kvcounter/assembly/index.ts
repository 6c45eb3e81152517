// The key-value counter (examples/kvcounter) as an AssemblyScript actor:
// every HTTP request adds 1 to the counter `counter:<path>` in
// `wascc:keyvalue` and is answered `200 OK` with `{"counter":N}`. A path
// longer than PATH_MAX bytes is answered `400`, so a client cannot make
// the store keep keys of any size.
import {
  consoleLog,
  handleAbort,
  handleCall,
  hostCall,
  register,
  Result,
} from "@wapc/as-guest";
import { Decoder, Encoder, Sizer, Writer } from "@wapc/as-msgpack";

// The longest path counted, in bytes (UTF-8), like the C example's limit.
const PATH_MAX: i32 = 256;

register("HandleRequest", handleRequest);
// The host probes every actor with `HealthRequest`; an unknown operation
// would be reported as an unhealthy actor.
register("HealthRequest", health);

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

function handleRequest(payload: ArrayBuffer): Result<ArrayBuffer> {
  const decoder = new Decoder(payload);
  const request = Request.decode(decoder);
  const decodeError = decoder.error();
  if (decodeError != null) {
    return Result.ok<ArrayBuffer>(
      Response.serverError("cannot decode the HTTP request: " + decodeError.message),
    );
  }
  if (String.UTF8.byteLength(request.path) > PATH_MAX) {
    return Result.ok<ArrayBuffer>(
      Response.text(
        400,
        "Bad Request",
        "as-kvcounter: the path is longer than " + PATH_MAX.toString() + " bytes\n",
      ),
    );
  }
  const added = hostCall(
    "default",
    "wascc:keyvalue",
    "Add",
    encodeAddRequest("counter:" + request.path, 1),
  );
  // A store that is missing or refuses the key is the server's fault, not
  // the client's: answer 500 and keep the actor healthy (no trap). The
  // host's reason goes to the host's log (`__console_log`), not to the
  // client: it names bindings and capabilities, which are the operator's
  // business.
  if (!added.isOk) {
    consoleLog(
      "as-kvcounter: the key-value store (wascc:keyvalue) failed: " + added.error()!.message,
    );
    return Result.ok<ArrayBuffer>(
      Response.text(500, "Internal Server Error", "key-value store unavailable\n"),
    );
  }
  const reply = new Decoder(added.get());
  const counter = AddResponse.decode(reply);
  const replyError = reply.error();
  if (replyError != null) {
    return Result.ok<ArrayBuffer>(
      Response.serverError("cannot decode the key-value store's answer: " + replyError.message),
    );
  }
  if (!counter.hasValue) {
    return Result.ok<ArrayBuffer>(
      Response.serverError("the key-value store's answer has no `value`"),
    );
  }
  const json = '{"counter":' + counter.value.toString() + "}";
  return Result.ok<ArrayBuffer>(
    new Response(200, "OK", "application/json", String.UTF8.encode(json)).toBuffer(),
  );
}

// The field the actor reads of `wascc:http_server`'s Request, a MessagePack
// map keyed `method`, `path`, `queryString`, `header` and `body`.
class Request {
  path: string = "";

  static decode(decoder: Decoder): Request {
    const request = new Request();
    let fields = decoder.readMapSize();
    // On malformed input the decoder records an error and returns zeros;
    // stopping at once keeps a bogus map length from driving the loop.
    while (fields > 0 && decoder.error() == null) {
      fields--;
      if (decoder.readString() == "path") {
        request.path = decoder.readString();
      } else {
        decoder.skip();
      }
    }
    return request;
  }
}

// `wascc:keyvalue` AddRequest: `{key: string, value: i32}`.
function encodeAddRequest(key: string, value: i32): ArrayBuffer {
  const sizer = new Sizer();
  writeAddRequest(sizer, key, value);
  const buffer = new ArrayBuffer(sizer.length);
  writeAddRequest(new Encoder(buffer), key, value);
  return buffer;
}

function writeAddRequest(writer: Writer, key: string, value: i32): void {
  writer.writeMapSize(2);
  writer.writeString("key");
  writer.writeString(key);
  writer.writeString("value");
  writer.writeInt32(value);
}

// `wascc:keyvalue` AddResponse: `{value: i32}`, the counter after the add.
class AddResponse {
  value: i32 = 0;
  hasValue: bool = false;

  static decode(decoder: Decoder): AddResponse {
    const response = new AddResponse();
    let fields = decoder.readMapSize();
    while (fields > 0 && decoder.error() == null) {
      fields--;
      const field = decoder.readString();
      if (field == "value") {
        response.value = decoder.readInt32();
        response.hasValue = true;
      } else {
        decoder.skip();
      }
    }
    return response;
  }
}

// `wascc:http_server` Response: a map keyed `statusCode`, `status`,
// `header`, `body` (MessagePack bin).
class Response {
  constructor(
    public statusCode: u32,
    public status: string,
    public contentType: string,
    public body: ArrayBuffer,
  ) {}

  static serverError(message: string): ArrayBuffer {
    return Response.text(500, "Internal Server Error", message);
  }

  static text(statusCode: u32, status: string, message: string): ArrayBuffer {
    return new Response(
      statusCode,
      status,
      "text/plain; charset=utf-8",
      String.UTF8.encode(message),
    ).toBuffer();
  }

  toBuffer(): ArrayBuffer {
    const sizer = new Sizer();
    this.write(sizer);
    const buffer = new ArrayBuffer(sizer.length);
    this.write(new Encoder(buffer));
    return buffer;
  }

  private write(writer: Writer): void {
    // as-msgpack writes an empty byte array as nil, which the host's
    // `body` (bin) does not accept; an absent `body` means empty.
    const hasBody = this.body.byteLength > 0;
    writer.writeMapSize(hasBody ? 4 : 3);
    writer.writeString("statusCode");
    writer.writeUInt32(this.statusCode);
    writer.writeString("status");
    writer.writeString(this.status);
    writer.writeString("header");
    writer.writeMapSize(1);
    writer.writeString("Content-Type");
    writer.writeString(this.contentType);
    if (hasBody) {
      writer.writeString("body");
      writer.writeByteArray(this.body);
    }
  }
}
