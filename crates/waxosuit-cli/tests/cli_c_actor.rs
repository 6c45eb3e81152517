//! The C actor of `examples/c-hello`, built with clang from
//! `sdk/c/waxosuit.h`, signed and run by the `waxosuit` binary: its
//! replies are byte-exact waSCC MessagePack, hostile payloads fail cleanly,
//! and `waxosuit up` serves it over HTTP with the example's own manifest,
//! counting in the key-value store through the header's `wxs_host_call`
//! (only `up` can check that path: `call` binds no capability).
//!
//! Needs clang (with the wasm32 target) and wasm-ld on the machine
//! (Debian: `apt-get install clang lld`); without them the tests fail,
//! saying so, rather than pass without having run.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::{Dir, Up, get};

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/c-hello")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Builds the example with its own script into `dir`, so the test checks
/// the build users run, and signs it with the directory's keystore the way
/// the README does. Returns the signed module.
fn build_and_sign(dir: &Dir) -> PathBuf {
    let out_dir = dir.path("out");
    let build = Command::new("bash")
        .arg(example_dir().join("build.sh"))
        .arg(&out_dir)
        .output()
        .expect("cannot run bash for examples/c-hello/build.sh");
    assert!(
        build.status.success(),
        "examples/c-hello/build.sh failed ({}). It needs clang with the wasm32 target and \
         wasm-ld from lld (Debian: `apt-get install clang lld`).\nstdout:\n{}\nstderr:\n{}",
        build.status,
        text(&build.stdout),
        text(&build.stderr)
    );
    let signed = dir.path("c_hello_signed.wasm");
    let sign = waxosuit(dir)
        .args(["claims", "sign"])
        .arg(out_dir.join("c_hello.wasm"))
        .arg("-o")
        .arg(&signed)
        .args(["--name", "c-hello", "--http-server", "--keyvalue"])
        .output()
        .unwrap();
    assert!(sign.status.success(), "{}", text(&sign.stderr));
    signed
}

/// The binary, with the directory's keystore (which `claims sign` fills and
/// `call`/`up` trust) and no trust from the caller's environment.
fn waxosuit(dir: &Dir) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_waxosuit"));
    cmd.current_dir(dir.0.path())
        .env("WAXOSUIT_KEYS", dir.keys())
        .env_remove("WAXOSUIT_ALLOW_ANY_ISSUER");
    cmd
}

fn call(dir: &Dir, module: &Path, operation: &str, payload: &[u8]) -> Output {
    let file = dir.path("payload.bin");
    std::fs::write(&file, payload).unwrap();
    waxosuit(dir)
        .arg("call")
        .arg(module)
        .arg(operation)
        .arg("--data-file")
        .arg(&file)
        .arg("--no-cache")
        .output()
        .unwrap()
}

// MessagePack pieces for hand-made payloads: the point is to send what the
// Rust codec never would.
fn mp_str(s: &[u8]) -> Vec<u8> {
    let mut out = match s.len() {
        n @ 0..32 => vec![0xa0 | n as u8],
        n @ 32..256 => vec![0xd9, n as u8],
        n => {
            let n = u16::try_from(n).unwrap();
            vec![0xda, (n >> 8) as u8, n as u8]
        }
    };
    out.extend_from_slice(s);
    out
}

fn mp_bin(b: &[u8]) -> Vec<u8> {
    let mut out = match b.len() {
        n @ 0..256 => vec![0xc4, n as u8],
        n => {
            let n = u16::try_from(n).unwrap();
            vec![0xc5, (n >> 8) as u8, n as u8]
        }
    };
    out.extend_from_slice(b);
    out
}

/// A map of the given entries, each already encoded key then value.
fn mp_map(entries: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0x80 | u8::try_from(entries.len()).unwrap()];
    for (key, value) in entries {
        out.extend(mp_str(key));
        out.extend_from_slice(value);
    }
    out
}

/// `http::Request{method:"GET", path, queryString:"", header:{}, body:[]}`
/// as the Rust codec writes it (spec §13.2 layout).
fn request(path: &[u8]) -> Vec<u8> {
    mp_map(&[
        (b"method", mp_str(b"GET")),
        (b"path", mp_str(path)),
        (b"queryString", mp_str(b"")),
        (b"header", vec![0x80]),
        (b"body", mp_bin(b"")),
    ])
}

/// The exact bytes rmp-serde writes for the actor's `http::Response`
/// (spec §13.2: `84 aa "statusCode" cc c8 a6 "status" a2 "OK" …`).
fn expected_reply(body: &[u8]) -> Vec<u8> {
    let mut out = vec![0x84];
    out.extend(mp_str(b"statusCode"));
    out.extend([0xcc, 200]);
    out.extend(mp_str(b"status"));
    out.extend(mp_str(b"OK"));
    out.extend(mp_str(b"header"));
    out.push(0x81);
    out.extend(mp_str(b"Content-Type"));
    out.extend(mp_str(b"text/plain"));
    out.extend(mp_str(b"body"));
    out.extend(mp_bin(body));
    out
}

/// How the actor logs a failed host call (with the host's reason after it).
const KV_FAILED: &str = "c-hello: the key-value store (wascc:keyvalue) failed: ";

/// All a client learns of a failed host call.
const KV_UNAVAILABLE: &str = "key-value store unavailable\n";

const NOT_A_REQUEST: &str = "c-hello: the HandleRequest payload is not a waSCC HTTP request";

#[test]
fn c_actor_replies_byte_exact_and_refuses_malformed_payloads() {
    let dir = Dir::new();
    let module = build_and_sign(&dir);

    let out = call(&dir, &module, "HandleRequest", &request(b"/world"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, expected_reply(b"Hello from C, /world!\n"));

    // Only the first 256 bytes of the path are echoed.
    let long: Vec<u8> = std::iter::once(b'/')
        .chain(std::iter::repeat_n(b'p', 4999))
        .collect();
    let out = call(&dir, &module, "HandleRequest", &request(&long));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut body = b"Hello from C, ".to_vec();
    body.extend_from_slice(&long[..256]);
    body.extend_from_slice(b"...!\n");
    assert_eq!(out.stdout, expected_reply(&body));

    // Valid but unlike anything the Rust codec writes: keys reordered, an
    // unknown field holding every MessagePack type the reader must step
    // over, and nesting well within its depth bound.
    let mut everything = vec![0xdc, 0, 29];
    everything.extend([0xc0, 0xc3, 0xc2, 0x7f, 0xe0, 0xcc, 1, 0xcd, 1, 2]);
    everything.extend([0xce, 1, 2, 3, 4, 0xcf, 1, 2, 3, 4, 5, 6, 7, 8]);
    everything.extend([0xd0, 0x80, 0xd1, 1, 2, 0xd2, 1, 2, 3, 4]);
    everything.extend([0xd3, 1, 2, 3, 4, 5, 6, 7, 8]);
    everything.extend([0xca, 1, 2, 3, 4, 0xcb, 1, 2, 3, 4, 5, 6, 7, 8]);
    everything.extend([0xd4, 1, 0xaa, 0xd5, 1, 0, 0, 0xd6, 1, 0, 0, 0, 0]);
    everything.extend([0xd7, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xd8, 1]);
    everything.extend([0; 16]);
    everything.extend([0xc7, 2, 1, 0xaa, 0xbb, 0xc8, 0, 1, 1, 0xaa]);
    everything.extend([0xc9, 0, 0, 0, 1, 1, 0xaa]);
    everything.extend([0xd9, 1, b'x', 0xda, 0, 1, b'x', 0xdb, 0, 0, 0, 1, b'x']);
    everything.extend([0xc5, 0, 1, 0xaa, 0xc6, 0, 0, 0, 0]);
    everything.extend([0xde, 0, 1, 0xa1, b'k', 0xdd, 0, 0, 0, 0]);
    let mut nested = vec![0x91; 20];
    nested.push(0xc0);
    let odd = mp_map(&[
        (b"body", mp_bin(b"ignored")),
        (b"x-extra", everything),
        (b"header", [vec![0x81, 0xa1, b'a'], nested].concat()),
        (b"path", mp_str(b"/odd")),
        (b"queryString", mp_str(b"q=1")),
        (b"method", mp_str(b"POST")),
    ]);
    let out = call(&dir, &module, "HandleRequest", &odd);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, expected_reply(b"Hello from C, /odd!\n"));

    let deep = [
        vec![0x83],
        mp_str(b"method"),
        mp_str(b"GET"),
        mp_str(b"header"),
    ]
    .concat()
    .into_iter()
    .chain(std::iter::repeat_n(0x91, 100_000))
    .chain([0xc0])
    .chain(mp_str(b"path"))
    .chain(mp_str(b"/deep"))
    .collect::<Vec<u8>>();
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("truncated map", vec![0x85]),
        (
            "map32 claiming 4 G entries",
            vec![0xdf, 0xff, 0xff, 0xff, 0xff],
        ),
        (
            "str32 claiming 4 GiB",
            [
                vec![0x81],
                mp_str(b"method"),
                vec![0xdb, 0xff, 0xff, 0xff, 0xff],
            ]
            .concat(),
        ),
        (
            "duplicate path",
            mp_map(&[
                (b"method", mp_str(b"GET")),
                (b"path", mp_str(b"/a")),
                (b"path", mp_str(b"/b")),
            ]),
        ),
        (
            "path as bin",
            mp_map(&[(b"method", mp_str(b"GET")), (b"path", mp_bin(b"/x"))]),
        ),
        (
            "duplicate queryString",
            mp_map(&[
                (b"method", mp_str(b"GET")),
                (b"path", mp_str(b"/a")),
                (b"queryString", mp_str(b"a=1")),
                (b"queryString", mp_str(b"a=2")),
            ]),
        ),
        (
            "duplicate body",
            mp_map(&[
                (b"method", mp_str(b"POST")),
                (b"path", mp_str(b"/a")),
                (b"body", mp_bin(b"one")),
                (b"body", mp_bin(b"two")),
            ]),
        ),
        (
            "duplicate method",
            mp_map(&[
                (b"method", mp_str(b"GET")),
                (b"method", mp_str(b"POST")),
                (b"path", mp_str(b"/a")),
            ]),
        ),
        ("no path", mp_map(&[(b"method", mp_str(b"GET"))])),
        (
            "reserved 0xc1",
            mp_map(&[
                (b"method", mp_str(b"GET")),
                (b"path", mp_str(b"/x")),
                (b"junk", vec![0xc1]),
            ]),
        ),
        (
            // 2^31 entries are 2^32 elements: a count that wraps to 0 if
            // multiplied unchecked.
            "map32 of 2^31 entries in an unknown field",
            mp_map(&[
                (b"junk", vec![0xdf, 0x80, 0, 0, 0]),
                (b"method", mp_str(b"GET")),
                (b"path", mp_str(b"/x")),
            ]),
        ),
        (
            "ext32 running past the end",
            mp_map(&[
                (b"junk", vec![0xc9, 0xff, 0xff, 0xff, 0xff, 1]),
                (b"method", mp_str(b"GET")),
                (b"path", mp_str(b"/x")),
            ]),
        ),
        ("nesting 100 000 deep", deep),
    ];
    for (what, payload) in hostile {
        let out = call(&dir, &module, "HandleRequest", &payload);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(out.stdout.is_empty(), "{what}: {:?}", out.stdout);
        assert!(stderr.contains(NOT_A_REQUEST), "{what}: {stderr}");
        assert!(!stderr.contains("trap"), "{what}: {stderr}");
    }

    // Health as the host checks it: success with an empty reply.
    let health = mp_map(&[(b"placeholder", vec![0xc2])]);
    let out = call(&dir, &module, "HealthRequest", &health);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);

    // `call` binds no key-value store: the host call fails, and the actor
    // answers a 500 rather than trapping, keeping the host's reason for
    // the log.
    let out = call(&dir, &module, "HandleRequest", &request(b"/count/a"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reply = text(&out.stdout);
    assert!(reply.contains("Internal Server Error"), "{reply}");
    assert!(reply.contains(KV_UNAVAILABLE), "{reply}");
    assert!(!reply.contains(KV_FAILED), "{reply}");
    assert!(!reply.contains("wascc:keyvalue"), "{reply}");
    assert!(out.stdout.len() < 1024, "{} bytes", out.stdout.len());

    let out = call(&dir, &module, "Bogus", b"");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(r#"no handler registered for operation "Bogus""#),
        "{stderr}"
    );
}

/// One raw HTTP/1.1 exchange: (status, head, body).
fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // The server may answer (and close) before a large request is written
    // in full; what it answered is what matters.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", text(&response)));
    let head = text(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head, response[split + 4..].to_vec())
}

#[test]
fn waxosuit_up_serves_the_c_actor_through_hostile_requests() {
    let dir = Dir::new();
    let module = build_and_sign(&dir);
    let manifest = example_dir().join("manifest.yaml");
    let module = module.to_str().unwrap();
    let up = Up::start_with(
        &dir,
        &manifest,
        &[],
        // The port and address through the variables the host itself reads.
        &[
            ("C_HELLO_WASM", module),
            ("PORT", "0"),
            ("WAXOSUIT_HTTP_ADDRESS", "127.0.0.1"),
        ],
    )
    .unwrap();
    let addr = up.addr("c-hello");

    let (status, head, body) = exchange(
        addr,
        b"GET /world HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        (status, text(&body).as_str()),
        (200, "Hello from C, /world!\n")
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\ncontent-type: text/plain"),
        "{head}"
    );

    // Past the server's head (64 KiB) and URI limits: refused before the
    // actor with a bare status; which limit speaks first is the server's
    // business.
    let huge = format!("/{}", "a".repeat(100 * 1024));
    let (status, body) = get(addr, &huge);
    assert!(matches!(status, 414 | 431), "{status} {body:?}");
    assert!(body.len() < 1024, "{} bytes", body.len());

    // Within it: the actor sees all 60 KiB and echoes a bounded part.
    let long = format!("/{}", "b".repeat(60 * 1024));
    assert_eq!(
        get(addr, &long),
        (200, format!("Hello from C, {}...!\n", &long[..256]))
    );

    // Percent-encoded bytes that are not UTF-8 (and a NUL) arrive as the
    // escapes the client sent, and come back as such.
    let odd = "/%ff%fe%00%c3%28";
    assert_eq!(get(addr, odd), (200, format!("Hello from C, {odd}!\n")));

    // A body larger than the actor's 256 KiB request buffer: it fails the
    // call without reading it, which the server turns into a 500.
    let big = vec![b'z'; 300 * 1024];
    let mut post = format!(
        "POST /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    post.extend_from_slice(&big);
    let (status, _, body) = exchange(addr, &post);
    assert_eq!(status, 500, "{}", text(&body));
    assert!(body.len() < 1024, "{} bytes", body.len());
    up.wait_for_log("request larger than the actor's 256 KiB buffer", 1);

    assert_eq!(get(addr, "/again"), (200, "Hello from C, /again!\n".into()));

    // Counters in the manifest's memory store, through `wxs_host_call`:
    // one per name, each call one more.
    for (path, count) in [("/count/a", 1), ("/count/a", 2), ("/count/b", 1)] {
        let (status, head, body) = exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(
            (status, text(&body)),
            (200, format!(r#"{{"count":{count}}}"#)),
            "{path}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("\r\ncontent-type: application/json"),
            "{head}"
        );
    }
    // Only GET counts; other methods keep the greeting.
    let (status, _, body) = exchange(
        addr,
        b"POST /count/a HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(
        (status, text(&body).as_str()),
        (200, "Hello from C, /count/a!\n")
    );
    let (status, body) = get(addr, "/count/");
    assert_eq!(status, 400, "{body}");
    assert_eq!(get(addr, "/count/a"), (200, r#"{"count":3}"#.into()));
    // Past 127 and 255 the store's replies use MessagePack's uint 8 and
    // uint 16 encodings, which the actor's reader must take as well.
    for count in 1..=300 {
        assert_eq!(
            get(addr, "/count/many"),
            (200, format!(r#"{{"count":{count}}}"#))
        );
    }

    let (ok, stdout, stderr) = up.terminate();
    assert!(ok, "{stderr}");
    assert!(stdout.contains("Stopped."), "{stdout}");
}

/// The same actor on a host that binds it to the HTTP server only: its
/// host call fails, it answers a bare 500 and logs the host's reason
/// through `__console_log`, and goes on serving.
#[test]
fn c_actor_without_a_keyvalue_binding_answers_500() {
    let dir = Dir::new();
    let module = build_and_sign(&dir);
    let manifest = dir.manifest(&format!(
        "actors:\n  - {module:?}\ncapabilities:\n  - id: wascc:http_server\nbindings:\n  \
         - actor: c-hello\n    capability: wascc:http_server\n    values: {{ ADDRESS: \
         127.0.0.1, PORT: \"0\" }}\n"
    ));
    let up = Up::start_with(&dir, &manifest, &[], &[]).unwrap();
    let addr = up.addr("c-hello");

    let (status, body) = get(addr, "/count/a");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body, KV_UNAVAILABLE);
    // The host's own words go to its log, attributed to the actor.
    up.wait_for_log(KV_FAILED, 1);

    assert_eq!(get(addr, "/world"), (200, "Hello from C, /world!\n".into()));

    let (ok, _, stderr) = up.terminate();
    assert!(ok, "{stderr}");
    let logged = stderr
        .lines()
        .find(|line| line.contains(KV_FAILED))
        .unwrap();
    let reason = logged.split_once(KV_FAILED).unwrap().1;
    assert!(reason.contains("no binding to wascc:keyvalue"), "{logged}");
    assert!(
        !body.contains("wascc:keyvalue") && !body.contains("binding"),
        "the host's reason reached the client: {body}"
    );
}
