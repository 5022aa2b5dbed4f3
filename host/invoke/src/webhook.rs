//! Webhooks: an app's own URL, told of changes made to it by others — today, a share of an env
//! ending (the seed's "解除环境共享消息通知"). Each event is POSTed as JSON, signed with the
//! app's webhook secret, and retried with backoff until the receiver answers 2xx; delivery runs
//! beside the change, never in its way, and its outcome goes to the audit log.
//!
//! A receiver checks `X-Cloudfn-Signature: sha256=HEX`, the HMAC-SHA256 with its secret of
//! `{X-Cloudfn-Timestamp}.{body}`, and may drop repeats by `X-Cloudfn-Delivery` (the same for
//! every attempt of one event).

use bytes::Bytes;
use cloudfn_runtime::egress::Egress;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
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

/// What a webhook's setting is sealed for (its signing key is a secret the host must use
/// again, so it is sealed, not hashed).
const SEALED_FOR: &str = "webhook";

/// The webhook `appid` has set, if any. A webhook kept in plain text by an earlier version is
/// sealed again as it is read.
pub async fn load(
    store: &dyn cloudfn_store::Store,
    appid: &str,
) -> Result<Option<Webhook>, cloudfn_store::StoreError> {
    let key = setting_key(appid);
    let Some(kept) = store.setting(&key).await?.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if kept.starts_with('{') {
        let Ok(hook) = serde_json::from_str::<Webhook>(&kept) else {
            return Ok(None);
        };
        save(store, appid, &hook).await?;
        return Ok(Some(hook));
    }
    let json = store.sealed_setting(SEALED_FOR, &key).await?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

/// Keeps `hook` as `appid`'s webhook, sealed.
pub async fn save(
    store: &dyn cloudfn_store::Store,
    appid: &str,
    hook: &Webhook,
) -> Result<(), cloudfn_store::StoreError> {
    let json = serde_json::to_string(hook).map_err(anyhow::Error::from)?;
    store
        .set_sealed_setting(SEALED_FOR, &setting_key(appid), Some(&json))
        .await
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
    /// Held to the host's egress policy: an app names the URL, so it is a tenant's request.
    client: cloudfn_runtime::egress::EgressClient<Full<Bytes>>,
    egress: Arc<Egress>,
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
    /// Retries after each of `backoff` (so `backoff.len() + 1` attempts at most); reaches only
    /// the addresses `egress` allows.
    pub fn new(backoff: Vec<Duration>, egress: Arc<Egress>) -> Webhooks {
        Webhooks {
            client: cloudfn_runtime::egress::client(egress.clone()),
            egress,
            backoff,
        }
    }

    /// Checks a webhook URL when it is set: its form ([`validate_url`]), and the addresses its
    /// host resolves to now against the egress policy (deliveries check again as they
    /// connect). A name that does not resolve yet is accepted.
    pub async fn check_url(&self, url: &str) -> Result<(), String> {
        validate_url(url)?;
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
        let Some((host, port)) = cloudfn_runtime::egress::host_and_port(&uri) else {
            return Ok(());
        };
        let lookup = tokio::net::lookup_host((host, port));
        let Ok(Ok(addrs)) = tokio::time::timeout(Duration::from_secs(5), lookup).await else {
            return Ok(());
        };
        for addr in addrs {
            self.egress
                .check(addr)
                .map_err(|refused| format!("{url}: {refused}"))?;
        }
        Ok(())
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
            // A refusal says only that the policy refused: not what answers there.
            Ok(Err(e)) => Err(match cloudfn_runtime::egress::refusal(&e) {
                Some(refused) => format!("refused by the egress policy: {refused}"),
                None => crate::outbound::explain(&e),
            }),
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
