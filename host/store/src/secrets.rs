//! Secrets as every store handles them: random credentials, what is kept of a secret that only
//! needs checking (its SHA-256), constant-time comparison, and access tokens of the form
//! `id ‖ HMAC(token key, id)` (protocol §2) so a store keeps a token's hash and id, never the
//! token.

use crate::model::AppCredentials;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    hex::encode(bytes)
}

/// SHA-256 of a secret, hex; what a store keeps of secrets that only need checking.
pub fn hash_secret(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

pub use cloudfn_protocol::constant_time_eq;

/// Fresh credentials for `appid`: app secret, secretId, secretKey.
pub fn new_credentials(appid: &str) -> AppCredentials {
    AppCredentials {
        appid: appid.to_string(),
        secret: random_hex(16),
        secret_id: format!("AKID{}", random_hex(16)),
        secret_key: random_hex(20),
    }
}

/// The token with id `id` under `key`.
pub fn token_for(key: &[u8], id: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(id.as_bytes());
    format!("{id}{}", hex::encode(mac.finalize().into_bytes()))
}
