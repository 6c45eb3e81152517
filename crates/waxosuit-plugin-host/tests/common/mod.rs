//! Helpers shared by the plugin tests: keys that sign archives and actors,
//! and the payload encoding.
#![allow(dead_code)]

use serde::Serialize;
use waxosuit_claims::{Actor, Claims, KeyKind, KeyPair, Verifier, embed_claims};
use waxosuit_host::{Host, HostBuilder};
use waxosuit_par::{HOST_TARGET, ProviderArchive};

pub(crate) const INVENTORY: &str = "acme:inventory";

pub(crate) struct Keys {
    pub(crate) account: KeyPair,
    pub(crate) service: KeyPair,
}

impl Keys {
    pub(crate) fn new() -> Keys {
        Keys {
            account: KeyPair::generate(KeyKind::Account),
            service: KeyPair::generate(KeyKind::Service),
        }
    }

    /// A verifier trusting exactly this test's account: it signs both the
    /// archives and the actors.
    pub(crate) fn verifier(&self) -> Verifier {
        Verifier::new()
            .trust_issuer(&self.account.public_key())
            .unwrap()
    }

    /// A host whose verifier trusts this test's account.
    pub(crate) fn host(&self) -> Host {
        HostBuilder::new()
            .verifier(self.verifier())
            .build()
            .unwrap()
    }

    /// The wapc-echo guest signed as `name` with these capabilities.
    pub(crate) fn actor(&self, name: &str, caps: &[&str]) -> Vec<u8> {
        let module = KeyPair::generate(KeyKind::Module);
        let claims = Claims::<Actor>::builder()
            .issuer(self.account.public_key())
            .subject(module.public_key())
            .metadata(Actor {
                caps: Some(caps.iter().map(|c| c.to_string()).collect()),
                ..Actor::named(name)
            })
            .build();
        embed_claims(waxosuit_test_fixtures::wapc_echo(), &claims, &self.account).unwrap()
    }

    /// A signed archive holding `library` for this host's target.
    pub(crate) fn archive(&self, capid: &str, library: &str) -> ProviderArchive {
        let bytes = std::fs::read(library).unwrap();
        let mut par = ProviderArchive::create(capid, "Acme", "Test plugin").unwrap();
        par.set_version("1.0.0");
        par.insert(HOST_TARGET, bytes).unwrap();
        par.sign(&self.account, &self.service.public_key()).unwrap();
        par
    }
}

pub(crate) fn msgpack<T: Serialize>(v: &T) -> Vec<u8> {
    waxosuit_codec::serialize(v).unwrap()
}
