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
    sha256_hex(s.as_bytes())
}

/// The lower-case hex SHA-256 of `bytes`: a component's content address (blobs, artifacts,
/// file runs), and what is kept of a secret.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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

/// Seals `plain` with ChaCha20-Poly1305 under a key derived from the data dir's key
/// (`key`, `keys/token.key`) for `purpose`: hex of nonce ‖ ciphertext. A copy of the database
/// alone reveals nothing.
pub fn seal(key: &[u8], purpose: &str, plain: &str) -> String {
    use chacha20poly1305::aead::{Aead, KeyInit};
    let cipher = chacha20poly1305::ChaCha20Poly1305::new(&subkey(key, purpose).into());
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).expect("the OS random source");
    let sealed = cipher
        .encrypt(&nonce.into(), plain.as_bytes())
        .expect("encrypting in memory");
    hex::encode([&nonce[..], &sealed].concat())
}

/// Opens what [`seal`] sealed; `None` when it was sealed under another key or altered.
pub fn unseal(key: &[u8], purpose: &str, sealed: &str) -> Option<String> {
    use chacha20poly1305::aead::{Aead, KeyInit};
    let bytes = hex::decode(sealed).ok()?;
    if bytes.len() < 12 {
        return None;
    }
    let (nonce, ct) = bytes.split_at(12);
    let cipher = chacha20poly1305::ChaCha20Poly1305::new(&subkey(key, purpose).into());
    let plain = cipher.decrypt(nonce.into(), ct).ok()?;
    String::from_utf8(plain).ok()
}

/// HMAC-SHA256 of `data` under a key derived from the data dir's key for `purpose`: what
/// signs values the host hands out and takes back (user sessions), so only this data dir's
/// key (or a host sharing it) makes or checks them.
pub fn mac(key: &[u8], purpose: &str, data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(&subkey(key, purpose)).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn subkey(key: &[u8], purpose: &str) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(b"cloudfn seal: ");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod seal_tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_purpose() {
        let sealed = seal(b"k1", "upstream", "AppSecret-1");
        assert!(!sealed.contains("AppSecret"));
        assert_ne!(
            sealed,
            seal(b"k1", "upstream", "AppSecret-1"),
            "a fresh nonce each time"
        );
        assert_eq!(
            unseal(b"k1", "upstream", &sealed).as_deref(),
            Some("AppSecret-1")
        );
        assert_eq!(unseal(b"k2", "upstream", &sealed), None);
        assert_eq!(unseal(b"k1", "other", &sealed), None);
        let mut altered = sealed.into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            unseal(b"k1", "upstream", std::str::from_utf8(&altered).unwrap()),
            None
        );
    }
}
