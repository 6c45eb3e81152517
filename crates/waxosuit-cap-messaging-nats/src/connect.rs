//! From a binding's values to a live connection: reading `URL`,
//! `SUBSCRIPTION`, `QUEUEGROUP_NAME` and `CREDSFILE`, connecting with the
//! reconnect policy of [`reconnect`](crate::reconnect), and making sure the
//! server knows the subscriptions before the bind returns.
//!
//! Separate because this is where configuration errors and connection
//! failures become the [`ProviderError`]s the host shows at start-up.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectErrorKind, ConnectOptions};
use futures_util::StreamExt;
use waxosuit_cap_messaging::Subscriptions;
use waxosuit_codec::messaging::CAPABILITY_ID;
use waxosuit_provider::{BindRequest, ProviderError, redact_url};

use crate::reconnect::Reconnect;
use crate::reserved::Reserved;
use crate::{
    CLIENT_BUFFER, CONNECTION_NAME, CREDSFILE, DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_MAX_QUEUED_MESSAGES, DEFAULT_URL, MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES, NatsMessaging,
    SUBSCRIPTION, SubjectUse, URL,
};

/// How long a bind waits for the server to confirm its subscriptions.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct BindConfig {
    pub(crate) url: String,
    pub(crate) subscriptions: Subscriptions,
    pub(crate) max_queued_messages: usize,
    pub(crate) max_queued_bytes: usize,
    creds: Option<String>,
}

/// Reads a binding's values. Subscriptions are checked here, before any
/// connection is made, so a refused subject leaves nothing subscribed.
pub(crate) fn parse_config(
    request: &BindRequest,
    reserved: &Reserved,
) -> Result<BindConfig, ProviderError> {
    let subscriptions = Subscriptions::from_binding(request)?;
    for pattern in &subscriptions.patterns {
        reserved
            .check(
                &request.actor,
                &request.binding,
                SubjectUse::Subscribe,
                pattern.as_str(),
            )
            .map_err(|refused| ProviderError::Config {
                capid: CAPABILITY_ID.to_string(),
                actor: request.actor.clone(),
                key: SUBSCRIPTION.to_string(),
                reason: format!("is refused: {refused}"),
            })?;
    }
    let value = |key: &str| {
        request
            .values
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let max_queued_messages = request
        .positive(CAPABILITY_ID, MAX_QUEUED_MESSAGES)?
        .unwrap_or(DEFAULT_MAX_QUEUED_MESSAGES);
    let max_queued_bytes = request
        .positive::<u64>(CAPABILITY_ID, MAX_QUEUED_BYTES)?
        .unwrap_or(DEFAULT_MAX_QUEUED_BYTES);
    Ok(BindConfig {
        url: value(URL).unwrap_or(DEFAULT_URL).to_string(),
        subscriptions,
        max_queued_messages,
        // Past what fits in memory anyway; the budget cuts it further.
        max_queued_bytes: usize::try_from(max_queued_bytes).unwrap_or(usize::MAX),
        creds: value(CREDSFILE).map(str::to_string),
    })
}

impl NatsMessaging {
    pub(crate) async fn connect(
        &self,
        request: &BindRequest,
        config: &BindConfig,
        reconnect: &Arc<Reconnect>,
    ) -> Result<Client, ProviderError> {
        // The URL may carry `user:password@`; nothing shown to actors or
        // written to logs may repeat it.
        let shown = redact_url(&config.url);
        let url = shown.clone();
        let on_event = Arc::clone(reconnect);
        let on_attempt = Arc::clone(reconnect);
        // A server error (a publish the server's permissions refuse, say)
        // is an event per message an actor sends: at most one such line per
        // ten seconds, with how many were not logged.
        let events = Arc::new(waxosuit_provider::Throttle::default());
        let mut options = ConnectOptions::new()
            .name(CONNECTION_NAME)
            .subscription_capacity(CLIENT_BUFFER)
            // Unlimited reconnects: a server restart must not end the binding.
            .max_reconnects(None)
            // Short backoff, cut short by waiting calls (see `reconnect`).
            .reconnect_to_server_callback(move |servers, _info| {
                let reconnect = Arc::clone(&on_attempt);
                async move { reconnect.next_attempt(servers).await }
            })
            .event_callback(move |event| {
                let url = url.clone();
                let reconnect = Arc::clone(&on_event);
                let events = Arc::clone(&events);
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            reconnect.connected();
                            tracing::info!(%url, "NATS connection (re)established");
                        }
                        // What an actor can cause once per message it sends.
                        other @ (async_nats::Event::ServerError(_)
                        | async_nats::Event::ClientError(_)
                        | async_nats::Event::SlowConsumer(_)) => {
                            if let Some(unlogged) = events.should_warn(std::time::Instant::now())
                            {
                                tracing::warn!(%url, event = %other, not_logged_since = unlogged, "NATS connection event");
                            }
                        }
                        // The connection's own changes, rare: each is said.
                        other => tracing::warn!(%url, event = %other, "NATS connection event"),
                    }
                }
            });
        match (
            waxosuit_nats::UrlCredentials::from_url(&config.url),
            &config.creds,
        ) {
            (Some(_), Some(_)) => {
                return Err(ProviderError::Config {
                    capid: CAPABILITY_ID.to_string(),
                    actor: request.actor.clone(),
                    key: CREDSFILE.to_string(),
                    reason: format!(
                        "is set while `URL` ({shown}) carries credentials too; use one of them"
                    ),
                });
            }
            (Some(waxosuit_nats::UrlCredentials::UserPassword(user, password)), None) => {
                options = options.user_and_password(user, password);
            }
            (Some(waxosuit_nats::UrlCredentials::Token(token)), None) => {
                options = options.token(token)
            }
            (None, _) => {}
        }
        if let Some(path) = &config.creds {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| ProviderError::Config {
                    capid: CAPABILITY_ID.to_string(),
                    actor: request.actor.clone(),
                    key: CREDSFILE.to_string(),
                    reason: format!("cannot use the credentials file `{path}`: {e}"),
                })?;
        }
        // The credentials went to the options above: the client keeps the
        // URL and logs it (`Debug`, password included) on failed reconnects.
        options
            .connect(waxosuit_nats::without_credentials(&config.url))
            .await
            .map_err(|e| match e.kind() {
                ConnectErrorKind::ServerParse => ProviderError::Config {
                    capid: CAPABILITY_ID.to_string(),
                    actor: request.actor.clone(),
                    key: URL.to_string(),
                    reason: format!("`{shown}` is not a NATS server URL: {e}"),
                },
                _ => ProviderError::Unavailable {
                    capid: CAPABILITY_ID.to_string(),
                    reason: format!("cannot connect to NATS at {shown}: {e}"),
                },
            })
    }
}

/// Waits until the server has processed everything this connection sent.
/// `Client::flush` only empties the socket buffer, so this echoes a message
/// off the server instead: it processes a connection's commands in order.
pub(crate) async fn round_trip(client: &Client) -> Result<(), String> {
    // The subscription and the publish wait for room in the client's
    // command channel, which a stalled server never drains: the whole round
    // trip is timed, not only the wait for the echo.
    let echo = async {
        let inbox = client.new_inbox();
        let mut echo = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| e.to_string())?;
        client
            .publish(inbox, Vec::new().into())
            .await
            .map_err(|e| e.to_string())?;
        echo.next()
            .await
            .map(drop)
            .ok_or_else(|| "the connection closed".to_string())
    };
    match tokio::time::timeout(ROUND_TRIP_TIMEOUT, echo).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!(
            "the server did not confirm the subscriptions within {ROUND_TRIP_TIMEOUT:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::QUEUEGROUP_NAME;

    fn bind_request(values: &[(&str, &str)]) -> BindRequest {
        BindRequest {
            actor: "MA".into(),
            binding: "default".into(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn reserved_subscriptions_fail_the_binding_config() {
        let reserved = Reserved::new();
        let err = parse_config(&bind_request(&[(SUBSCRIPTION, "fine.one, *.>")]), &reserved)
            .err()
            .unwrap();
        assert!(
            matches!(&err, ProviderError::Config { key, .. } if key == SUBSCRIPTION),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("`SUBSCRIPTION` is refused: permission denied"),
            "{text}"
        );
        assert!(text.contains("`*.>`"), "{text}");
    }

    #[test]
    fn config_defaults_and_trimming() {
        let request = BindRequest {
            actor: "MA".into(),
            binding: "default".into(),
            values: HashMap::from([
                (SUBSCRIPTION.to_string(), " a , b.*, ".to_string()),
                (QUEUEGROUP_NAME.to_string(), "".to_string()),
            ]),
        };
        let config = parse_config(&request, &Reserved::new()).unwrap();
        assert_eq!(config.url, DEFAULT_URL);
        let subjects: Vec<&str> = config
            .subscriptions
            .patterns
            .iter()
            .map(|p| p.as_str())
            .collect();
        assert_eq!(subjects, ["a", "b.*"]);
        assert_eq!(config.subscriptions.queue, None);
        assert_eq!(config.creds, None);
    }
}
