//! Pulls over the OCI Distribution API with every read bounded.
//!
//! A registry (or, over plain HTTP, anything on the path) is a hostile
//! peer here. `oci-client` reads manifests, error bodies and token answers
//! whole before anything can look at their size, follows redirects from
//! HTTPS to plain HTTP, fetches whatever token service a challenge names,
//! and panics on a token that is not a valid header value. Pulls therefore
//! go through this small client instead (pushes stay on `oci-client`,
//! towards a registry the user chose to write to):
//!
//! * every body is read against a limit, checked against `Content-Length`
//!   first and counted as it arrives: manifests ([`MAX_MANIFEST_BYTES`]),
//!   error answers ([`MAX_ERROR_BYTES`]), token answers
//!   ([`MAX_TOKEN_ANSWER_BYTES`]); layers are streamed by the caller;
//! * a `Bearer` challenge is acted on only if its token service is HTTPS,
//!   or plain HTTP on a host named insecure, checked on the very answer the
//!   token is then fetched for (no second request that could be answered
//!   differently); Basic credentials go to that service, or to the
//!   registry on a `Basic` challenge, and nowhere else;
//! * a token is used only if it is a valid header value and at most
//!   [`MAX_TOKEN_BYTES`];
//! * redirects: at most ten, never from HTTPS to plain HTTP unless the
//!   target is named insecure (reqwest drops `Authorization` when the host
//!   changes);
//! * what a registry says in an error reaches the user cut and without
//!   control characters ([`shown`]).
//!
//! [`MAX_MANIFEST_BYTES`]: crate::client::MAX_MANIFEST_BYTES

use std::collections::HashMap;
use std::time::{Duration, Instant};

use oci_client::errors::{OciDistributionError, OciEnvelope};
use oci_client::secrets::RegistryAuth;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode, Url};

use crate::client::RegistryOptions;
use crate::error::{RegistryError, classify};
use crate::reference::{ArtifactRef, shown};

/// The most of an error answer read, for the registry's error envelope.
pub const MAX_ERROR_BYTES: u64 = 16 * 1024;
/// The most of a token service's answer read.
pub const MAX_TOKEN_ANSWER_BYTES: u64 = 64 * 1024;
/// The longest token used.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// How long a token is kept when its service does not say (the
/// specification's default).
const DEFAULT_TOKEN_SECONDS: u64 = 60;

/// What is wrong with a challenge or a token service, before the
/// `RegistryError` it becomes.
enum Refusal {
    Insecure(String),
    Unusable(String),
}

/// The pull client: one HTTP client (its connection pool) and the tokens
/// fetched, per registry and repository.
pub(crate) struct Fetcher {
    http: reqwest::Client,
    insecure: Vec<String>,
    tokens: parking_lot::Mutex<HashMap<(String, String), (HeaderValue, Instant)>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

/// Where a request goes and on whose behalf: for errors and for the
/// token's scope.
pub(crate) struct Target<'a> {
    pub(crate) reference: &'a ArtifactRef,
    pub(crate) auth: &'a RegistryAuth,
    /// Where the credentials came from, for errors.
    pub(crate) from: Option<&'a str>,
    pub(crate) action: &'static str,
}

impl Target<'_> {
    fn registry(&self) -> &str {
        self.reference.oci().resolve_registry()
    }

    fn fail(&self, insecure: bool, err: OciDistributionError) -> RegistryError {
        classify(
            &self.reference.to_string(),
            self.reference.registry(),
            self.action,
            insecure,
            self.from,
            err,
        )
    }

    fn unauthorized(&self, answer: String) -> RegistryError {
        RegistryError::Unauthorized {
            reference: self.reference.to_string(),
            registry: self.reference.registry().to_string(),
            answer,
            hint: crate::error::auth_hint(self.reference.registry(), self.from),
        }
    }
}

impl Fetcher {
    pub(crate) fn new(options: &RegistryOptions) -> Result<Fetcher, reqwest::Error> {
        let insecure = options.insecure.clone();
        let allowed = insecure.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                return attempt.error("more than 10 redirects");
            }
            let downgrade = attempt
                .previous()
                .last()
                .is_some_and(|p| p.scheme() == "https")
                && attempt.url().scheme() != "https";
            if downgrade && !named_insecure(&allowed, attempt.url()) {
                return attempt.error(
                    "the registry redirected from HTTPS to plain HTTP; not followed (name that \
                     host with --insecure-registry if this is a development setup)",
                );
            }
            attempt.follow()
        });
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .user_agent(concat!("waxosuit/", env!("CARGO_PKG_VERSION")))
            .redirect(redirects)
            .build()?;
        Ok(Fetcher {
            http,
            insecure,
            tokens: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    fn is_insecure(&self, registry: &str) -> bool {
        self.insecure.iter().any(|r| r == registry)
    }

    /// `GET /v2/{repository}/{path}` on the reference's registry, through
    /// its challenge if it answers with one; the answer of a 2xx status,
    /// its body unread.
    pub(crate) async fn get(
        &self,
        target: &Target<'_>,
        path: &str,
        accept: &[&str],
    ) -> Result<Response, RegistryError> {
        let registry = target.registry().to_string();
        let insecure = self.is_insecure(target.reference.registry());
        let scheme = if insecure { "http" } else { "https" };
        let url = format!(
            "{scheme}://{registry}/v2/{}/{path}",
            target.reference.oci().repository()
        );
        let key = (registry, target.reference.oci().repository().to_string());
        let mut authorization = match target.auth {
            RegistryAuth::Bearer(token) => Some(bearer(token).ok_or_else(|| {
                target.unauthorized("the configured token is not a valid header value".into())
            })?),
            _ => self.cached_token(&key),
        };
        let mut challenged = false;
        loop {
            let mut request = self.http.get(&url);
            if !accept.is_empty() {
                request = request.header(ACCEPT, accept.join(", "));
            }
            if let Some(value) = &authorization {
                request = request.header(AUTHORIZATION, value.clone());
            }
            let answer = request
                .send()
                .await
                .map_err(|e| target.fail(insecure, e.without_url().into()))?;
            if answer.status().is_success() {
                return Ok(answer);
            }
            if answer.status() != StatusCode::UNAUTHORIZED
                || challenged
                || matches!(target.auth, RegistryAuth::Bearer(_))
            {
                return Err(self.refused(target, insecure, answer).await);
            }
            challenged = true;
            authorization = Some(self.answer_challenge(target, &answer, &key).await?);
        }
    }

    fn cached_token(&self, key: &(String, String)) -> Option<HeaderValue> {
        let mut tokens = self.tokens.lock();
        match tokens.get(key) {
            Some((value, until)) if Instant::now() < *until => Some(value.clone()),
            Some(_) => {
                tokens.remove(key);
                None
            }
            None => None,
        }
    }

    /// The `Authorization` a 401 asks for: Basic credentials on a `Basic`
    /// challenge, or a token from the `Bearer` challenge's service.
    async fn answer_challenge(
        &self,
        target: &Target<'_>,
        answer: &Response,
        key: &(String, String),
    ) -> Result<HeaderValue, RegistryError> {
        let challenges =
            read_challenges(answer).map_err(|challenge| RegistryError::InsecureRealm {
                reference: target.reference.to_string(),
                realm: format!("(an unreadable challenge: {})", shown(&challenge)),
            })?;
        if let Some(bearer) = challenges.bearer {
            let realm = self
                .check_realm(&bearer.realm)
                .map_err(|refusal| match refusal {
                    Refusal::Insecure(realm) => RegistryError::InsecureRealm {
                        reference: target.reference.to_string(),
                        realm,
                    },
                    Refusal::Unusable(why) => target.unauthorized(why),
                })?;
            let scope = bearer
                .scope
                .unwrap_or_else(|| format!("repository:{}:pull", key.1));
            return self
                .fetch_token(target, realm, bearer.service, scope, key)
                .await;
        }
        match (challenges.basic, target.auth) {
            (true, RegistryAuth::Basic(user, password)) => {
                let mut value = HeaderValue::from_str(&format!(
                    "Basic {}",
                    data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes())
                ))
                .map_err(|_| target.unauthorized("the user or password is not usable".into()))?;
                value.set_sensitive(true);
                Ok(value)
            }
            _ => Err(target.unauthorized("401 Unauthorized".into())),
        }
    }

    /// The realm as a URL the token may be fetched from: HTTPS, or plain
    /// HTTP on a host named insecure.
    fn check_realm(&self, realm: &str) -> Result<Url, Refusal> {
        let url = Url::parse(realm.trim()).map_err(|_| Refusal::Insecure(shown(realm)))?;
        match url.scheme() {
            "https" => Ok(url),
            "http" if named_insecure(&self.insecure, &url) => Ok(url),
            _ => Err(Refusal::Insecure(shown(realm))),
        }
        .and_then(|url| {
            if url.host_str().is_none_or(str::is_empty) {
                Err(Refusal::Unusable(format!(
                    "the token service {} names no host",
                    shown(realm)
                )))
            } else {
                Ok(url)
            }
        })
    }

    async fn fetch_token(
        &self,
        target: &Target<'_>,
        mut realm: Url,
        service: Option<String>,
        scope: String,
        key: &(String, String),
    ) -> Result<HeaderValue, RegistryError> {
        {
            let mut query = realm.query_pairs_mut();
            if let Some(service) = &service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", &scope);
        }
        let insecure = self.is_insecure(target.reference.registry());
        let mut request = self.http.get(realm);
        if let RegistryAuth::Basic(user, password) = target.auth {
            request = request.basic_auth(user, Some(password));
        }
        let answer = request
            .send()
            .await
            .map_err(|e| target.fail(insecure, e.without_url().into()))?;
        let status = answer.status();
        let body = read_bounded(answer, MAX_TOKEN_ANSWER_BYTES).await;
        if !status.is_success() {
            let said = body
                .ok()
                .map(|b| shown(String::from_utf8_lossy(&b).trim()))
                .unwrap_or_default();
            return Err(target.unauthorized(format!("the token service answered {status} {said}")));
        }
        let body = body.map_err(|e| match e {
            Bounded::TooLarge(size) => target.unauthorized(format!(
                "the token service's answer is over {MAX_TOKEN_ANSWER_BYTES} bytes ({size})"
            )),
            Bounded::Transport(e) => target.fail(insecure, e.without_url().into()),
        })?;
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        // The parser's message quotes the answer: cut and cleaned.
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            target.unauthorized(format!(
                "the token service's answer is not a token ({})",
                shown(&e.to_string())
            ))
        })?;
        let token = answer
            .token
            .filter(|t| !t.is_empty())
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| target.unauthorized("the token service answered no token".into()))?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(target.unauthorized(format!(
                "the token service answered a token of {} bytes, over {MAX_TOKEN_BYTES}",
                token.len()
            )));
        }
        let value = bearer(&token).ok_or_else(|| {
            target.unauthorized(
                "the token service answered a token that is not a valid header value".into(),
            )
        })?;
        let seconds = answer
            .expires_in
            .unwrap_or(DEFAULT_TOKEN_SECONDS)
            .clamp(1, 3600);
        // Kept a little less than it lives, so it is not sent as it expires.
        let until = Instant::now() + Duration::from_secs(seconds).mul_f32(0.9);
        self.tokens
            .lock()
            .insert(key.clone(), (value.clone(), until));
        Ok(value)
    }

    /// A non-2xx answer as the error a user acts on: its body read up to
    /// [`MAX_ERROR_BYTES`], the registry's error envelope if it is one.
    async fn refused(
        &self,
        target: &Target<'_>,
        insecure: bool,
        answer: Response,
    ) -> RegistryError {
        let code = answer.status().as_u16();
        // Without its query: a redirect to a CDN may carry a signature.
        let mut url = answer.url().clone();
        url.set_query(None);
        url.set_fragment(None);
        let url = shown(url.as_str());
        let body = read_bounded(answer, MAX_ERROR_BYTES)
            .await
            .unwrap_or_default();
        let err = match serde_json::from_slice::<OciEnvelope>(&body) {
            Ok(mut envelope) if !envelope.errors.is_empty() => {
                envelope.errors.truncate(4);
                for e in &mut envelope.errors {
                    e.message = shown(&e.message);
                    e.detail = serde_json::Value::Null;
                }
                if code == 401 || code == 403 {
                    // Codes the classification reads as refusals, whatever
                    // the envelope says.
                    OciDistributionError::ServerError {
                        code,
                        url,
                        message: envelope
                            .errors
                            .iter()
                            .map(|e| e.message.clone())
                            .collect::<Vec<_>>()
                            .join("; "),
                    }
                } else {
                    OciDistributionError::RegistryError { envelope, url }
                }
            }
            _ => OciDistributionError::ServerError {
                code,
                url,
                message: shown(String::from_utf8_lossy(&body).trim()),
            },
        };
        target.fail(insecure, err)
    }
}

/// `Bearer {token}` as a header value, if it is one.
fn bearer(token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Whether `url`'s host (with its port, when one is written) is named
/// insecure.
fn named_insecure(insecure: &[String], url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    insecure.iter().any(|i| i.eq_ignore_ascii_case(&authority))
}

struct BearerChallenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

struct Challenges {
    bearer: Option<BearerChallenge>,
    basic: bool,
}

/// Every challenge of every `WWW-Authenticate` header: the last `Bearer`
/// one (its last `realm`), and whether one is `Basic`; `Err` with the
/// header's text when one does not parse.
fn read_challenges(answer: &Response) -> Result<Challenges, String> {
    let mut found = Challenges {
        bearer: None,
        basic: false,
    };
    for value in answer.headers().get_all(WWW_AUTHENTICATE) {
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if text.trim().is_empty() {
            continue;
        }
        for challenge in http_auth::parser::ChallengeParser::new(&text) {
            let challenge = challenge.map_err(|_| text.clone())?;
            if challenge.scheme.eq_ignore_ascii_case("basic") {
                found.basic = true;
                continue;
            }
            if !challenge.scheme.eq_ignore_ascii_case("bearer") {
                continue;
            }
            let param = |name: &str| {
                challenge
                    .params
                    .iter()
                    .filter(|(key, _)| key.eq_ignore_ascii_case(name))
                    .map(|(_, value)| value.to_unescaped())
                    .next_back()
            };
            let Some(realm) = param("realm") else {
                return Err(text.clone());
            };
            found.bearer = Some(BearerChallenge {
                realm,
                service: param("service"),
                scope: param("scope"),
            });
        }
    }
    Ok(found)
}

/// Why a bounded read stopped.
pub(crate) enum Bounded {
    /// Announced or counted over the limit (the size seen so far).
    TooLarge(u64),
    /// The connection failed.
    Transport(reqwest::Error),
}

/// The body of `answer`, refused as soon as it announces or sends more
/// than `limit` bytes.
pub(crate) async fn read_bounded(mut answer: Response, limit: u64) -> Result<Vec<u8>, Bounded> {
    if let Some(length) = answer.content_length()
        && length > limit
    {
        return Err(Bounded::TooLarge(length));
    }
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(Bounded::Transport)? {
        let size = (body.len() + chunk.len()) as u64;
        if size > limit {
            return Err(Bounded::TooLarge(size));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
