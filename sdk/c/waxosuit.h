/*
 * waxosuit.h: write Waxosuit actors (waPC guests speaking the waSCC codec)
 * in freestanding C. One header, no libc, no allocation.
 *
 * Why sdk/c/: the Rust actor SDK is the workspace crate
 * crates/waxosuit-actor; guest SDKs for other languages live under
 * sdk/<language>/ so that nothing there is mistaken for a workspace crate
 * and so an actor author can copy the directory out as it is. Add
 * `-I sdk/c` to the compiler line; examples/c-hello/build.sh shows the
 * whole command.
 *
 * Build (clang >= 11 and wasm-ld, e.g. Debian's `clang` and `lld`):
 *
 *   clang --target=wasm32 -O2 -ffreestanding -nostdlib -I sdk/c \
 *         -Wl,--no-entry -Wl,--export=__guest_call -o actor.wasm actor.c
 *
 * -ffreestanding is required (a hosted build stops with an #error): see
 * the memory functions at the end.
 *
 * The host refuses any import outside module `wapc` and requires the
 * exports `__guest_call` and `memory`; wasm-ld exports `memory` by itself,
 * and only the `wapc` functions an actor actually calls become imports.
 * `_start` and `wapc_init` are optional; this header needs neither.
 *
 * What an actor does, once per call from the host:
 *
 *   int32_t __guest_call(int32_t operation_len, int32_t payload_len) {
 *       wxs_slice op, payload;
 *       if (wxs_read_request(operation_len, payload_len, arena,
 *                            sizeof arena, &op, &payload) != WXS_READ_OK)
 *           return wxs_fail("request too large for this actor");
 *       if (wxs_slice_eq_cstr(op, "HandleRequest")) ...
 *       return wxs_respond(bytes, len);   // 1: success
 *   }
 *
 * Limits, all chosen by the actor rather than by this header: a request
 * (operation name plus payload) must fit the buffer given to
 * wxs_read_request, a reply the buffer given to wxs_buf_init, a host
 * call's reply the buffer given to wxs_host_call. Nothing here grows
 * memory, so an actor's footprint is its static buffers plus the stack
 * (64 KiB by default with wasm-ld). MessagePack nesting is read at most
 * WXS_MP_MAX_DEPTH deep.
 *
 * Input from the host is treated as hostile: every read checks the length
 * left, counts larger than the bytes left are refused before any loop
 * runs, and the writers stop (and say so) instead of overrunning.
 *
 * Everything is `static`, so several translation units may include this
 * header; the only external symbols are the weak memory functions at the
 * end, which clang may call for struct copies even in freestanding code.
 */
#ifndef WAXOSUIT_H
#define WAXOSUIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if !defined(__wasm32__)
#error "waxosuit.h targets wasm32: compile with --target=wasm32"
#endif

/* The weak memcpy/memmove/memset/memcmp at the end are plain loops. In a
 * hosted build the compiler may recognise such a loop as the very function
 * it sits in and replace it with a call to itself: endless recursion, a
 * stack overflow at the first struct copy. -ffreestanding (which implies
 * -fno-builtin) rules that out; WXS_NO_BUILTIN below is a second guard. */
#if __STDC_HOSTED__
#error "waxosuit.h needs a freestanding build: add -ffreestanding (and -nostdlib), e.g. clang --target=wasm32 -O2 -ffreestanding -nostdlib"
#endif

/* ------------------------------------------------------------------ */
/* The waPC contract (module `wapc`; every value is an i32).           */
/* ------------------------------------------------------------------ */

#define WXS_WAPC_IMPORT(name) \
    __attribute__((import_module("wapc"), import_name(name)))

/* Writes the pending operation name at `operation` and payload at
 * `payload`; the buffers must hold the lengths __guest_call was given. */
WXS_WAPC_IMPORT("__guest_request")
void wapc_guest_request(uint8_t *operation, uint8_t *payload);
/* The host copies `len` bytes at `ptr` as this call's reply. */
WXS_WAPC_IMPORT("__guest_response")
void wapc_guest_response(const uint8_t *ptr, uint32_t len);
/* The host copies `len` bytes of UTF-8 at `ptr` as this call's error. */
WXS_WAPC_IMPORT("__guest_error")
void wapc_guest_error(const uint8_t *ptr, uint32_t len);
/* Calls capability `ns` (e.g. "wascc:keyvalue") through binding `bd`
 * ("" means "default"); 1 = the reply is ready, 0 = the error is. */
WXS_WAPC_IMPORT("__host_call")
int32_t wapc_host_call(const uint8_t *bd, uint32_t bd_len,
                       const uint8_t *ns, uint32_t ns_len,
                       const uint8_t *op, uint32_t op_len,
                       const uint8_t *ptr, uint32_t len);
WXS_WAPC_IMPORT("__host_response_len")
uint32_t wapc_host_response_len(void);
/* Copies the whole reply (wapc_host_response_len() bytes) to `ptr`. */
WXS_WAPC_IMPORT("__host_response")
void wapc_host_response(uint8_t *ptr);
WXS_WAPC_IMPORT("__host_error_len")
uint32_t wapc_host_error_len(void);
/* Copies the whole error text (wapc_host_error_len() bytes) to `ptr`. */
WXS_WAPC_IMPORT("__host_error")
void wapc_host_error(uint8_t *ptr);
/* One log line; the host cuts long lines and rate-limits. */
WXS_WAPC_IMPORT("__console_log")
void wapc_console_log(const uint8_t *ptr, uint32_t len);

/* The one export the actor must define. The host calls it for every
 * operation with the lengths of the operation name and payload; return 1
 * after wapc_guest_response (wxs_respond) or 0 after wapc_guest_error
 * (wxs_fail). The attribute exports it even without -Wl,--export. */
__attribute__((export_name("__guest_call")))
int32_t __guest_call(int32_t operation_len, int32_t payload_len);

#define WXS_SUCCESS 1
#define WXS_FAILURE 0

/* ------------------------------------------------------------------ */
/* Byte slices                                                         */
/* ------------------------------------------------------------------ */

typedef struct {
    const uint8_t *ptr;
    uint32_t len;
} wxs_slice;

/* Bounded so that a missing terminator cannot walk all of memory. */
#define WXS_CSTR_MAX 65536u

static inline uint32_t wxs_cstr_len(const char *s) {
    uint32_t n = 0;
    while (n < WXS_CSTR_MAX && s[n] != '\0') n++;
    return n;
}

static inline wxs_slice wxs_cstr(const char *s) {
    wxs_slice out = {(const uint8_t *)s, wxs_cstr_len(s)};
    return out;
}

static inline bool wxs_slice_eq(wxs_slice a, wxs_slice b) {
    if (a.len != b.len) return false;
    for (uint32_t i = 0; i < a.len; i++)
        if (a.ptr[i] != b.ptr[i]) return false;
    return true;
}

static inline bool wxs_slice_eq_cstr(wxs_slice a, const char *s) {
    return wxs_slice_eq(a, wxs_cstr(s));
}

/* ------------------------------------------------------------------ */
/* Guest call helpers                                                  */
/* ------------------------------------------------------------------ */

enum {
    WXS_READ_OK = 0,
    /* Operation plus payload exceed the buffer; nothing was read, the
     * actor can only fail the call. */
    WXS_READ_TOO_LARGE = 1,
    /* The host announced a negative length: not a waPC host. */
    WXS_READ_INVALID = 2,
};

/* Reads this call's operation name and payload into `buf` (operation
 * first, payload right after it) and points `operation` and `payload` at
 * them. Call it once per __guest_call, before anything else. */
static inline int wxs_read_request(int32_t operation_len, int32_t payload_len,
                                   uint8_t *buf, uint32_t cap,
                                   wxs_slice *operation, wxs_slice *payload) {
    if (operation_len < 0 || payload_len < 0) return WXS_READ_INVALID;
    uint32_t op_len = (uint32_t)operation_len;
    uint32_t msg_len = (uint32_t)payload_len;
    /* Written so that no sum can wrap around. */
    if (op_len > cap || msg_len > cap - op_len) return WXS_READ_TOO_LARGE;
    wapc_guest_request(buf, buf + op_len);
    operation->ptr = buf;
    operation->len = op_len;
    payload->ptr = buf + op_len;
    payload->len = msg_len;
    return WXS_READ_OK;
}

/* Sets the reply; return its result from __guest_call. */
static inline int32_t wxs_respond(const uint8_t *ptr, uint32_t len) {
    static const uint8_t nothing[1] = {0};
    /* A null pointer is a valid wasm address, but a real one keeps the
     * host's bounds check meaningful for empty replies. */
    wapc_guest_response(ptr ? ptr : nothing, len);
    return WXS_SUCCESS;
}

/* Sets the error (UTF-8 text); return its result from __guest_call. */
static inline int32_t wxs_fail_slice(wxs_slice message) {
    wapc_guest_error(message.ptr, message.len);
    return WXS_FAILURE;
}

static inline int32_t wxs_fail(const char *message) {
    return wxs_fail_slice(wxs_cstr(message));
}

/* One line in the host's log, attributed to this actor (for operators:
 * what a client should not see). The host rate-limits and cuts lines. */
static inline void wxs_log_slice(wxs_slice line) {
    wapc_console_log(line.ptr, line.len);
}

static inline void wxs_log(const char *line) {
    wxs_log_slice(wxs_cstr(line));
}

enum {
    /* `*reply` is the capability's reply. */
    WXS_HOST_OK = 0,
    /* `*reply` is the host's error text; empty when the text is longer
     * than the buffer (the host copies it only whole): then `*needed`,
     * its size, differs from `reply->len`. */
    WXS_HOST_ERROR = 1,
    /* The reply did not fit and was not read; its size is in `*needed`. */
    WXS_HOST_TOO_LARGE = 2,
};

/* Calls `operation` of capability `capability` through `binding` (NULL or
 * "" for "default") with `payload`, reading the reply into `buf`. The host
 * only copies whole replies, so one larger than `cap` is not read at all:
 * WXS_HOST_TOO_LARGE with its size in `*needed`. */
static inline int wxs_host_call(const char *binding, const char *capability,
                                const char *operation, wxs_slice payload,
                                uint8_t *buf, uint32_t cap,
                                wxs_slice *reply, uint32_t *needed) {
    wxs_slice bd = binding ? wxs_cstr(binding) : wxs_cstr("");
    wxs_slice ns = wxs_cstr(capability);
    wxs_slice op = wxs_cstr(operation);
    int32_t ok = wapc_host_call(bd.ptr, bd.len, ns.ptr, ns.len, op.ptr, op.len,
                                payload.ptr, payload.len);
    uint32_t len = ok == 1 ? wapc_host_response_len() : wapc_host_error_len();
    reply->ptr = buf;
    reply->len = 0;
    *needed = len;
    if (ok == 1) {
        if (len > cap) return WXS_HOST_TOO_LARGE;
        wapc_host_response(buf);
        reply->len = len;
        return WXS_HOST_OK;
    }
    /* Error texts are for people; a cut one is better than none, but the
     * host can only copy it whole, so it needs the room. */
    if (len <= cap) {
        wapc_host_error(buf);
        reply->len = len;
    }
    return WXS_HOST_ERROR;
}

/* ------------------------------------------------------------------ */
/* Bounded output buffer                                               */
/* ------------------------------------------------------------------ */

/* Appends stop at `cap`: once anything did not fit, `overflow` stays set
 * and nothing more is written, so one check at the end suffices. */
typedef struct {
    uint8_t *ptr;
    uint32_t cap;
    uint32_t len;
    bool overflow;
} wxs_buf;

static inline void wxs_buf_init(wxs_buf *b, uint8_t *ptr, uint32_t cap) {
    b->ptr = ptr;
    b->cap = cap;
    b->len = 0;
    b->overflow = false;
}

static inline bool wxs_buf_ok(const wxs_buf *b) { return !b->overflow; }

static inline wxs_slice wxs_buf_slice(const wxs_buf *b) {
    wxs_slice s = {b->ptr, b->len};
    return s;
}

static inline void wxs_buf_append(wxs_buf *b, const uint8_t *src, uint32_t n) {
    if (b->overflow || n > b->cap - b->len) {
        b->overflow = true;
        return;
    }
    for (uint32_t i = 0; i < n; i++) b->ptr[b->len + i] = src[i];
    b->len += n;
}

static inline void wxs_buf_byte(wxs_buf *b, uint8_t byte) {
    wxs_buf_append(b, &byte, 1);
}

static inline void wxs_buf_slice_append(wxs_buf *b, wxs_slice s) {
    wxs_buf_append(b, s.ptr, s.len);
}

static inline void wxs_buf_cstr(wxs_buf *b, const char *s) {
    wxs_buf_slice_append(b, wxs_cstr(s));
}

/* ------------------------------------------------------------------ */
/* MessagePack writer: the subset waSCC replies need, in the most      */
/* compact form, as rmp-serde writes it (so replies are byte-identical */
/* to those of Rust actors).                                            */
/* ------------------------------------------------------------------ */

static inline void wxs_mp_be(wxs_buf *b, uint8_t tag, uint32_t value,
                             unsigned bytes) {
    uint8_t out[5];
    out[0] = tag;
    for (unsigned i = 0; i < bytes; i++)
        out[1 + i] = (uint8_t)(value >> (8 * (bytes - 1 - i)));
    wxs_buf_append(b, out, 1 + bytes);
}

static inline void wxs_mp_uint(wxs_buf *b, uint32_t v) {
    if (v < 0x80) wxs_buf_byte(b, (uint8_t)v);
    else if (v <= 0xff) wxs_mp_be(b, 0xcc, v, 1);
    else if (v <= 0xffff) wxs_mp_be(b, 0xcd, v, 2);
    else wxs_mp_be(b, 0xce, v, 4);
}

/* A signed integer as rmp-serde writes an i32: non-negative values as
 * wxs_mp_uint does, negative ones as negative fixint, int 8, 16 or 32. */
static inline void wxs_mp_int(wxs_buf *b, int32_t v) {
    if (v >= 0) wxs_mp_uint(b, (uint32_t)v);
    else if (v >= -32) wxs_buf_byte(b, (uint8_t)v);
    else if (v >= -128) wxs_mp_be(b, 0xd0, (uint32_t)v, 1);
    else if (v >= -32768) wxs_mp_be(b, 0xd1, (uint32_t)v, 2);
    else wxs_mp_be(b, 0xd2, (uint32_t)v, 4);
}

/* Decimal text (for JSON and messages), e.g. "-12". */
static inline void wxs_buf_i32(wxs_buf *b, int32_t v) {
    uint8_t digits[11];
    unsigned n = 0;
    /* Negated as unsigned so that INT32_MIN does not overflow. */
    uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    do {
        digits[sizeof digits - 1 - n++] = (uint8_t)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) digits[sizeof digits - 1 - n++] = '-';
    wxs_buf_append(b, digits + sizeof digits - n, n);
}

static inline void wxs_mp_map_header(wxs_buf *b, uint32_t entries) {
    if (entries < 16) wxs_buf_byte(b, (uint8_t)(0x80 | entries));
    else if (entries <= 0xffff) wxs_mp_be(b, 0xde, entries, 2);
    else wxs_mp_be(b, 0xdf, entries, 4);
}

static inline void wxs_mp_str_header(wxs_buf *b, uint32_t len) {
    if (len < 32) wxs_buf_byte(b, (uint8_t)(0xa0 | len));
    else if (len <= 0xff) wxs_mp_be(b, 0xd9, len, 1);
    else if (len <= 0xffff) wxs_mp_be(b, 0xda, len, 2);
    else wxs_mp_be(b, 0xdb, len, 4);
}

static inline void wxs_mp_str(wxs_buf *b, wxs_slice s) {
    wxs_mp_str_header(b, s.len);
    wxs_buf_slice_append(b, s);
}

static inline void wxs_mp_cstr(wxs_buf *b, const char *s) {
    wxs_mp_str(b, wxs_cstr(s));
}

/* Announces `len` bytes of bin; append exactly that many next (in as many
 * pieces as convenient). */
static inline void wxs_mp_bin_header(wxs_buf *b, uint32_t len) {
    if (len <= 0xff) wxs_mp_be(b, 0xc4, len, 1);
    else if (len <= 0xffff) wxs_mp_be(b, 0xc5, len, 2);
    else wxs_mp_be(b, 0xc6, len, 4);
}

static inline void wxs_mp_bin(wxs_buf *b, wxs_slice s) {
    wxs_mp_bin_header(b, s.len);
    wxs_buf_slice_append(b, s);
}

/* ------------------------------------------------------------------ */
/* waSCC HTTP (`wascc:http_server`)                                    */
/* ------------------------------------------------------------------ */

typedef struct {
    const char *name;
    const char *value;
} wxs_header;

/* Writes a Response up to and including the key of its last field,
 * `body`: follow with wxs_mp_bin, or wxs_mp_bin_header and the body in
 * pieces. Field names and order are those of waxosuit-codec's
 * http::Response (camelCase, declaration order). */
static inline void wxs_http_response_head(wxs_buf *b, uint32_t status_code,
                                          const char *status,
                                          const wxs_header *headers,
                                          uint32_t header_count) {
    wxs_mp_map_header(b, 4);
    wxs_mp_cstr(b, "statusCode");
    wxs_mp_uint(b, status_code);
    wxs_mp_cstr(b, "status");
    wxs_mp_cstr(b, status);
    wxs_mp_cstr(b, "header");
    wxs_mp_map_header(b, header_count);
    for (uint32_t i = 0; i < header_count; i++) {
        wxs_mp_cstr(b, headers[i].name);
        wxs_mp_cstr(b, headers[i].value);
    }
    wxs_mp_cstr(b, "body");
}

/* A whole Response. Check wxs_buf_ok before replying with it. */
static inline void wxs_http_response(wxs_buf *b, uint32_t status_code,
                                     const char *status,
                                     const wxs_header *headers,
                                     uint32_t header_count, wxs_slice body) {
    wxs_http_response_head(b, status_code, status, headers, header_count);
    wxs_mp_bin(b, body);
}

/* ------------------------------------------------------------------ */
/* MessagePack reader: enough to pick fields out of a waSCC Request   */
/* and a key-value AddResponse.                                         */
/* ------------------------------------------------------------------ */

/* Deep enough for any waSCC type; bounds the reader's recursion (and so
 * its stack use) on hostile nesting. */
#define WXS_MP_MAX_DEPTH 32

typedef struct {
    const uint8_t *ptr;
    uint32_t len;
    uint32_t pos;
} wxs_mp_reader;

static inline void wxs_mp_reader_init(wxs_mp_reader *r, wxs_slice s) {
    r->ptr = s.ptr;
    r->len = s.len;
    r->pos = 0;
}

static inline uint32_t wxs_mp_left(const wxs_mp_reader *r) {
    return r->len - r->pos;
}

/* Reads a big-endian unsigned integer of 1, 2 or 4 bytes. */
static inline bool wxs_mp_read_be(wxs_mp_reader *r, unsigned bytes,
                                  uint32_t *out) {
    if (wxs_mp_left(r) < bytes) return false;
    uint32_t v = 0;
    for (unsigned i = 0; i < bytes; i++) v = (v << 8) | r->ptr[r->pos + i];
    r->pos += bytes;
    *out = v;
    return true;
}

static inline bool wxs_mp_read_byte(wxs_mp_reader *r, uint8_t *out) {
    uint32_t v;
    if (!wxs_mp_read_be(r, 1, &v)) return false;
    *out = (uint8_t)v;
    return true;
}

/* Takes `n` bytes as a slice of the input, if that many are left. */
static inline bool wxs_mp_take(wxs_mp_reader *r, uint32_t n, wxs_slice *out) {
    if (wxs_mp_left(r) < n) return false;
    out->ptr = r->ptr + r->pos;
    out->len = n;
    r->pos += n;
    return true;
}

/* A map header; refuses counts that the bytes left cannot hold (every
 * entry takes at least two bytes), so callers may loop `*entries` times. */
static inline bool wxs_mp_read_map(wxs_mp_reader *r, uint32_t *entries) {
    uint8_t tag;
    uint32_t n;
    if (!wxs_mp_read_byte(r, &tag)) return false;
    if ((tag & 0xf0) == 0x80) n = tag & 0x0f;
    else if (tag == 0xde) { if (!wxs_mp_read_be(r, 2, &n)) return false; }
    else if (tag == 0xdf) { if (!wxs_mp_read_be(r, 4, &n)) return false; }
    else return false;
    if (n > wxs_mp_left(r) / 2) return false;
    *entries = n;
    return true;
}

/* A str (`want_bin` false) or bin (true) value, as a slice of the input. */
static inline bool wxs_mp_read_bytes(wxs_mp_reader *r, bool want_bin,
                                     wxs_slice *out) {
    uint8_t tag;
    uint32_t n;
    if (!wxs_mp_read_byte(r, &tag)) return false;
    if (!want_bin && (tag & 0xe0) == 0xa0) n = tag & 0x1f;
    else if (tag == (want_bin ? 0xc4 : 0xd9)) { if (!wxs_mp_read_be(r, 1, &n)) return false; }
    else if (tag == (want_bin ? 0xc5 : 0xda)) { if (!wxs_mp_read_be(r, 2, &n)) return false; }
    else if (tag == (want_bin ? 0xc6 : 0xdb)) { if (!wxs_mp_read_be(r, 4, &n)) return false; }
    else return false;
    return wxs_mp_take(r, n, out);
}

static inline bool wxs_mp_read_str(wxs_mp_reader *r, wxs_slice *out) {
    return wxs_mp_read_bytes(r, false, out);
}

/* An integer in any MessagePack encoding (fixints, uint 8-64, int 8-64)
 * whose value fits an int32_t; false for other types and for values out
 * of range, with the reader then at an unspecified position. */
static inline bool wxs_mp_read_i32(wxs_mp_reader *r, int32_t *out) {
    uint8_t tag;
    uint32_t hi = 0, lo;
    if (!wxs_mp_read_byte(r, &tag)) return false;
    if (tag <= 0x7f) { *out = tag; return true; }
    if (tag >= 0xe0) { *out = (int32_t)tag - 256; return true; }
    switch (tag) {
    case 0xcc: if (!wxs_mp_read_be(r, 1, &lo)) return false; *out = (int32_t)lo; return true;
    case 0xcd: if (!wxs_mp_read_be(r, 2, &lo)) return false; *out = (int32_t)lo; return true;
    case 0xce: case 0xcf:
        if (tag == 0xcf && (!wxs_mp_read_be(r, 4, &hi) || hi != 0)) return false;
        if (!wxs_mp_read_be(r, 4, &lo) || lo > INT32_MAX) return false;
        *out = (int32_t)lo;
        return true;
    case 0xd0: if (!wxs_mp_read_be(r, 1, &lo)) return false; *out = (int8_t)lo; return true;
    case 0xd1: if (!wxs_mp_read_be(r, 2, &lo)) return false; *out = (int16_t)lo; return true;
    case 0xd2: case 0xd3:
        /* int 64 fits when its high half is the sign extension of the low. */
        if (tag == 0xd3 && !wxs_mp_read_be(r, 4, &hi)) return false;
        if (!wxs_mp_read_be(r, 4, &lo)) return false;
        if (tag == 0xd3 && hi != ((lo & 0x80000000u) ? 0xffffffffu : 0u)) return false;
        *out = (int32_t)lo;
        return true;
    default: return false;
    }
}

/* Skips one value of any type, at most `depth` levels of arrays and maps
 * deep. Every element takes at least one byte, so counts beyond the bytes
 * left are refused up front and skipping is linear in the input. */
static inline bool wxs_mp_skip(wxs_mp_reader *r, unsigned depth) {
    uint8_t tag;
    uint32_t n, elements;
    wxs_slice ignored;
    if (!wxs_mp_read_byte(r, &tag)) return false;
    if (tag <= 0x7f || tag >= 0xe0) return true;            /* fixint */
    if ((tag & 0xe0) == 0xa0) return wxs_mp_take(r, tag & 0x1f, &ignored);
    if ((tag & 0xf0) == 0x80) { n = tag & 0x0f; elements = 2; }   /* fixmap */
    else if ((tag & 0xf0) == 0x90) { n = tag & 0x0f; elements = 1; } /* fixarray */
    else {
        switch (tag) {
        case 0xc0: case 0xc2: case 0xc3: return true;       /* nil, bools */
        case 0xcc: case 0xd0: return wxs_mp_take(r, 1, &ignored);
        case 0xcd: case 0xd1: return wxs_mp_take(r, 2, &ignored);
        case 0xca: case 0xce: case 0xd2: return wxs_mp_take(r, 4, &ignored);
        case 0xcb: case 0xcf: case 0xd3: return wxs_mp_take(r, 8, &ignored);
        case 0xd4: return wxs_mp_take(r, 2, &ignored);      /* fixext 1 */
        case 0xd5: return wxs_mp_take(r, 3, &ignored);
        case 0xd6: return wxs_mp_take(r, 5, &ignored);
        case 0xd7: return wxs_mp_take(r, 9, &ignored);
        case 0xd8: return wxs_mp_take(r, 17, &ignored);
        case 0xc4: case 0xd9:
            return wxs_mp_read_be(r, 1, &n) && wxs_mp_take(r, n, &ignored);
        case 0xc5: case 0xda:
            return wxs_mp_read_be(r, 2, &n) && wxs_mp_take(r, n, &ignored);
        case 0xc6: case 0xdb:
            return wxs_mp_read_be(r, 4, &n) && wxs_mp_take(r, n, &ignored);
        case 0xc7:                                          /* ext 8/16/32 */
            return wxs_mp_read_be(r, 1, &n) && n < UINT32_MAX &&
                   wxs_mp_take(r, n + 1, &ignored);
        case 0xc8:
            return wxs_mp_read_be(r, 2, &n) && wxs_mp_take(r, n + 1, &ignored);
        case 0xc9:
            return wxs_mp_read_be(r, 4, &n) && n < UINT32_MAX &&
                   wxs_mp_take(r, n + 1, &ignored);
        case 0xdc: if (!wxs_mp_read_be(r, 2, &n)) return false; elements = 1; break;
        case 0xdd: if (!wxs_mp_read_be(r, 4, &n)) return false; elements = 1; break;
        case 0xde: if (!wxs_mp_read_be(r, 2, &n)) return false; elements = 2; break;
        case 0xdf: if (!wxs_mp_read_be(r, 4, &n)) return false; elements = 2; break;
        default: return false;                              /* 0xc1: never used */
        }
    }
    if (n > wxs_mp_left(r) / elements) return false;
    if (n > 0 && depth == 0) return false;
    for (uint32_t i = 0; i < n * elements; i++)
        if (!wxs_mp_skip(r, depth - 1)) return false;
    return true;
}

/* The fields of a waSCC http::Request this reader extracts; all point into
 * the payload, so they live as long as the request buffer. Headers are
 * skipped. */
typedef struct {
    wxs_slice method;
    wxs_slice path;
    wxs_slice query_string;
    wxs_slice body;
} wxs_http_request;

/* Decodes a `HandleRequest` payload. False unless it is one map whose
 * `method` and `path` are strings, with `queryString` a string and `body`
 * a bin when present, none of the four more than once (which one would
 * win is a guess, and guessing differently from a proxy is how requests
 * get smuggled), and whose other values are well formed; keys may come in
 * any order. Trailing bytes are ignored, as the Rust codec does. */
static inline bool wxs_http_request_parse(wxs_slice payload,
                                          wxs_http_request *out) {
    static const uint8_t empty[1] = {0};
    wxs_mp_reader r;
    uint32_t entries;
    bool have_method = false, have_path = false;
    bool have_query = false, have_body = false;
    wxs_slice none = {empty, 0};
    out->method = out->path = out->query_string = out->body = none;
    wxs_mp_reader_init(&r, payload);
    if (!wxs_mp_read_map(&r, &entries)) return false;
    for (uint32_t i = 0; i < entries; i++) {
        wxs_mp_reader at_key = r;
        wxs_slice key;
        if (!wxs_mp_read_str(&r, &key)) {
            /* Not a field name: step over whatever it is, and its value. */
            r = at_key;
            if (!wxs_mp_skip(&r, WXS_MP_MAX_DEPTH) ||
                !wxs_mp_skip(&r, WXS_MP_MAX_DEPTH))
                return false;
            continue;
        }
        if (wxs_slice_eq_cstr(key, "method")) {
            if (have_method || !wxs_mp_read_str(&r, &out->method)) return false;
            have_method = true;
        } else if (wxs_slice_eq_cstr(key, "path")) {
            if (have_path || !wxs_mp_read_str(&r, &out->path)) return false;
            have_path = true;
        } else if (wxs_slice_eq_cstr(key, "queryString")) {
            if (have_query || !wxs_mp_read_str(&r, &out->query_string)) return false;
            have_query = true;
        } else if (wxs_slice_eq_cstr(key, "body")) {
            if (have_body || !wxs_mp_read_bytes(&r, true, &out->body)) return false;
            have_body = true;
        } else if (!wxs_mp_skip(&r, WXS_MP_MAX_DEPTH)) {
            return false;
        }
    }
    return have_method && have_path;
}

/* ------------------------------------------------------------------ */
/* waSCC key-value (`wascc:keyvalue`)                                  */
/* ------------------------------------------------------------------ */

/* Writes an `Add` payload: waxosuit-codec's keyvalue::AddRequest,
 * `{key: str, value: i32}` (camelCase, declaration order), adding `delta`
 * to the integer at `key`. Check wxs_buf_ok before sending it. */
static inline void wxs_kv_add_request(wxs_buf *b, wxs_slice key, int32_t delta) {
    wxs_mp_map_header(b, 2);
    wxs_mp_cstr(b, "key");
    wxs_mp_str(b, key);
    wxs_mp_cstr(b, "value");
    wxs_mp_int(b, delta);
}

/* Decodes an `Add` reply, keyvalue::AddResponse `{value: i32}`: the
 * counter after the addition. False unless it is one map with exactly one
 * `value`, an integer that fits an int32_t; other fields are skipped (when
 * well formed) and trailing bytes ignored, as the Rust codec does. */
static inline bool wxs_kv_add_response_parse(wxs_slice reply, int32_t *value) {
    wxs_mp_reader r;
    uint32_t entries;
    bool have_value = false;
    wxs_mp_reader_init(&r, reply);
    if (!wxs_mp_read_map(&r, &entries)) return false;
    for (uint32_t i = 0; i < entries; i++) {
        wxs_mp_reader at_key = r;
        wxs_slice key;
        if (wxs_mp_read_str(&r, &key) && wxs_slice_eq_cstr(key, "value")) {
            if (have_value || !wxs_mp_read_i32(&r, value)) return false;
            have_value = true;
            continue;
        }
        r = at_key;
        if (!wxs_mp_skip(&r, WXS_MP_MAX_DEPTH) || !wxs_mp_skip(&r, WXS_MP_MAX_DEPTH))
            return false;
    }
    return have_value;
}

/* ------------------------------------------------------------------ */
/* Memory functions clang may call on its own (struct copies, large    */
/* initialisers) even with -ffreestanding. Weak, so a libc linked in   */
/* wins and several translation units may include this header.        */
/* ------------------------------------------------------------------ */

#if defined(__has_attribute)
#if __has_attribute(no_builtin)
/* No builtin (and no idiom turned into a library call) inside these. */
#define WXS_NO_BUILTIN __attribute__((no_builtin))
#endif
#endif
#ifndef WXS_NO_BUILTIN
#define WXS_NO_BUILTIN
#endif

WXS_NO_BUILTIN __attribute__((weak)) void *memcpy(void *restrict dst, const void *restrict src,
                                   size_t n) {
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

WXS_NO_BUILTIN __attribute__((weak)) void *memmove(void *dst, const void *src, size_t n) {
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d < s) {
        while (n--) *d++ = *s++;
    } else {
        while (n--) d[n] = s[n];
    }
    return dst;
}

WXS_NO_BUILTIN __attribute__((weak)) void *memset(void *dst, int c, size_t n) {
    uint8_t *d = dst;
    while (n--) *d++ = (uint8_t)c;
    return dst;
}

WXS_NO_BUILTIN __attribute__((weak)) int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

#endif /* WAXOSUIT_H */
