//! One call's exchange with Redis, and how its failures reach the actor,
//! the same for every Redis-backed capability.
//!
//! Each exchange is one OpenTelemetry client span (`otel.name` the Redis
//! command, `db.system.name` = `redis`), the child of whatever span the call
//! runs in, so a trace shows what each actor call cost in Redis, retry and
//! reconnection included.

use std::future::Future;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, RedisError};
use tracing::Instrument;
use tracing::field::{Empty, display};
use waxosuit_provider::ProviderError;

use crate::{Link, connection_is_dead};

/// Whether a command may be sent again after its connection dropped with
/// the command in flight (Redis may or may not have applied it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Repeating it gives the same state and the same reply.
    Safe,
    /// Repeating it could apply it twice or change its reply; `advice`
    /// tells the actor how to find out ("Check the value before repeating
    /// the call").
    Unsafe {
        /// What to do before trying again.
        advice: &'static str,
    },
}

/// One operation of a call: what errors and spans call it, and whether it
/// may be repeated.
#[derive(Debug, Clone, Copy)]
pub struct Op<'a> {
    /// The operation as the contract names it (`Get`, `WriteEvent`), in
    /// error messages.
    pub what: &'a str,
    /// The Redis command sent (`GET`, `EVALSHA`), the span's name.
    pub command: &'a str,
    /// Whether it may be sent again after its connection dropped.
    pub repeat: Repeat,
}

impl<'a> Op<'a> {
    /// `what` sent as `cmd`, whose first word names the command.
    pub fn of(what: &'a str, cmd: &'a redis::Cmd, repeat: Repeat) -> Self {
        let command = match cmd.args_iter().next() {
            Some(redis::Arg::Simple(name)) => std::str::from_utf8(name).unwrap_or("?"),
            _ => "?",
        };
        Op {
            what,
            command,
            repeat,
        }
    }
}

/// Which capability and server a failure is reported for.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// The capability id, in every error.
    pub capid: &'static str,
    /// The server's URL without credentials.
    pub safe_url: &'a str,
}

impl Report<'_> {
    /// [`ProviderError::Unavailable`] for this server.
    pub fn unavailable(&self, reason: &str) -> ProviderError {
        ProviderError::Unavailable {
            capid: self.capid.to_string(),
            reason: format!("Redis at {}: {reason}", self.safe_url),
        }
    }

    /// A failed connection attempt made for the current call (never an
    /// earlier one's): nothing was sent.
    pub fn connect_failed(&self, error: &RedisError) -> ProviderError {
        let reason = match error.kind() {
            // A wrong password or database is the configuration's fault.
            ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig => {
                format!("cannot connect: {error}; fix the binding's `URL` (credentials, database)")
            }
            _ => format!(
                "cannot connect: {error}; nothing was sent. Check that Redis is running and \
                 reachable there: calls succeed again as soon as it accepts connections"
            ),
        };
        self.unavailable(&reason)
    }

    /// Sorts a Redis failure of operation `what` into the server refusing
    /// the request (the actor's problem: [`ProviderError::Backend`] with
    /// Redis' `CODE message`) and the server not answering
    /// ([`ProviderError::Unavailable`]).
    pub fn failed(&self, what: &str, error: &RedisError) -> ProviderError {
        match error.kind() {
            ErrorKind::Server(_) | ErrorKind::Extension => {
                let message = match (error.code(), error.detail()) {
                    (Some(code), Some(detail)) => format!("{code} {detail}"),
                    (Some(code), None) => code.to_string(),
                    _ => error.to_string(),
                };
                ProviderError::backend(self.capid, message)
            }
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => ProviderError::Internal {
                capid: self.capid.to_string(),
                message: format!(
                    "unexpected reply from Redis at {} to `{what}`: {error}",
                    self.safe_url
                ),
            },
            _ => self.unavailable(&error.to_string()),
        }
    }
}

impl Link {
    /// Runs one exchange for `op` within `bound`: on the open connection,
    /// or on one made now. `exchange` may run twice: when the connection
    /// dropped with the command in flight, a [`Repeat::Safe`] operation is
    /// sent again on a new connection (the server probably restarted since
    /// the old one was last used); a [`Repeat::Unsafe`] one fails saying so.
    /// A connection found dead is forgotten either way. The whole of it is
    /// one client span, marked as an error when the call fails.
    pub async fn exchange<T, F, Fut>(
        &self,
        report: &Report<'_>,
        op: Op<'_>,
        bound: Duration,
        exchange: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let span = tracing::info_span!(
            "redis",
            otel.name = op.command,
            otel.kind = "client",
            db.system.name = "redis",
            db.operation.name = op.command,
            server.address = self.server.address.as_deref(),
            server.port = self.server.port.map(i64::from),
            otel.status_code = Empty,
            otel.status_description = Empty,
        );
        let attempt = self.attempt(report, op, exchange);
        let result = match tokio::time::timeout(bound, attempt.instrument(span.clone())).await {
            Ok(result) => result,
            Err(_) => Err(report.unavailable(&format!("no reply within {bound:?}"))),
        };
        if let Err(error) = &result {
            span.record("otel.status_code", "error");
            span.record("otel.status_description", display(error));
        }
        result
    }

    /// [`exchange`](Self::exchange) without the bound and the span.
    async fn attempt<T, F, Fut>(
        &self,
        report: &Report<'_>,
        op: Op<'_>,
        mut exchange: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let what = op.what;
        let first = self.get().await.map_err(|e| report.connect_failed(&e))?;
        let error = match exchange(first.conn.clone()).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if connection_is_dead(&error) {
            // The next call must not try this connection again.
            self.forget(&first);
        }
        if !error.is_connection_dropped() || first.fresh {
            // Not a lost connection, or a connection made for this very
            // call that died at once: no second try.
            return Err(report.failed(what, &error));
        }
        if let Repeat::Unsafe { advice } = op.repeat {
            return Err(report.unavailable(&format!(
                "the connection dropped while `{what}` was in flight ({error}); Redis may or may \
                 not have applied it, so it was not sent again. {advice}; the next call \
                 reconnects"
            )));
        }
        let second = self.get().await.map_err(|e| report.connect_failed(&e))?;
        let result = exchange(second.conn.clone()).await;
        if let Err(error) = &result
            && connection_is_dead(error)
        {
            self.forget(&second);
        }
        result.map_err(|e| report.failed(what, &e))
    }
}
