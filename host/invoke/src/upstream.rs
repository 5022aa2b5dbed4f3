//! Cloud calls upstream (protocol §12): a function's `openapi` call goes to the platform's API
//! as an app, with that app's access token added here. The token comes from the upstream's
//! `/cgi-bin/token` with the app's sealed AppSecret; it is cached per app, fetched by one
//! request at a time per app, refreshed before it expires, and fetched anew (with the call
//! retried once) when the upstream answers that it is invalid or expired. A function sees
//! neither the secret nor the token: only the API's reply. A mini-program's login code is
//! exchanged here too (`jscode2session`), with the same sealed AppSecret.

use base64::Engine as _;
use bytes::Bytes;
use cloudfn_openapi::OpenapiError;
use cloudfn_store::Store;
use dashmap::DashMap;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Functions' cloud calls: the `openapi` capability's service, through the upstream as the
/// app the capability let the call act as.
pub(crate) struct CloudCalls {
    pub upstream: Arc<Upstream>,
    pub store: Arc<dyn Store>,
}

impl cloudfn_openapi::CloudCalls for CloudCalls {
    fn call(
        &self,
        appid: String,
        path: String,
        body: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<String, OpenapiError>> + Send>> {
        let upstream = self.upstream.clone();
        let store = self.store.clone();
        Box::pin(async move { upstream.call(store.as_ref(), &appid, &path, body).await })
    }
}

/// Upstream errcodes saying the token is invalid or expired: fetch a new one, retry once.
const TOKEN_REJECTED: [i64; 3] = [40001, 42001, 40014];
/// How long one upstream request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest upstream reply taken.
const MAX_REPLY: usize = 6 * 1024 * 1024;

/// A cached access token.
struct Token {
    token: String,
    refresh_at: Instant,
}

/// A mini-program user, as the upstream's `jscode2session` names them.
pub struct Code2Session {
    /// The user in the app.
    pub openid: String,
    /// The user across the subject's apps, when the platform gives it.
    pub unionid: Option<String>,
    /// The platform's session key for the user; it stays on the host.
    pub session_key: String,
}

/// The upstream platform: its base URL, and each app's cached token.
pub struct Upstream {
    base: Option<String>,
    client: crate::outbound::Outbound,
    tokens: DashMap<String, Arc<tokio::sync::Mutex<Option<Token>>>>,
}

fn fail(errcode: i64, errmsg: impl Into<String>) -> OpenapiError {
    OpenapiError {
        errcode,
        errmsg: errmsg.into(),
    }
}

impl Upstream {
    /// Cloud calls to `base` (e.g. `http://127.0.0.1:9000`); `None` refuses them.
    pub fn new(base: Option<String>) -> Upstream {
        Upstream {
            base: base.map(|b| b.trim_end_matches('/').to_string()),
            client: crate::outbound::client(),
            tokens: DashMap::new(),
        }
    }

    /// Drops `appid`'s cached token (its credentials changed).
    pub fn forget(&self, appid: &str) {
        self.tokens.remove(appid);
    }

    /// POSTs `body` to `path` as `appid`; the reply, or the upstream's (or the host's) error.
    pub async fn call(
        &self,
        store: &dyn Store,
        appid: &str,
        path: &str,
        body: String,
    ) -> Result<String, OpenapiError> {
        let Some(base) = &self.base else {
            return Err(fail(
                -501001,
                "cloud calls are not configured on this host (serve --upstream URL)",
            ));
        };
        let path = check_path(path)?;
        let mut stale = None;
        for _ in 0..2 {
            let token = self.token(store, base, appid, stale.as_deref()).await?;
            let url = format!("{base}/{path}?access_token={token}");
            let (content_type, reply) = self.send(hyper::Method::POST, &url, body.clone()).await?;
            if !content_type.contains("json") && !reply.starts_with(b"{") {
                // Binary replies (e.g. wxacode.get's image) as wx-server-sdk gives them.
                let buffer = base64::engine::general_purpose::STANDARD.encode(&reply);
                return Ok(
                    serde_json::json!({"contentType": content_type, "buffer": buffer}).to_string(),
                );
            }
            let text = String::from_utf8(reply.to_vec())
                .map_err(|_| fail(-1, format!("{path} answered with text that is not UTF-8")))?;
            let errcode = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    Some((
                        v["errcode"].as_i64()?,
                        v["errmsg"].as_str().unwrap_or("").to_string(),
                    ))
                });
            match errcode {
                Some((code, _)) if TOKEN_REJECTED.contains(&code) && stale.is_none() => {
                    stale = Some(token);
                }
                Some((code, msg)) if code != 0 => return Err(fail(code, msg)),
                _ => return Ok(text),
            }
        }
        Err(fail(
            42001,
            format!("the upstream refused two fresh access tokens of {appid}"),
        ))
    }

    /// Exchanges a mini-program's `wx.login()` code for its user (protocol §12:
    /// `jscode2session` with the app's sealed AppSecret). The upstream's refusals (40029
    /// invalid code, 45011 rate limit, 40226 high-risk user, -1 busy) come back as they are.
    pub async fn code2session(
        &self,
        store: &dyn Store,
        appid: &str,
        code: &str,
    ) -> Result<Code2Session, OpenapiError> {
        let Some(base) = &self.base else {
            return Err(fail(
                -501001,
                "mini-program login is not configured on this host (serve --upstream URL)",
            ));
        };
        let secret = self.secret(store, appid, "mini-program login").await?;
        let url = format!(
            "{base}/sns/jscode2session?appid={}&secret={}&js_code={}&grant_type=authorization_code",
            enc(appid),
            enc(&secret),
            enc(code)
        );
        let (_, reply) = self.send(hyper::Method::GET, &url, String::new()).await?;
        let v: serde_json::Value = serde_json::from_slice(&reply)
            .map_err(|_| fail(-1, "the upstream's jscode2session reply is not JSON"))?;
        let text = |k: &str| v[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        match (text("openid"), text("session_key")) {
            (Some(openid), Some(session_key)) if v["errcode"].as_i64().unwrap_or(0) == 0 => {
                Ok(Code2Session {
                    openid,
                    unionid: text("unionid"),
                    session_key,
                })
            }
            _ => Err(fail(
                v["errcode"].as_i64().filter(|c| *c != 0).unwrap_or(-1),
                v["errmsg"]
                    .as_str()
                    .unwrap_or("no openid and session_key in the upstream's reply"),
            )),
        }
    }

    /// An app's sealed AppSecret on the upstream platform, needed for `what`.
    async fn secret(
        &self,
        store: &dyn Store,
        appid: &str,
        what: &str,
    ) -> Result<String, OpenapiError> {
        store
            .upstream_secret(appid)
            .await
            .map_err(|e| fail(-1, e.to_string()))?
            .ok_or_else(|| {
                fail(
                    -501001,
                    format!(
                        "app {appid} has no upstream credentials for {what} \
                         (cloudfn app set {appid} --upstream-secret …)"
                    ),
                )
            })
    }

    /// The app's token: the cached one unless it is due or was `stale`; else one fetch,
    /// which concurrent callers for the same app wait for and share.
    async fn token(
        &self,
        store: &dyn Store,
        base: &str,
        appid: &str,
        stale: Option<&str>,
    ) -> Result<String, OpenapiError> {
        let slot = self.tokens.entry(appid.to_string()).or_default().clone();
        let mut cached = slot.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.refresh_at
            && stale != Some(t.token.as_str())
        {
            return Ok(t.token.clone());
        }
        let secret = self.secret(store, appid, "cloud calls").await?;
        let url = format!(
            "{base}/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
            enc(appid),
            enc(&secret)
        );
        let (_, reply) = self.send(hyper::Method::GET, &url, String::new()).await?;
        let v: serde_json::Value = serde_json::from_slice(&reply)
            .map_err(|_| fail(-1, "the upstream's token reply is not JSON"))?;
        let Some(token) = v["access_token"].as_str() else {
            return Err(fail(
                v["errcode"].as_i64().unwrap_or(-1),
                v["errmsg"]
                    .as_str()
                    .unwrap_or("no access_token in the upstream's reply"),
            ));
        };
        let expires_in = v["expires_in"].as_u64().unwrap_or(7200);
        // Refresh ahead of expiry: a tenth of the lifetime early, at most 5 minutes.
        let early = (expires_in / 10).min(300);
        *cached = Some(Token {
            token: token.to_string(),
            refresh_at: Instant::now() + Duration::from_secs(expires_in - early),
        });
        Ok(token.to_string())
    }

    async fn send(
        &self,
        method: hyper::Method,
        url: &str,
        body: String,
    ) -> Result<(String, Bytes), OpenapiError> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(-1, format!("building the upstream request: {e}")))?;
        let unreachable = |e: String| fail(-1, format!("the upstream could not be reached: {e}"));
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| unreachable(format!("no answer in {} s", REQUEST_TIMEOUT.as_secs())))?
            .map_err(|e| unreachable(crate::outbound::explain(&e)))?;
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_REPLY)
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        Ok((content_type, body))
    }
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An API path: relative, of `[A-Za-z0-9_./-]`, no `..`, no query (the host adds the token).
fn check_path(path: &str) -> Result<&str, OpenapiError> {
    let path = path.trim_start_matches('/');
    let ok = !path.is_empty()
        && path.len() <= 256
        && !path.split('/').any(|s| s == ".." || s.is_empty())
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-'));
    if ok {
        Ok(path)
    } else {
        Err(fail(
            -501007,
            format!("{path:?} is not an API path like cgi-bin/message/subscribe/send"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths() {
        assert_eq!(
            check_path("/cgi-bin/message/subscribe/send").unwrap(),
            "cgi-bin/message/subscribe/send"
        );
        assert_eq!(
            check_path("wxa/getwxacodeunlimit").unwrap(),
            "wxa/getwxacodeunlimit"
        );
        for bad in [
            "",
            "../x",
            "a/../b",
            "a?x=1",
            "a//b",
            "http://evil/x",
            "a b",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        assert_eq!(enc("a b&c"), "a+b%26c");
    }
}
