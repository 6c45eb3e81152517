//! Proxy-Wasm HTTP filters: signed modules that run inside an HTTP server's
//! request path instead of as actors. The host only admits them (the same
//! trust and policy as an actor); whoever runs them loads them.

use std::sync::atomic::Ordering;

use waxosuit_claims::{VerifiedActor, proxy_wasm_abi};

use crate::{Host, HostError};

impl Host {
    /// Decides whether `module` may run as a Proxy-Wasm HTTP filter, with
    /// the same checks as [`Host::add_actor`] makes before an actor starts;
    /// `origin` (a path, a URL) appears in error messages and is the
    /// `source` the start policy sees.
    ///
    /// In order:
    /// 1. the claims are verified with the host's verifier (trust, hash,
    ///    validity), refused with [`HostError::Claims`];
    /// 2. they must carry [`waxosuit_claims::PROXY_WASM_FILTER_TAG`]
    ///    (what `waxosuit claims sign` adds to Proxy-Wasm modules), else
    ///    [`HostError::NotAFilter`]: a module signed as an actor is not a
    ///    filter;
    /// 3. the module must export a supported ABI marker (0.2.x, see
    ///    [`waxosuit_claims::proxy_wasm_abi`]), else [`HostError::FilterAbi`];
    /// 4. the [`Authorizer`](crate::Authorizer) must allow the load, else
    ///    [`HostError::LoadDenied`];
    /// 5. the start policy, if the host has one, must allow it, else
    ///    [`HostError::Policy`] (the policy input is an actor start's;
    ///    the tags in `claims` tell a filter apart).
    ///
    /// Admission registers nothing: the filter is not an actor, is not
    /// listed by [`Host::actors`] and gets no events. The caller loads and
    /// runs it, and may keep the returned claims.
    pub async fn admit_filter(
        &self,
        module: &[u8],
        origin: &str,
    ) -> Result<VerifiedActor, HostError> {
        let inner = &self.inner;
        if inner.stopping.load(Ordering::Acquire) {
            return Err(HostError::ShuttingDown);
        }
        let claims_error = |error| HostError::Claims {
            origin: origin.to_string(),
            error: Box::new(error),
        };
        let claims = inner.verifier.verify_actor(module).map_err(claims_error)?;
        let key = claims.public_key().to_string();
        let name = claims.name().to_string();
        if !claims.is_proxy_wasm_filter() {
            return Err(HostError::NotAFilter {
                origin: origin.to_string(),
                filter: key,
                name,
            });
        }
        let abi = proxy_wasm_abi(module).map_err(claims_error)?;
        let Some(abi) = abi.filter(|abi| abi.is_supported()) else {
            return Err(HostError::FilterAbi {
                origin: origin.to_string(),
                filter: key,
                name,
                abi,
            });
        };
        if !inner.authorizer.can_load(&claims) {
            return Err(HostError::LoadDenied { actor: key, name });
        }
        if let Some(gate) = &inner.actors.gate {
            gate.start(&claims, module.len(), origin).await?;
        }
        tracing::info!(filter = %key, %name, abi = %abi, "Proxy-Wasm filter admitted");
        Ok(claims)
    }
}
