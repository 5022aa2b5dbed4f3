//! Webhooks: an app's own URL, told of changes made to it by others — today, a share of an env
//! ending (the seed's "解除环境共享消息通知"). Each event is POSTed as JSON, signed with the
//! app's webhook secret, and retried with backoff until the receiver answers 2xx; delivery runs
//! beside the change, never in its way, and its outcome goes to the audit log.
//!
//! A receiver checks `X-Cloudfn-Signature: sha256=HEX`, the HMAC-SHA256 with its secret of
//! `{X-Cloudfn-Timestamp}.{body}`, and may drop repeats by `X-Cloudfn-Delivery` (the same for
//! every attempt of one event).

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The signature header: `sha256=` and the hex HMAC.
pub const SIGNATURE_HEADER: &str = "x-cloudfn-signature";
/// The Unix seconds the signature covers.
pub const TIMESTAMP_HEADER: &str = "x-cloudfn-timestamp";
/// The event's name (`share.ended`).
pub const EVENT_HEADER: &str = "x-cloudfn-event";
/// The delivery's id, the same for each retry.
pub const DELIVERY_HEADER: &str = "x-cloudfn-delivery";

/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where an app's events go, as the store keeps it (setting `webhook/APPID`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// `https://HOST[:PORT]/PATH` (or `http://`).
    pub url: String,
    /// The HMAC key; shown once, when set.
    pub secret: String,
}

/// The settings key of an app's webhook.
pub fn setting_key(appid: &str) -> String {
    format!("webhook/{appid}")
}

/// The webhook `appid` has set, if any.
pub async fn load(
    store: &dyn cloudfn_store::Store,
    appid: &str,
) -> Result<Option<Webhook>, cloudfn_store::StoreError> {
    let json = store.setting(&setting_key(appid)).await?;
    Ok(json
        .filter(|j| !j.is_empty())
        .and_then(|j| serde_json::from_str(&j).ok()))
}

/// Checks a webhook URL: `https://` (or `http://`) with a host.
pub fn validate_url(url: &str) -> Result<(), String> {
    let parsed: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match parsed.scheme_str() {
        Some("http" | "https") if parsed.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(format!(
            "{url}: a webhook URL must be https://HOST[:PORT]/PATH (or http://)"
        )),
    }
}

/// The signature of `body` sent at `timestamp`: `sha256=HEX`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivers webhook events.
#[derive(Clone)]
pub struct Webhooks {
    client: crate::outbound::Outbound,
    backoff: Vec<Duration>,
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Whether the receiver took it (2xx).
    pub ok: bool,
    /// Attempts made.
    pub attempts: usize,
    /// The last failure, if it failed.
    pub last_error: Option<String>,
}

impl Webhooks {
    /// Retries after each of `backoff` (so `backoff.len() + 1` attempts at most).
    pub fn new(backoff: Vec<Duration>) -> Webhooks {
        Webhooks {
            client: crate::outbound::client(),
            backoff,
        }
    }

    /// POSTs `body` to `hook` until it is taken or the retries run out.
    pub async fn deliver(
        &self,
        hook: &Webhook,
        event: &str,
        delivery: &str,
        body: &[u8],
    ) -> Delivered {
        let mut last_error = None;
        for attempt in 0..=self.backoff.len() {
            if attempt > 0 {
                tokio::time::sleep(self.backoff[attempt - 1]).await;
            }
            match self.attempt(hook, event, delivery, body).await {
                Ok(()) => {
                    return Delivered {
                        ok: true,
                        attempts: attempt + 1,
                        last_error: None,
                    };
                }
                Err(e) => last_error = Some(e),
            }
        }
        Delivered {
            ok: false,
            attempts: self.backoff.len() + 1,
            last_error,
        }
    }

    async fn attempt(
        &self,
        hook: &Webhook,
        event: &str,
        delivery: &str,
        body: &[u8],
    ) -> Result<(), String> {
        let now = cloudfn_store::fsutil::now();
        let req = hyper::Request::post(&hook.url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("cloudfn/", env!("CARGO_PKG_VERSION")))
            .header(EVENT_HEADER, event)
            .header(DELIVERY_HEADER, delivery)
            .header(TIMESTAMP_HEADER, now.to_string())
            .header(SIGNATURE_HEADER, sign(&hook.secret, now, body))
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
            Ok(Ok(resp)) => Err(format!("HTTP {}", resp.status())),
            Ok(Err(e)) => Err(crate::outbound::explain(&e)),
            Err(_) => Err(format!("no answer in {} s", ATTEMPT_TIMEOUT.as_secs())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_signatures() {
        assert!(validate_url("http://127.0.0.1:9/hook").is_ok());
        assert!(validate_url("https://example.com/hook").is_ok());
        assert!(validate_url("ftp://x/y").is_err());
        assert!(validate_url("not a url").is_err());
        // RFC 4231 test case 2 shape: a known HMAC-SHA256.
        let s = sign("Jefe", 0, b"what do ya want for nothing?");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"0.what do ya want for nothing?");
        assert_eq!(
            s,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_ne!(sign("Jefe", 1, b"x"), sign("Jefe", 2, b"x"));
    }
}
