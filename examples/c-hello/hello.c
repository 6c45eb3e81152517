/*
 * c-hello: a Waxosuit actor in freestanding C.
 *
 * Bound to `wascc:http_server`, it answers every request with
 * `200 OK`, `Content-Type: text/plain` and `Hello from C, <path>!\n`,
 * except `GET /count/<name>`: that adds 1 to the key `c-hello:<name>` of
 * `wascc:keyvalue` (binding `default`) with a host call and answers
 * `200`, `application/json`, `{"count":N}`. When the host call fails (no
 * key-value binding, say) it answers `500`, `text/plain`,
 * `key-value store unavailable`, and writes the host's error (cut to
 * HOST_ERROR_SHOWN_MAX bytes) to the host's log with `__console_log`:
 * the reason names bindings and capabilities, which are the operator's
 * business, not the client's. A name that is empty or longer than
 * NAME_MAX bytes gets a `400`.
 * It also answers `HealthRequest` (healthy, empty reply, as Rust actors
 * do by default) and fails any other operation the way the Rust SDK does.
 *
 * Limits: a request (operation name plus MessagePack payload, i.e. the
 * HTTP head and body) of at most REQUEST_CAPACITY bytes; larger ones fail
 * the call, which the HTTP server turns into a 500. At most
 * PATH_SHOWN_MAX bytes of the path are echoed, followed by "..." when cut,
 * so the reply always fits REPLY_CAPACITY whatever the client sends.
 */
#include "waxosuit.h"

#define REQUEST_CAPACITY (256u * 1024u)
#define PATH_SHOWN_MAX 256u
#define OPERATION_SHOWN_MAX 64u
#define REPLY_CAPACITY 1024u
#define COUNT_PREFIX "/count/"
#define KEY_PREFIX "c-hello:"
#define NAME_MAX 128u
#define HOST_ERROR_SHOWN_MAX 256u
/* The host copies a host call's reply (or error text) only whole: an
 * AddResponse is a few bytes, an error text longer than this is reported
 * by its size alone. */
#define HOST_REPLY_CAPACITY 1024u
#define TEXT_CAPACITY 512u

/* Static rather than on the stack: wasm-ld's default stack is 64 KiB. */
static uint8_t request[REQUEST_CAPACITY];
static uint8_t reply[REPLY_CAPACITY];
static uint8_t host_request[64u + NAME_MAX];
static uint8_t host_reply[HOST_REPLY_CAPACITY];
/* A reply body composed before the reply, which announces its length. */
static uint8_t body_bytes[TEXT_CAPACITY];
/* A line for the host's log. */
static uint8_t log_bytes[TEXT_CAPACITY];

static const wxs_header plain_text[] = {{"Content-Type", "text/plain"}};
static const wxs_header json[] = {{"Content-Type", "application/json"}};

/* How many bytes append_shown writes, for the bin length announced first. */
static uint32_t shown_len(wxs_slice s, uint32_t max) {
    return s.len > max ? max + 3 : s.len;
}

/* At most `max` bytes of `s`, then "..." when that cut it short. */
static void append_shown(wxs_buf *b, wxs_slice s, uint32_t max) {
    if (s.len > max) {
        s.len = max;
        wxs_buf_slice_append(b, s);
        wxs_buf_cstr(b, "...");
    } else {
        wxs_buf_slice_append(b, s);
    }
}

/* Replies with a whole Response whose body is `body`. */
static int32_t respond(uint32_t status_code, const char *status,
                       const wxs_header *header, wxs_slice body) {
    wxs_buf out;
    wxs_buf_init(&out, reply, sizeof reply);
    wxs_http_response(&out, status_code, status, header, 1, body);
    /* Bodies are bounded by TEXT_CAPACITY, well below REPLY_CAPACITY; the
     * check stays so that changing them can never send a cut reply. */
    if (!wxs_buf_ok(&out)) return wxs_fail("c-hello: reply larger than its buffer");
    return wxs_respond(out.ptr, out.len);
}

/* The answer when the key-value store fails: the details go to the host's
 * log (`why`, then `detail` cut to HOST_ERROR_SHOWN_MAX bytes), the client
 * gets a fixed text. */
static int32_t store_unavailable(const char *why, wxs_slice detail) {
    wxs_buf line;
    wxs_buf_init(&line, log_bytes, sizeof log_bytes);
    wxs_buf_cstr(&line, "c-hello: the key-value store (wascc:keyvalue) ");
    wxs_buf_cstr(&line, why);
    append_shown(&line, detail, HOST_ERROR_SHOWN_MAX);
    /* Bounded well below TEXT_CAPACITY; a cut line is still worth logging. */
    wxs_log_slice(wxs_buf_slice(&line));
    return respond(500, "Internal Server Error", plain_text,
                   wxs_cstr("key-value store unavailable\n"));
}

/* GET /count/<name>: `Add` 1 to `c-hello:<name>` in wascc:keyvalue. */
static int32_t handle_count(wxs_slice name) {
    wxs_buf body;
    wxs_buf_init(&body, body_bytes, sizeof body_bytes);
    if (name.len == 0 || name.len > NAME_MAX) {
        wxs_buf_cstr(&body, "c-hello: /count/<name> needs a name of 1 to 128 bytes\n");
        return respond(400, "Bad Request", plain_text, wxs_buf_slice(&body));
    }

    wxs_buf add;
    wxs_buf_init(&add, host_request, sizeof host_request);
    wxs_buf key;
    static uint8_t key_bytes[sizeof KEY_PREFIX - 1 + NAME_MAX];
    wxs_buf_init(&key, key_bytes, sizeof key_bytes);
    wxs_buf_cstr(&key, KEY_PREFIX);
    wxs_buf_slice_append(&key, name);
    wxs_kv_add_request(&add, wxs_buf_slice(&key), 1);
    /* Sized for the longest name; unreachable, like respond's check. */
    if (!wxs_buf_ok(&key) || !wxs_buf_ok(&add))
        return wxs_fail("c-hello: AddRequest larger than its buffer");

    wxs_slice answer;
    uint32_t needed;
    int32_t count;
    wxs_slice none = {host_reply, 0};
    switch (wxs_host_call("default", "wascc:keyvalue", "Add", wxs_buf_slice(&add),
                          host_reply, sizeof host_reply, &answer, &needed)) {
    case WXS_HOST_OK:
        if (!wxs_kv_add_response_parse(answer, &count))
            return store_unavailable("sent a reply that is not an AddResponse", none);
        wxs_buf_cstr(&body, "{\"count\":");
        wxs_buf_i32(&body, count);
        wxs_buf_cstr(&body, "}");
        return respond(200, "OK", json, wxs_buf_slice(&body));
    case WXS_HOST_ERROR:
        if (answer.len == needed) return store_unavailable("failed: ", answer);
        /* Too long to read: its size is all there is to say. */
        wxs_buf_cstr(&body, "(an error text of ");
        wxs_buf_i32(&body, (int32_t)(needed > INT32_MAX ? INT32_MAX : needed));
        wxs_buf_cstr(&body, " bytes, too long to read)");
        return store_unavailable("failed: ", wxs_buf_slice(&body));
    default:
        return store_unavailable("sent a reply larger than the actor's buffer", none);
    }
}

static int32_t handle_request(wxs_slice payload) {
    wxs_http_request req;
    if (!wxs_http_request_parse(payload, &req))
        return wxs_fail("c-hello: the HandleRequest payload is not a waSCC HTTP request");

    wxs_slice prefix = wxs_cstr(COUNT_PREFIX);
    if (wxs_slice_eq_cstr(req.method, "GET") && req.path.len >= prefix.len) {
        wxs_slice head = {req.path.ptr, prefix.len};
        wxs_slice name = {req.path.ptr + prefix.len, req.path.len - prefix.len};
        if (wxs_slice_eq(head, prefix)) return handle_count(name);
    }

    static const char before[] = "Hello from C, ";
    static const char after[] = "!\n";
    uint32_t body_len = (sizeof before - 1) +
                        shown_len(req.path, PATH_SHOWN_MAX) + (sizeof after - 1);

    wxs_buf out;
    wxs_buf_init(&out, reply, sizeof reply);
    wxs_http_response_head(&out, 200, "OK", plain_text, 1);
    wxs_mp_bin_header(&out, body_len);
    wxs_buf_cstr(&out, before);
    append_shown(&out, req.path, PATH_SHOWN_MAX);
    wxs_buf_cstr(&out, after);
    /* The bounds above make this unreachable; it stays so that changing
     * them can never send a cut (malformed) reply. */
    if (!wxs_buf_ok(&out)) return wxs_fail("c-hello: reply larger than its buffer");
    return wxs_respond(out.ptr, out.len);
}

int32_t __guest_call(int32_t operation_len, int32_t payload_len) {
    wxs_slice operation, payload;
    switch (wxs_read_request(operation_len, payload_len, request,
                             sizeof request, &operation, &payload)) {
    case WXS_READ_OK:
        break;
    case WXS_READ_TOO_LARGE:
        return wxs_fail("c-hello: request larger than the actor's 256 KiB buffer");
    default:
        return wxs_fail("c-hello: the host announced a negative length");
    }

    if (wxs_slice_eq_cstr(operation, "HandleRequest")) return handle_request(payload);
    if (wxs_slice_eq_cstr(operation, "HealthRequest")) return wxs_respond(NULL, 0);

    /* Same wording as the Rust SDK, so operators see one message. */
    static uint8_t message[128];
    wxs_buf text;
    wxs_buf_init(&text, message, sizeof message);
    wxs_buf_cstr(&text, "no handler registered for operation \"");
    append_shown(&text, operation, OPERATION_SHOWN_MAX);
    wxs_buf_cstr(&text, "\"");
    return wxs_fail_slice(wxs_buf_slice(&text));
}
