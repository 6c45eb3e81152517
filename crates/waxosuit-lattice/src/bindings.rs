//! Lattice-wide bindings: replication, reconciliation, and the values.
//!
//! A binding change (`{prefix}.bindings`) is signed by the host that made
//! the binding (its *owner*, for a put) or by a trusted host or admin (for
//! a removal), and carries the values redacted ([`crate::redact`]). Every
//! host keeps the table; the host running the actor records the binding,
//! and every host running the provider binds it. A provider needs the real
//! values: its host asks the owner (`{prefix}.values.{owner}`, signed), and
//! the owner answers, signed, with the values encrypted to a one-time
//! X25519 key the request carried (XChaCha20-Poly1305 under a BLAKE3-derived
//! key). So the values reach only trusted hosts that ask for them, never
//! the bus in the clear.

use std::collections::BTreeMap;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use data_encoding::BASE64URL_NOPAD;
use futures_util::StreamExt;
use waxosuit_claims::KeyKind;
use waxosuit_host::{ActorKey, RouteKey};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::LatticeError;
use crate::auth::{Reason, Refusal, Signers, shorten};
use crate::metrics::Plane;
use crate::node::{BindingRecord, Inner};
use crate::protocol::{BindingChange, ValuesRequest, ValuesResponse};
use crate::request::{Answerers, Gather};

/// Domain separation for the key that seals binding values.
const VALUES_CONTEXT: &str = "waxosuit lattice 2026-12 binding values v1";

fn values_key(shared: &[u8; 32], requester: &str, owner: &str, request: &str) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(VALUES_CONTEXT);
    for part in [
        &shared[..],
        requester.as_bytes(),
        owner.as_bytes(),
        request.as_bytes(),
    ] {
        hasher.update(&(part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

fn associated(req: &ValuesRequest) -> Vec<u8> {
    serde_json::to_vec(&(&req.actor, &req.capid, &req.binding, &req.rev)).unwrap_or_default()
}

fn curve_key(text: &str) -> Option<PublicKey> {
    let bytes: [u8; 32] = BASE64URL_NOPAD
        .decode(text.as_bytes())
        .ok()?
        .try_into()
        .ok()?;
    Some(PublicKey::from(bytes))
}

/// Encrypts `values` for the requester of `req` (request id `request`).
fn seal(
    req: &ValuesRequest,
    request: &str,
    requester: &str,
    owner: &str,
    values: &BTreeMap<String, String>,
) -> Result<ValuesResponse, String> {
    let theirs = curve_key(&req.xkey).ok_or("the request carries no valid curve key")?;
    let secret = StaticSecret::from(rand::random::<[u8; 32]>());
    let shared = secret.diffie_hellman(&theirs);
    if !shared.was_contributory() {
        return Err("the request's curve key is a low-order point".to_string());
    }
    let key = values_key(shared.as_bytes(), requester, owner, request);
    let nonce: [u8; 24] = rand::random();
    let plaintext = serde_json::to_vec(values).map_err(|e| e.to_string())?;
    let sealed = XChaCha20Poly1305::new(&key.into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: &associated(req),
            },
        )
        .map_err(|_| "encryption failed".to_string())?;
    Ok(ValuesResponse {
        ok: true,
        message: String::new(),
        xkey: BASE64URL_NOPAD.encode(PublicKey::from(&secret).as_bytes()),
        nonce: BASE64URL_NOPAD.encode(&nonce),
        sealed: BASE64URL_NOPAD.encode(&sealed),
    })
}

/// Decrypts what [`seal`] made, with the requester's one-time secret.
fn open(
    resp: &ValuesResponse,
    req: &ValuesRequest,
    request: &str,
    requester: &str,
    owner: &str,
    secret: &StaticSecret,
) -> Result<BTreeMap<String, String>, String> {
    let theirs = curve_key(&resp.xkey).ok_or("the answer carries no valid curve key")?;
    let shared = secret.diffie_hellman(&theirs);
    if !shared.was_contributory() {
        return Err("the answer's curve key is a low-order point".to_string());
    }
    let key = values_key(shared.as_bytes(), requester, owner, request);
    let nonce: [u8; 24] = BASE64URL_NOPAD
        .decode(resp.nonce.as_bytes())
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or("the answer's nonce is malformed")?;
    let sealed = BASE64URL_NOPAD
        .decode(resp.sealed.as_bytes())
        .map_err(|_| "the answer's values are not base64url")?;
    let plaintext = XChaCha20Poly1305::new(&key.into())
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &sealed,
                aad: &associated(req),
            },
        )
        .map_err(|_| "the answer's values do not decrypt (tampered, or not for us)")?;
    serde_json::from_slice(&plaintext).map_err(|e| format!("the values are not a map: {e}"))
}

impl Inner {
    /// Binding changes from trusted hosts and admins.
    pub(crate) async fn follow_bindings(
        self: Arc<Self>,
    ) -> Result<impl std::future::Future<Output = ()> + Send + 'static, LatticeError> {
        let mut sub = self.subscribe(self.bus.subjects.bindings()).await?;
        Ok(async move {
            while let Some(msg) = sub.next().await {
                let Some(signed) = self.verify(Plane::Binding, &msg, Signers::HostsOrAdmins, None)
                else {
                    continue;
                };
                if signed.signer == self.keys.host_id {
                    // Applied already, before it was published.
                    continue;
                }
                let change = match serde_json::from_slice::<BindingChange>(&msg.payload) {
                    Ok(change) => change,
                    Err(e) => {
                        self.metrics.refused(
                            Plane::Binding,
                            &Refusal::new(Reason::Malformed, e.to_string()).by(&signed.signer),
                        );
                        continue;
                    }
                };
                if let BindingChange::Put(entry) = &change
                    && entry.owner != signed.signer
                {
                    // Only the host that holds the values may announce them:
                    // anyone else could point providers at values of its own.
                    self.metrics.refused(
                        Plane::Binding,
                        &Refusal::new(
                            Reason::Mismatch,
                            format!(
                                "a binding owned by {} announced by {}",
                                shorten(&entry.owner),
                                shorten(&signed.signer)
                            ),
                        )
                        .by(&signed.signer),
                    );
                    continue;
                }
                if let BindingChange::Put(entry) = &change
                    && !matches!(KeyKind::of_public_key(&entry.owner), Ok(KeyKind::Server))
                {
                    continue;
                }
                self.apply(change).await;
            }
        })
    }

    pub(crate) async fn apply(self: &Arc<Self>, change: BindingChange) {
        match change {
            BindingChange::Put(entry) => {
                let route = RouteKey::new(entry.capid, entry.binding);
                let record = BindingRecord {
                    shown: entry.values,
                    redacted: entry.redacted,
                    owner: entry.owner,
                    rev: entry.rev,
                };
                let old = self
                    .state
                    .lock()
                    .bindings
                    .insert((entry.actor.clone(), route.clone()), record.clone());
                if old.as_ref().is_some_and(|old| old.rev != record.rev) {
                    // New values: re-bind so the provider sees them.
                    self.release(&entry.actor, &route).await;
                }
                self.reconcile_now().await;
            }
            BindingChange::Remove {
                actor,
                capid,
                binding,
            } => {
                let route = RouteKey::new(capid, binding);
                {
                    let mut state = self.state.lock();
                    state.bindings.remove(&(actor.clone(), route.clone()));
                    state.secrets.remove(&(actor.clone(), route.clone()));
                }
                self.release(&actor, &route).await;
            }
        }
    }

    async fn release(&self, actor: &str, route: &RouteKey) {
        let _guard = self.reconcile.lock().await;
        // Text from the wire until checked; what is not a key was never bound.
        let Ok(key) = ActorKey::new(actor) else {
            return;
        };
        let result = if self.remote.host().has_actor(&key) {
            if self.remote.host().is_bound(&key, route) {
                self.remote
                    .host()
                    .remove_binding(actor, &route.capid, &route.binding)
                    .await
            } else {
                Ok(())
            }
        } else {
            self.remote.unbind_remote_actor(&key, route).await
        };
        if let Err(e) = result {
            tracing::warn!(%actor, capability = %route.capid, error = %e, "could not release a binding");
        }
    }

    /// Applies every lattice binding this host has a part in: records it for
    /// a local actor, binds a remote actor to a local provider (with values
    /// fetched from the binding's owner). Also stops serving targets that
    /// no longer run here.
    pub(crate) async fn reconcile_now(self: &Arc<Self>) {
        let _guard = self.reconcile.lock().await;
        self.drop_stale_subscriptions();
        let (bindings, claims) = {
            let state = self.state.lock();
            (state.bindings.clone(), state.claims.clone())
        };
        for ((actor, route), record) in bindings {
            let Ok(key) = ActorKey::new(actor.as_str()) else {
                continue;
            };
            if self.remote.host().is_bound(&key, &route) {
                continue;
            }
            let local_provider = self.remote.host().has_provider(&route);
            let result = if self.remote.host().has_actor(&key) {
                let values = if local_provider {
                    match self.values_for(&actor, &route, &record).await {
                        Some(values) => values,
                        None => continue,
                    }
                } else {
                    // Recorded only: the provider's host binds it, with the
                    // real values it asks the owner for.
                    record.shown.clone()
                };
                self.remote
                    .host()
                    .set_binding(&actor, &route.capid, &route.binding, values)
                    .await
            } else if local_provider {
                let Some(jwt) = claims.get(&actor) else {
                    tracing::debug!(%actor, "binding waits for the actor to appear in the lattice");
                    continue;
                };
                let verified = match self.remote.verify_remote_actor(jwt) {
                    Ok(verified) => verified,
                    Err(e) => {
                        tracing::warn!(%actor, error = %e, "refusing to bind an actor whose claims do not verify here");
                        continue;
                    }
                };
                let Some(values) = self.values_for(&actor, &route, &record).await else {
                    continue;
                };
                self.remote
                    .bind_remote_actor(&verified, &route, values)
                    .await
            } else {
                continue;
            };
            if let Err(e) = result {
                tracing::warn!(%actor, capability = %route.capid, binding = %route.binding, error = %e, "could not establish a lattice binding");
            }
        }
    }

    /// Subscriptions for actors and providers that no longer run here.
    fn drop_stale_subscriptions(&self) {
        for served in self.serving.targets() {
            let gone = match &served {
                crate::server::Served::Actor(key) => {
                    !crate::node::runs_here(self.remote.host(), key)
                }
                crate::server::Served::Provider(route) => !self.remote.host().has_provider(route),
            };
            if gone {
                tracing::debug!(target = ?served, "dropping the subscription of a target that left");
                self.unserve(&served);
            }
        }
    }

    /// The real values of a binding: held here (owned, or fetched for this
    /// revision before), or fetched from the owner now.
    async fn values_for(
        &self,
        actor: &str,
        route: &RouteKey,
        record: &BindingRecord,
    ) -> Option<BTreeMap<String, String>> {
        let slot = (actor.to_string(), route.clone());
        if let Some((rev, values)) = self.state.lock().secrets.get(&slot)
            && *rev == record.rev
        {
            return Some(values.clone());
        }
        if record.owner == self.keys.host_id {
            tracing::warn!(%actor, capability = %route.capid, "this host owns a binding whose values it no longer holds; make the binding again");
            return None;
        }
        match self.fetch_values(actor, route, record).await {
            Ok(values) => {
                self.state
                    .lock()
                    .secrets
                    .insert(slot, (record.rev.clone(), values.clone()));
                Some(values)
            }
            Err(e) => {
                tracing::warn!(%actor, capability = %route.capid, owner = %record.owner, error = %e, "could not get a binding's values from its owner; will retry on the next change or resync");
                None
            }
        }
    }

    /// Asks `record.owner` for a binding's values, encrypted to a one-time
    /// key; the answer must be signed by the owner and name the request.
    async fn fetch_values(
        &self,
        actor: &str,
        route: &RouteKey,
        record: &BindingRecord,
    ) -> Result<BTreeMap<String, String>, LatticeError> {
        let secret = StaticSecret::from(rand::random::<[u8; 32]>());
        let req = ValuesRequest {
            actor: actor.to_string(),
            capid: route.capid.clone(),
            binding: route.binding.clone(),
            rev: record.rev.clone(),
            xkey: BASE64URL_NOPAD.encode(PublicKey::from(&secret).as_bytes()),
        };
        let body = serde_json::to_vec(&req).map_err(|e| LatticeError::Malformed {
            what: "values request",
            reason: e.to_string(),
        })?;
        let answers = self
            .requester()
            .request_with_id(
                self.bus.subjects.values(&record.owner),
                body,
                Answerers::Only(record.owner.clone()),
                Plane::Binding,
                self.bus.timeout,
                Gather::One,
                || format!("host {} (the owner of the binding's values)", record.owner),
            )
            .await?;
        let (request_id, answers) = answers;
        let answer = answers
            .into_iter()
            .next()
            .ok_or_else(|| LatticeError::Timeout {
                target: format!("host {}", record.owner),
                timeout_ms: self.bus.timeout.as_millis(),
                ignored: None,
            })?;
        let resp: ValuesResponse =
            serde_json::from_slice(&answer.payload).map_err(|e| LatticeError::Malformed {
                what: "values answer",
                reason: e.to_string(),
            })?;
        if !resp.ok {
            return Err(LatticeError::Remote {
                target: format!("host {}", record.owner),
                kind: crate::protocol::ErrorKind::Failed,
                message: resp.message,
            });
        }
        open(
            &resp,
            &req,
            &request_id,
            &self.keys.host_id,
            &record.owner,
            &secret,
        )
        .map_err(|reason| LatticeError::Malformed {
            what: "values answer",
            reason,
        })
    }

    /// Answers trusted hosts' requests for the values of bindings this host
    /// owns, encrypted to the requester.
    pub(crate) async fn answer_values(
        self: Arc<Self>,
    ) -> Result<impl std::future::Future<Output = ()> + Send + 'static, LatticeError> {
        let mut sub = self
            .subscribe(self.bus.subjects.values(&self.keys.host_id))
            .await?;
        Ok(async move {
            while let Some(msg) = sub.next().await {
                let Some(signed) = self.verify(Plane::Binding, &msg, Signers::Hosts, None) else {
                    continue;
                };
                let Ok(req) = serde_json::from_slice::<ValuesRequest>(&msg.payload) else {
                    self.metrics.refused(
                        Plane::Binding,
                        &Refusal::new(Reason::Malformed, "an unreadable values request")
                            .by(&signed.signer),
                    );
                    continue;
                };
                let slot = (req.actor.clone(), RouteKey::new(&req.capid, &req.binding));
                let held = {
                    let state = self.state.lock();
                    let owned = state
                        .bindings
                        .get(&slot)
                        .is_some_and(|r| r.owner == self.keys.host_id && r.rev == req.rev);
                    state
                        .secrets
                        .get(&slot)
                        .filter(|(rev, _)| owned && *rev == req.rev)
                        .map(|(_, values)| values.clone())
                };
                let resp = match held {
                    Some(values) => seal(
                        &req,
                        &signed.id,
                        &signed.signer,
                        &self.keys.host_id,
                        &values,
                    )
                    .unwrap_or_else(|message| ValuesResponse {
                        ok: false,
                        message,
                        xkey: String::new(),
                        nonce: String::new(),
                        sealed: String::new(),
                    }),
                    None => ValuesResponse {
                        ok: false,
                        message: format!(
                            "host {} holds no values for that binding at revision {}",
                            self.keys.host_id,
                            shorten(&req.rev)
                        ),
                        xkey: String::new(),
                        nonce: String::new(),
                        sealed: String::new(),
                    },
                };
                tracing::debug!(requester = %signed.signer, actor = %req.actor, capability = %req.capid, ok = resp.ok, "binding values requested");
                if let Ok(body) = serde_json::to_vec(&resp) {
                    self.answer_signed(&msg, &signed.id, body).await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_sealed_for_one_request_open_only_for_it() {
        let secret = StaticSecret::from([9u8; 32]);
        let req = ValuesRequest {
            actor: "M".into(),
            capid: "wascc:keyvalue".into(),
            binding: "default".into(),
            rev: "r1".into(),
            xkey: BASE64URL_NOPAD.encode(PublicKey::from(&secret).as_bytes()),
        };
        // A password long enough that random base64 cannot contain it by
        // chance ("pw" did, one run in a few dozen).
        let password = "correct-horse-battery-staple";
        let values = BTreeMap::from([("URL".to_string(), format!("redis://:{password}@db"))]);
        let resp = seal(&req, "id-1", "NREQ", "NOWN", &values).unwrap();
        assert!(!resp.sealed.contains(password));
        assert_eq!(
            open(&resp, &req, "id-1", "NREQ", "NOWN", &secret).unwrap(),
            values
        );
        // Another request id, requester, binding or key: nothing opens.
        assert!(open(&resp, &req, "id-2", "NREQ", "NOWN", &secret).is_err());
        assert!(open(&resp, &req, "id-1", "NOTHER", "NOWN", &secret).is_err());
        let mut other = req.clone();
        other.rev = "r2".into();
        assert!(open(&resp, &other, "id-1", "NREQ", "NOWN", &secret).is_err());
        assert!(
            open(
                &resp,
                &req,
                "id-1",
                "NREQ",
                "NOWN",
                &StaticSecret::from([8u8; 32])
            )
            .is_err()
        );
        let mut flipped = resp.clone();
        flipped.sealed.replace_range(
            0..1,
            if flipped.sealed.starts_with('A') {
                "B"
            } else {
                "A"
            },
        );
        assert!(open(&flipped, &req, "id-1", "NREQ", "NOWN", &secret).is_err());
    }
}
