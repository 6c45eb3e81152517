//! The binding values this provider understands, parsed once per binding.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use waxosuit_codec::http::SERVER_CAPABILITY_ID;
use waxosuit_provider::{BindRequest, ProviderError};

/// Binding value: the IP address to listen on (default [`DEFAULT_ADDRESS`]).
pub const ADDRESS: &str = "ADDRESS";
/// Binding value: the TCP port to listen on (default [`DEFAULT_PORT`]);
/// `0` asks the operating system for a free port, see
/// [`HttpServerProvider::bound_address`](crate::HttpServerProvider::bound_address).
pub const PORT: &str = "PORT";
/// Binding value: the largest request body accepted, in bytes (default
/// [`DEFAULT_MAX_BODY_BYTES`]); larger requests get `413`.
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
/// It also closes keep-alive connections idle for that long, and guards
/// against clients that trickle headers to hold connections open.
pub const HEADER_READ_TIMEOUT_MS: &str = "HEADER_READ_TIMEOUT_MS";
/// Binding value: the most request headers accepted (hyper's default of 100
/// when absent); more get `431`.
pub const MAX_HEADERS: &str = "MAX_HEADERS";
/// Binding value: the largest request head (request line plus headers)
/// accepted, in bytes (default [`DEFAULT_MAX_HEADER_BYTES`]); larger heads
/// get `431`.
pub const MAX_HEADER_BYTES: &str = "MAX_HEADER_BYTES";

/// waSCC's HTTP server listened on all interfaces; kept for compatibility.
pub const DEFAULT_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// waSCC's default port.
pub const DEFAULT_PORT: u16 = 8080;
/// 16 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// 30 seconds.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// 10 seconds.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// 30 seconds, hyper's own default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// 64 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;

/// hyper refuses (panics on) a read buffer below 8 KiB, and the head must
/// fit in that buffer.
const MIN_HEADER_BYTES: usize = 8192;

/// Everything a listener needs from its binding's values.
#[derive(Debug, Clone)]
pub(crate) struct ListenerConfig {
    pub(crate) addr: SocketAddr,
    pub(crate) max_body_bytes: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) header_read_timeout: Option<Duration>,
    pub(crate) max_headers: Option<usize>,
    pub(crate) max_header_bytes: usize,
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
        let max_body_bytes = parse(
            req,
            MAX_BODY_BYTES,
            DEFAULT_MAX_BODY_BYTES,
            "is not a byte count",
            |_| true,
        )?;
        let request_timeout = parse_millis(req, REQUEST_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT)?;
        let drain_timeout = parse_millis(req, DRAIN_TIMEOUT_MS, DEFAULT_DRAIN_TIMEOUT)?;
        let header_read_timeout = match parse(
            req,
            HEADER_READ_TIMEOUT_MS,
            millis(DEFAULT_HEADER_READ_TIMEOUT),
            "is not a number of milliseconds",
            |_| true,
        )? {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        };
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
        Ok(ListenerConfig {
            addr: SocketAddr::new(ip, port),
            max_body_bytes,
            request_timeout,
            drain_timeout,
            header_read_timeout,
            max_headers,
            max_header_bytes,
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
    fn defaults_match_wascc() {
        let cfg = ListenerConfig::from_bind(&bind(&[])).unwrap();
        assert_eq!(cfg.addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(cfg.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(cfg.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(cfg.max_headers, None);
        assert_eq!(cfg.header_read_timeout, Some(DEFAULT_HEADER_READ_TIMEOUT));
    }

    #[test]
    fn header_read_timeout_zero_turns_it_off() {
        let cfg = ListenerConfig::from_bind(&bind(&[(HEADER_READ_TIMEOUT_MS, "0")])).unwrap();
        assert_eq!(cfg.header_read_timeout, None);
        let cfg = ListenerConfig::from_bind(&bind(&[(HEADER_READ_TIMEOUT_MS, "1500")])).unwrap();
        assert_eq!(cfg.header_read_timeout, Some(Duration::from_millis(1500)));
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
        ]))
        .unwrap();
        assert_eq!(cfg.addr, "[::1]:0".parse().unwrap());
        assert_eq!(cfg.max_body_bytes, 10);
        assert_eq!(cfg.request_timeout, Duration::from_millis(250));
        assert_eq!(cfg.drain_timeout, Duration::from_millis(5));
        assert_eq!(cfg.max_headers, Some(7));
        assert_eq!(cfg.max_header_bytes, 9000);
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
            (MAX_HEADERS, "0"),
            (MAX_HEADER_BYTES, "100"),
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
