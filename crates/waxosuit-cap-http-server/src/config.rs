//! The binding values this provider understands, parsed once per binding.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use waxosuit_codec::http::SERVER_CAPABILITY_ID;
use waxosuit_provider::{BindRequest, ProviderError};

use crate::bounded::{ConnectionLimits, WhenFull};

/// Binding value: the IP address to listen on (default [`DEFAULT_ADDRESS`],
/// loopback). **waSCC listened on `0.0.0.0` by default**; a binding without
/// `ADDRESS` is logged as a warning that says so. Set `ADDRESS: 0.0.0.0`
/// (or a specific interface) to accept connections from other machines.
pub const ADDRESS: &str = "ADDRESS";
/// Binding value: the TCP port to listen on (default [`DEFAULT_PORT`]);
/// `0` asks the operating system for a free port, see
/// [`HttpServerProvider::bound_address`](crate::HttpServerProvider::bound_address).
pub const PORT: &str = "PORT";
/// Binding value: the largest request body accepted, in bytes (default
/// [`DEFAULT_MAX_BODY_BYTES`], or the actor's payload limit when the host
/// passes it in [`ACTOR_MAX_PAYLOAD`] and it is lower); larger requests get
/// `413`. It may not exceed the actor's payload limit.
pub const MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";
/// Binding value: how long reading the body plus the actor's handling may
/// take, in milliseconds (default [`DEFAULT_REQUEST_TIMEOUT`]); a slow body
/// gets `408`, a slow actor `504`.
pub const REQUEST_TIMEOUT_MS: &str = "REQUEST_TIMEOUT_MS";
/// Binding value: how long removing the binding waits for in-flight requests,
/// in milliseconds (default [`DEFAULT_DRAIN_TIMEOUT`]); connections still
/// open after it are closed.
pub const DRAIN_TIMEOUT_MS: &str = "DRAIN_TIMEOUT_MS";
/// Binding value: how long a client may take to send a request head, in
/// milliseconds (default [`DEFAULT_HEADER_READ_TIMEOUT`]; `0` turns it off).
/// The clock starts when the server begins waiting for a head, so on a
/// keep-alive connection it also bounds the wait between requests.
pub const HEADER_READ_TIMEOUT_MS: &str = "HEADER_READ_TIMEOUT_MS";
/// Binding value: how long a connection may stay open with no request in
/// progress and no byte received or sent, in milliseconds (default
/// [`DEFAULT_IDLE_TIMEOUT`]; `0` turns it off). Closes idle keep-alive
/// connections even with [`HEADER_READ_TIMEOUT_MS`] off.
pub const IDLE_TIMEOUT_MS: &str = "IDLE_TIMEOUT_MS";
/// Binding value: how long sending a response may make no progress, in
/// milliseconds (default [`DEFAULT_WRITE_TIMEOUT`]; `0` turns it off): a
/// client that stops reading is disconnected. A slow reader that keeps
/// reading is not; the clock restarts with every byte the kernel accepts.
pub const WRITE_TIMEOUT_MS: &str = "WRITE_TIMEOUT_MS";
/// Binding value: the fewest bytes a second a response the client is slow
/// to read must average over each [`WRITE_TIMEOUT_MS`] (default
/// [`DEFAULT_MIN_WRITE_RATE`]; `0` turns it off): a client that reads a
/// segment now and then, to hold a large response in the host's memory,
/// is disconnected.
pub const MIN_WRITE_BYTES_PER_SEC: &str = "MIN_WRITE_BYTES_PER_SEC";
/// Binding value: the most request headers accepted (hyper's default of 100
/// when absent); more get `431`.
pub const MAX_HEADERS: &str = "MAX_HEADERS";
/// Binding value: the largest request head (request line plus headers)
/// accepted, in bytes (default [`DEFAULT_MAX_HEADER_BYTES`]); larger heads
/// get `431`.
pub const MAX_HEADER_BYTES: &str = "MAX_HEADER_BYTES";
/// Binding value: how many connections the binding's listener keeps open at
/// once (default [`DEFAULT_MAX_CONNECTIONS`]). Past it, a new connection is
/// answered `503` with `Retry-After` and closed at once, and the connections
/// already open are served as before. Each open connection is one file
/// descriptor; keep the sum over all bindings below the process's limit
/// (`ulimit -n`).
pub const MAX_CONNECTIONS: &str = "MAX_CONNECTIONS";
/// Binding value: how many of those connections one client may hold (default
/// half of [`MAX_CONNECTIONS`], at least one); past it, that client's new
/// connections are answered `503` and closed, and other clients' are served.
/// A client is an IPv4 address, or an IPv6 /64 (what one host is usually
/// given). Behind a proxy every request comes from the proxy's address:
/// raise it to `MAX_CONNECTIONS` there.
pub const MAX_CONNECTIONS_PER_CLIENT: &str = "MAX_CONNECTIONS_PER_CLIENT";
/// Binding value: what a new connection past [`MAX_CONNECTIONS`] gets:
/// `evict-idle` (the default) closes the oldest connection that is not
/// handling a request (a half-sent head, an idle keep-alive, else one whose
/// client does not read its answers) and serves the new one; `refuse`
/// answers the new one `503` and leaves the open ones alone. With `refuse`,
/// two clients (two addresses, two IPv6 /64s) holding half-sent heads at
/// their share each lock everyone else out.
pub const WHEN_FULL: &str = "WHEN_FULL";
/// Binding value: how many requests the binding serves at once (default
/// [`DEFAULT_MAX_IN_FLIGHT`]); past it, requests get `503` with
/// `Retry-After` without reaching the actor. A request is in flight from its
/// complete head to its response, so this also bounds the request bodies
/// held in memory: at most `MAX_IN_FLIGHT` × [`MAX_BODY_BYTES`].
pub const MAX_IN_FLIGHT: &str = "MAX_IN_FLIGHT";
/// Binding value: how many of those requests one client may have in flight
/// (default half of [`MAX_IN_FLIGHT`], at least one); past it, that client's
/// requests get the same `503`, and other clients' are served. A client is
/// counted as for [`MAX_CONNECTIONS_PER_CLIENT`]. Without it, one address
/// trickling request bodies (each request is in flight from its head on)
/// could hold every place until [`REQUEST_TIMEOUT_MS`]. Behind a proxy,
/// raise it to `MAX_IN_FLIGHT`.
pub const MAX_IN_FLIGHT_PER_CLIENT: &str = "MAX_IN_FLIGHT_PER_CLIENT";
/// Binding value: the most headers an actor's reply may carry (default
/// [`DEFAULT_MAX_REPLY_HEADERS`], at most [`MAX_REPLY_HEADERS_LIMIT`]); a
/// reply with more is answered `500` and logged.
pub const MAX_REPLY_HEADERS: &str = "MAX_REPLY_HEADERS";
/// Binding value: the most bytes of header names and values an actor's reply
/// may carry in total (default [`DEFAULT_MAX_REPLY_HEADER_BYTES`]); a reply
/// with more is answered `500` and logged.
pub const MAX_REPLY_HEADER_BYTES: &str = "MAX_REPLY_HEADER_BYTES";
/// Binding value the *host* sets, not the manifest: the actor's payload
/// limit in bytes (its `max_payload`). A request whose MessagePack encoding
/// exceeds it gets `413` instead of failing inside the runtime, and the
/// default [`MAX_BODY_BYTES`] is lowered to it. Absent, the provider assumes
/// nothing beyond [`DEFAULT_MAX_BODY_BYTES`].
pub const ACTOR_MAX_PAYLOAD: &str = waxosuit_codec::core::CONFIG_WAXOSUIT_MAX_PAYLOAD;

/// Loopback. waSCC listened on all interfaces (`0.0.0.0`); Waxosuit does so
/// only when a binding asks for it with [`ADDRESS`], so that nothing is
/// exposed to the network by accident.
pub const DEFAULT_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// waSCC's default port.
pub const DEFAULT_PORT: u16 = 8080;
/// 4 MiB: the runtime's default payload limit for an actor (a larger body
/// could not reach an actor with default limits anyway).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// 30 seconds.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// 10 seconds.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// 30 seconds, hyper's own default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// 15 seconds: shorter than [`DEFAULT_HEADER_READ_TIMEOUT`], so an idle
/// keep-alive connection is closed quietly as idle rather than answered
/// `408` as a slow client, and long enough for clients to reuse it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// 30 seconds without progress.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// 1 KiB a second: slower than any real client's link, faster than a
/// reader pacing itself to pin responses.
pub const DEFAULT_MIN_WRITE_RATE: u64 = 1024;
/// 64 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// 1024 per binding.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// 256 per binding.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// 128 headers.
pub const DEFAULT_MAX_REPLY_HEADERS: usize = 128;
/// 64 KiB.
pub const DEFAULT_MAX_REPLY_HEADER_BYTES: usize = 64 * 1024;
/// The highest [`MAX_REPLY_HEADERS`] accepted: well below the 24,576
/// entries at which the `http` crate's header map refuses to grow.
pub const MAX_REPLY_HEADERS_LIMIT: usize = 10_000;

/// hyper refuses (panics on) a read buffer below 8 KiB, and the head must
/// fit in that buffer.
pub(crate) const MIN_HEADER_BYTES: usize = 8192;

/// Everything a listener needs from its binding's values.
#[derive(Debug, Clone)]
pub(crate) struct ListenerConfig {
    pub(crate) addr: SocketAddr,
    /// The binding did not name an address, so [`DEFAULT_ADDRESS`] is used.
    pub(crate) address_defaulted: bool,
    pub(crate) max_body_bytes: usize,
    /// The actor's payload limit, when the host said.
    pub(crate) max_payload: Option<usize>,
    pub(crate) request_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) max_headers: Option<usize>,
    pub(crate) max_in_flight: usize,
    pub(crate) max_in_flight_per_client: usize,
    pub(crate) reply: ReplyLimits,
    pub(crate) connections: ConnectionLimits,
}

/// The bounds on an actor's reply, per binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplyLimits {
    pub(crate) max_headers: usize,
    pub(crate) max_header_bytes: usize,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        ReplyLimits {
            max_headers: DEFAULT_MAX_REPLY_HEADERS,
            max_header_bytes: DEFAULT_MAX_REPLY_HEADER_BYTES,
        }
    }
}

impl ListenerConfig {
    /// Parses and validates the binding's values, naming the offending key.
    pub(crate) fn from_bind(req: &BindRequest) -> Result<ListenerConfig, ProviderError> {
        let ip = parse(
            req,
            ADDRESS,
            DEFAULT_ADDRESS,
            "is not an IP address",
            |_| true,
        )?;
        let port = parse(
            req,
            PORT,
            DEFAULT_PORT,
            "is not a port number (0-65535)",
            |_| true,
        )?;
        let max_payload = match req.values.get(ACTOR_MAX_PAYLOAD) {
            None => None,
            Some(_) => Some(parse(
                req,
                ACTOR_MAX_PAYLOAD,
                0,
                "is not a positive byte count (the host sets it from the actor's limits)",
                |n: &usize| *n > 0,
            )?),
        };
        let body_default = max_payload.map_or(DEFAULT_MAX_BODY_BYTES, |max| {
            max.min(DEFAULT_MAX_BODY_BYTES)
        });
        let max_body_bytes = parse(
            req,
            MAX_BODY_BYTES,
            body_default,
            "is not a byte count",
            |_| true,
        )?;
        if let Some(max) = max_payload
            && max_body_bytes > max
        {
            return Err(config_error(
                req,
                MAX_BODY_BYTES,
                format!(
                    "= {max_body_bytes} is larger than the actor's payload limit of {max} bytes, \
                     so such bodies could never reach it; lower MAX_BODY_BYTES to at most {max}, \
                     or raise the actor's max_payload_kib limit"
                ),
            ));
        }
        let request_timeout = parse_millis(req, REQUEST_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT)?;
        let drain_timeout = parse_millis(req, DRAIN_TIMEOUT_MS, DEFAULT_DRAIN_TIMEOUT)?;
        let header_read_timeout =
            parse_optional_millis(req, HEADER_READ_TIMEOUT_MS, DEFAULT_HEADER_READ_TIMEOUT)?;
        let idle_timeout = parse_optional_millis(req, IDLE_TIMEOUT_MS, DEFAULT_IDLE_TIMEOUT)?;
        let write_timeout = parse_optional_millis(req, WRITE_TIMEOUT_MS, DEFAULT_WRITE_TIMEOUT)?;
        let min_write_rate = parse(
            req,
            MIN_WRITE_BYTES_PER_SEC,
            DEFAULT_MIN_WRITE_RATE,
            "is not a number of bytes per second (0 turns it off)",
            |_| true,
        )?;
        let max_headers = match req.values.get(MAX_HEADERS) {
            None => None,
            Some(_) => Some(parse(
                req,
                MAX_HEADERS,
                0,
                "is not a positive number of headers",
                |n: &usize| *n > 0,
            )?),
        };
        let max_header_bytes = parse(
            req,
            MAX_HEADER_BYTES,
            DEFAULT_MAX_HEADER_BYTES,
            "must be a byte count of at least 8192",
            |n: &usize| *n >= MIN_HEADER_BYTES,
        )?;
        let max_connections = parse(
            req,
            MAX_CONNECTIONS,
            DEFAULT_MAX_CONNECTIONS,
            "is not a positive number of connections",
            |n: &usize| *n > 0,
        )?;
        // Half: one client holding connections open (slowloris' half-sent
        // heads) cannot take them all from the others, while a proxy in
        // front, whose address every request has, keeps room for ordinary
        // load. Lower it where clients reach the host directly.
        let max_connections_per_client = parse(
            req,
            MAX_CONNECTIONS_PER_CLIENT,
            (max_connections / 2).max(1),
            "is not a positive number of connections",
            |n: &usize| *n > 0,
        )?;
        let when_full = match req.values.get(WHEN_FULL).map(|v| v.trim()) {
            None | Some("evict-idle") => WhenFull::EvictIdle,
            Some("refuse") => WhenFull::Refuse,
            Some(other) => {
                return Err(config_error(
                    req,
                    WHEN_FULL,
                    format!("= `{other}` is neither `evict-idle` nor `refuse`"),
                ));
            }
        };
        let max_in_flight = parse(
            req,
            MAX_IN_FLIGHT,
            DEFAULT_MAX_IN_FLIGHT,
            "is not a positive number of requests",
            |n: &usize| *n > 0,
        )?;
        // Half, as for connections: a slow-body flood from one address
        // cannot take every place, and a proxy keeps room for ordinary load.
        let max_in_flight_per_client = parse(
            req,
            MAX_IN_FLIGHT_PER_CLIENT,
            (max_in_flight / 2).max(1),
            "is not a positive number of requests",
            |n: &usize| *n > 0,
        )?;
        let reply = ReplyLimits {
            max_headers: parse(
                req,
                MAX_REPLY_HEADERS,
                DEFAULT_MAX_REPLY_HEADERS,
                "must be a number of headers from 1 to 10000",
                |n: &usize| (1..=MAX_REPLY_HEADERS_LIMIT).contains(n),
            )?,
            max_header_bytes: parse(
                req,
                MAX_REPLY_HEADER_BYTES,
                DEFAULT_MAX_REPLY_HEADER_BYTES,
                "is not a positive byte count",
                |n: &usize| *n > 0,
            )?,
        };
        let connections = ConnectionLimits {
            max_connections,
            max_connections_per_client: Some(max_connections_per_client),
            when_full,
            header_read_timeout,
            idle_timeout,
            write_timeout,
            min_write_rate: (min_write_rate > 0).then_some(min_write_rate),
            max_header_bytes,
        };
        Ok(ListenerConfig {
            addr: SocketAddr::new(ip, port),
            address_defaulted: !req.values.contains_key(ADDRESS),
            max_body_bytes,
            max_payload,
            request_timeout,
            drain_timeout,
            max_headers,
            max_in_flight,
            max_in_flight_per_client,
            reply,
            connections,
        })
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn parse_millis(
    req: &BindRequest,
    key: &str,
    default: Duration,
) -> Result<Duration, ProviderError> {
    let ms = parse(
        req,
        key,
        millis(default),
        "must be a positive number of milliseconds",
        |ms: &u64| *ms > 0,
    )?;
    Ok(Duration::from_millis(ms))
}

/// A timeout that `0` turns off.
fn parse_optional_millis(
    req: &BindRequest,
    key: &str,
    default: Duration,
) -> Result<Option<Duration>, ProviderError> {
    let ms = parse(
        req,
        key,
        millis(default),
        "is not a number of milliseconds (0 turns it off)",
        |_| true,
    )?;
    Ok((ms > 0).then(|| Duration::from_millis(ms)))
}

/// `default` when the key is absent; otherwise the value parsed as `T` and
/// accepted by `valid`, or a [`ProviderError::Config`] quoting the value.
fn parse<T: FromStr>(
    req: &BindRequest,
    key: &str,
    default: T,
    problem: &str,
    valid: impl Fn(&T) -> bool,
) -> Result<T, ProviderError> {
    let Some(raw) = req.values.get(key) else {
        return Ok(default);
    };
    match raw.trim().parse::<T>() {
        Ok(value) if valid(&value) => Ok(value),
        _ => Err(config_error(req, key, format!("= `{raw}` {problem}"))),
    }
}

pub(crate) fn config_error(req: &BindRequest, key: &str, reason: String) -> ProviderError {
    ProviderError::Config {
        capid: SERVER_CAPABILITY_ID.to_string(),
        actor: req.actor.clone(),
        key: key.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn bind(values: &[(&str, &str)]) -> BindRequest {
        BindRequest {
            actor: "MACTOR".into(),
            binding: "default".into(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        }
    }

    #[test]
    fn defaults_are_loopback_and_bounded() {
        let cfg = ListenerConfig::from_bind(&bind(&[])).unwrap();
        assert_eq!(cfg.addr, "127.0.0.1:8080".parse().unwrap());
        assert!(cfg.address_defaulted);
        assert_eq!(cfg.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(cfg.max_payload, None);
        assert_eq!(cfg.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(cfg.max_headers, None);
        assert_eq!(cfg.max_in_flight, DEFAULT_MAX_IN_FLIGHT);
        assert_eq!(cfg.max_in_flight_per_client, DEFAULT_MAX_IN_FLIGHT / 2);
        // Half of whatever the places are, at least one.
        for (places, share) in [("3", 1), ("1", 1), ("1000", 500)] {
            let cfg = ListenerConfig::from_bind(&bind(&[(MAX_IN_FLIGHT, places)])).unwrap();
            assert_eq!(
                cfg.max_in_flight_per_client, share,
                "MAX_IN_FLIGHT={places}"
            );
        }
        assert_eq!(cfg.reply, ReplyLimits::default());
        assert_eq!(cfg.reply.max_headers, 128);
        assert_eq!(cfg.reply.max_header_bytes, 64 * 1024);
        let c = &cfg.connections;
        assert_eq!(c.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(
            c.max_connections_per_client,
            Some(DEFAULT_MAX_CONNECTIONS / 2)
        );
        // Half of whatever the connections are, at least one.
        for (connections, share) in [("3", 1), ("1", 1), ("4096", 2048)] {
            let cfg = ListenerConfig::from_bind(&bind(&[(MAX_CONNECTIONS, connections)])).unwrap();
            assert_eq!(cfg.connections.max_connections_per_client, Some(share));
        }
        assert_eq!(c.when_full, WhenFull::EvictIdle);
        assert_eq!(c.header_read_timeout, Some(DEFAULT_HEADER_READ_TIMEOUT));
        assert_eq!(c.idle_timeout, Some(DEFAULT_IDLE_TIMEOUT));
        assert_eq!(c.write_timeout, Some(DEFAULT_WRITE_TIMEOUT));
        assert_eq!(c.max_header_bytes, DEFAULT_MAX_HEADER_BYTES);

        let explicit = ListenerConfig::from_bind(&bind(&[(ADDRESS, "0.0.0.0")])).unwrap();
        assert_eq!(explicit.addr, "0.0.0.0:8080".parse().unwrap());
        assert!(!explicit.address_defaulted);
    }

    #[test]
    fn zero_turns_the_connection_timeouts_off() {
        let cfg = ListenerConfig::from_bind(&bind(&[
            (HEADER_READ_TIMEOUT_MS, "0"),
            (IDLE_TIMEOUT_MS, "0"),
            (WRITE_TIMEOUT_MS, "0"),
        ]))
        .unwrap();
        assert_eq!(cfg.connections.header_read_timeout, None);
        assert_eq!(cfg.connections.idle_timeout, None);
        assert_eq!(cfg.connections.write_timeout, None);
        let cfg = ListenerConfig::from_bind(&bind(&[(HEADER_READ_TIMEOUT_MS, "1500")])).unwrap();
        assert_eq!(
            cfg.connections.header_read_timeout,
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn values_are_applied() {
        let cfg = ListenerConfig::from_bind(&bind(&[
            (ADDRESS, "::1"),
            (PORT, " 0 "),
            (MAX_BODY_BYTES, "10"),
            (REQUEST_TIMEOUT_MS, "250"),
            (DRAIN_TIMEOUT_MS, "5"),
            (MAX_HEADERS, "7"),
            (MAX_HEADER_BYTES, "9000"),
            (IDLE_TIMEOUT_MS, "700"),
            (WRITE_TIMEOUT_MS, "800"),
            (MAX_CONNECTIONS, "3"),
            (MAX_CONNECTIONS_PER_CLIENT, "2"),
            (MAX_IN_FLIGHT, "2"),
            (MAX_IN_FLIGHT_PER_CLIENT, "5"),
            (MAX_REPLY_HEADERS, "10000"),
            (MAX_REPLY_HEADER_BYTES, "100"),
        ]))
        .unwrap();
        assert_eq!(cfg.addr, "[::1]:0".parse().unwrap());
        assert_eq!(cfg.max_body_bytes, 10);
        assert_eq!(cfg.request_timeout, Duration::from_millis(250));
        assert_eq!(cfg.drain_timeout, Duration::from_millis(5));
        assert_eq!(cfg.max_headers, Some(7));
        assert_eq!(cfg.max_in_flight, 2);
        assert_eq!(cfg.max_in_flight_per_client, 5);
        assert_eq!(
            cfg.reply,
            ReplyLimits {
                max_headers: 10_000,
                max_header_bytes: 100
            }
        );
        let c = &cfg.connections;
        assert_eq!(c.max_header_bytes, 9000);
        assert_eq!(c.max_connections, 3);
        assert_eq!(c.max_connections_per_client, Some(2));
        assert_eq!(c.idle_timeout, Some(Duration::from_millis(700)));
        assert_eq!(c.write_timeout, Some(Duration::from_millis(800)));
    }

    #[test]
    fn the_actor_payload_limit_caps_the_body_limit() {
        // Lower than the default: becomes the default.
        let cfg = ListenerConfig::from_bind(&bind(&[(ACTOR_MAX_PAYLOAD, "1000")])).unwrap();
        assert_eq!((cfg.max_body_bytes, cfg.max_payload), (1000, Some(1000)));
        // Higher: the default stays.
        let cfg = ListenerConfig::from_bind(&bind(&[(ACTOR_MAX_PAYLOAD, "99999999")])).unwrap();
        assert_eq!(cfg.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        // An explicit body limit above it could never be served.
        let err = ListenerConfig::from_bind(&bind(&[
            (ACTOR_MAX_PAYLOAD, "1000"),
            (MAX_BODY_BYTES, "1001"),
        ]))
        .unwrap_err();
        let ProviderError::Config { key, reason, .. } = &err else {
            panic!("expected a Config error, got {err:?}");
        };
        assert_eq!(key, MAX_BODY_BYTES);
        assert!(
            reason.contains("1001") && reason.contains("1000"),
            "{reason}"
        );
        assert!(reason.contains("lower MAX_BODY_BYTES"), "{reason}");
    }

    #[test]
    fn bad_values_name_actor_key_and_value() {
        for (key, value) in [
            (PORT, "http"),
            (PORT, "65536"),
            (ADDRESS, "example.com"),
            (MAX_BODY_BYTES, "-1"),
            (REQUEST_TIMEOUT_MS, "0"),
            (HEADER_READ_TIMEOUT_MS, "soon"),
            (IDLE_TIMEOUT_MS, "-5"),
            (WRITE_TIMEOUT_MS, "1s"),
            (MAX_HEADERS, "0"),
            (MAX_HEADER_BYTES, "100"),
            (MAX_CONNECTIONS, "0"),
            (MAX_CONNECTIONS_PER_CLIENT, "0"),
            (MAX_CONNECTIONS_PER_CLIENT, "many"),
            (MAX_IN_FLIGHT, "0"),
            (MAX_IN_FLIGHT_PER_CLIENT, "0"),
            (MAX_IN_FLIGHT_PER_CLIENT, "half"),
            (MAX_REPLY_HEADERS, "0"),
            (MAX_REPLY_HEADERS, "10001"),
            (MAX_REPLY_HEADER_BYTES, "0"),
            (ACTOR_MAX_PAYLOAD, "0"),
        ] {
            let err = ListenerConfig::from_bind(&bind(&[(key, value)])).unwrap_err();
            let ProviderError::Config {
                actor,
                key: bad_key,
                reason,
                ..
            } = &err
            else {
                panic!("{key}={value}: expected a Config error, got {err:?}");
            };
            assert_eq!(actor, "MACTOR");
            assert_eq!(bad_key, key);
            assert!(reason.contains(value), "{reason}");
        }
    }
}
