//! TC3-HMAC-SHA256 request signatures as `@cloudbase/node-sdk` (via
//! `@cloudbase/signature-nodejs`) computes them for `POST /admin` (protocol §11), checked
//! byte for byte: canonical request, payload hash over the signed body keys, key chain.

use crate::constant_time_eq;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The longest a signature stays valid, in seconds (what the SDK asks for).
pub const MAX_EXPIRES: i64 = 600;

/// Why a signature was refused; each maps to a §11 error `code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tc3Error {
    /// The authorization header is missing or malformed, a signed part is missing, or the
    /// signature does not match.
    #[error("{0}")]
    Invalid(String),
    /// No app has this secretId.
    #[error("unknown secretId {0}")]
    UnknownSecretId(String),
    /// `x-timestamp` is outside `x-signature-expires` of now.
    #[error("signature expired: x-timestamp {timestamp} is more than {expires} s from now ({now})")]
    Expired {
        /// The request's timestamp.
        timestamp: i64,
        /// The allowed age.
        expires: i64,
        /// The server's clock.
        now: i64,
    },
}

impl Tc3Error {
    /// The §11 `code` for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Tc3Error::Invalid(_) => "SIGN_PARAM_INVALID",
            Tc3Error::UnknownSecretId(_) => "SECRETID_NOT_FOUND",
            Tc3Error::Expired { .. } => "SIGN_EXPIRED",
        }
    }
}

/// The parts of an `authorization: TC3-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Credential's secretId.
    pub secret_id: String,
    /// Credential's date (YYYY-MM-DD).
    pub date: String,
    /// SignedParams: the body keys covered, in hash order.
    pub signed_params: Vec<String>,
    /// SignedHeaders: the header names covered, in order.
    pub signed_headers: Vec<String>,
    /// The hex signature.
    pub signature: String,
}

/// Parses `TC3-HMAC-SHA256 Credential=ID/DATE/tcb/tc3_request, SignedParams=a;b,
/// SignedHeaders=h1;h2, Signature=HEX`.
pub fn parse_authorization(header: &str) -> Result<Authorization, Tc3Error> {
    let bad = |m: &str| Tc3Error::Invalid(format!("malformed authorization header: {m}"));
    let rest = header
        .trim()
        .strip_prefix("TC3-HMAC-SHA256 ")
        .ok_or_else(|| bad("expected the TC3-HMAC-SHA256 algorithm"))?;
    let (mut credential, mut params, mut headers, mut signature) = (None, None, None, None);
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| bad("expected key=value parts"))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedParams" => params = Some(v),
            "SignedHeaders" => headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| bad("no Credential"))?;
    let mut scope = credential.split('/');
    let (Some(secret_id), Some(date), Some("tcb"), Some("tc3_request"), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(bad("Credential must be SECRET_ID/DATE/tcb/tc3_request"));
    };
    let list = |v: Option<&str>| -> Vec<String> {
        v.unwrap_or("")
            .split(';')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(Authorization {
        secret_id: secret_id.to_string(),
        date: date.to_string(),
        signed_params: list(params),
        signed_headers: list(headers),
        signature: signature.ok_or_else(|| bad("no Signature"))?.to_string(),
    })
}

/// A request as the verifier needs it.
pub struct SignedRequest<'a> {
    /// The `Host` header as received.
    pub host: &'a str,
    /// The request path.
    pub path: &'a str,
    /// The raw query string (without `?`), exactly as sent.
    pub query: &'a str,
    /// Looks up a header value by lower-case name.
    pub header: &'a (dyn Fn(&str) -> Option<String> + Sync),
    /// The JSON body.
    pub body: &'a serde_json::Map<String, serde_json::Value>,
}

/// The body keys and values the SDK signs: keys lower-cased, values stringified (non-strings
/// JSON-encoded) and trimmed, empty values left out.
fn signable_params(body: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = body
        .iter()
        .filter_map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => s.trim().to_string(),
                other => other.to_string().trim().to_string(),
            };
            (!value.is_empty()).then(|| (k.trim().to_lowercase(), value))
        })
        .collect();
    out.sort();
    out
}

/// Checks the request's signature; returns the secretId it was signed with. `secret_key` maps
/// a secretId to its key; `now` is the server's Unix time.
pub fn verify(
    req: &SignedRequest<'_>,
    now: i64,
    secret_key: impl FnOnce(&str) -> Option<String>,
) -> Result<String, Tc3Error> {
    let auth = parse_authorization(
        &(req.header)("authorization")
            .ok_or_else(|| Tc3Error::Invalid("no authorization header".into()))?,
    )?;
    let key = secret_key(&auth.secret_id)
        .ok_or_else(|| Tc3Error::UnknownSecretId(auth.secret_id.clone()))?;
    verify_parsed(req, &auth, &key, now)?;
    Ok(auth.secret_id)
}

/// Checks the request's signature against its already parsed authorization header and the
/// secretKey of its secretId; `now` is the server's Unix time. Returns the signed timestamp.
pub fn verify_parsed(
    req: &SignedRequest<'_>,
    auth: &Authorization,
    key: &str,
    now: i64,
) -> Result<i64, Tc3Error> {
    let header = |name: &str| (req.header)(name);
    let timestamp: i64 = header("x-timestamp")
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| Tc3Error::Invalid("no valid x-timestamp header".into()))?;
    // The header is not signed: a client may shorten the window, never stretch it past 600 s.
    let expires: i64 = match header("x-signature-expires") {
        Some(v) => v
            .trim()
            .parse::<i64>()
            .map_err(|_| Tc3Error::Invalid("x-signature-expires is not a number".into()))?
            .clamp(1, MAX_EXPIRES),
        None => MAX_EXPIRES,
    };
    if now.abs_diff(timestamp) > expires as u64 {
        return Err(Tc3Error::Expired {
            timestamp,
            expires,
            now,
        });
    }
    let date = utc_date(timestamp);
    if auth.date != date {
        return Err(Tc3Error::Invalid(format!(
            "the credential date {} is not the date of x-timestamp ({date})",
            auth.date
        )));
    }
    for required in ["host", "content-type"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(Tc3Error::Invalid(format!(
                "header {required} must be signed"
            )));
        }
    }
    let params = signable_params(req.body);
    let mut signed_sorted = auth.signed_params.clone();
    signed_sorted.sort();
    let param_keys: Vec<&String> = params.iter().map(|(k, _)| k).collect();
    if signed_sorted.iter().collect::<Vec<_>>() != param_keys {
        return Err(Tc3Error::Invalid(format!(
            "SignedParams must list every non-empty body field: signed {:?}, body has {:?}",
            auth.signed_params, param_keys
        )));
    }
    let canonical = canonical_request(req, &auth.signed_params, &params, &auth.signed_headers)?;
    let expected = signature(key, timestamp, &canonical);
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(Tc3Error::Invalid("signature mismatch".into()));
    }
    Ok(timestamp)
}

/// The signatures already accepted, per secretId, for as long as their timestamp is within
/// the window: a request captured on the wire cannot be run a second time. The SDK signs a
/// fresh `seqId` and client timestamp into every request, so a real client never repeats one.
///
/// Memory is bounded per secretId: when one holds `max_per_key` signatures, its oldest
/// second is forgotten and its window starts after it (older signatures are then refused as
/// expired, never accepted twice). So under very heavy use of one key its window shrinks,
/// and nothing else changes.
pub struct ReplayGuard {
    keys: dashmap::DashMap<String, std::sync::Mutex<Seen>>,
    max_per_key: usize,
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Default)]
struct Seen {
    /// Hashes of the signatures seen, by their x-timestamp.
    by_second: std::collections::BTreeMap<i64, std::collections::HashSet<u64>>,
    count: usize,
    /// Timestamps before this are refused (their signatures were forgotten).
    floor: i64,
}

/// Signatures remembered per secretId by default (~16 MB at most per key).
pub const REPLAY_MEMORY_PER_KEY: usize = 1 << 20;

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(REPLAY_MEMORY_PER_KEY)
    }
}

impl ReplayGuard {
    /// A guard remembering at most `max_per_key` signatures per secretId.
    pub fn new(max_per_key: usize) -> ReplayGuard {
        ReplayGuard {
            keys: dashmap::DashMap::new(),
            max_per_key: max_per_key.max(1),
            hasher: Default::default(),
        }
    }

    /// Accepts a verified signature once: refuses it if it was seen, or if its timestamp is
    /// older than what this key's memory still covers.
    pub fn check_once(
        &self,
        secret_id: &str,
        signature: &str,
        timestamp: i64,
        now: i64,
    ) -> Result<(), Tc3Error> {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(signature);
        let entry = self.keys.entry(secret_id.to_string()).or_default();
        let mut seen = entry.lock().unwrap_or_else(|e| e.into_inner());
        // Seconds no accepted timestamp can fall in any more.
        while let Some((&second, _)) = seen.by_second.first_key_value() {
            if second >= now - MAX_EXPIRES {
                break;
            }
            let gone = seen.by_second.pop_first().map_or(0, |(_, s)| s.len());
            seen.count -= gone;
        }
        if timestamp < seen.floor {
            return Err(Tc3Error::Invalid(format!(
                "x-timestamp {timestamp} is older than this secretId's replay window, which \
                 starts at {} under its current load: sign requests when sending them",
                seen.floor
            )));
        }
        if !seen.by_second.entry(timestamp).or_default().insert(hash) {
            return Err(Tc3Error::Invalid(
                "this signature was used already: a request is accepted once".into(),
            ));
        }
        seen.count += 1;
        while seen.count > self.max_per_key {
            let Some((second, set)) = seen.by_second.pop_first() else {
                break;
            };
            seen.count -= set.len();
            seen.floor = second + 1;
        }
        Ok(())
    }
}

/// The canonical request the signature covers: method, host and path, query, the signed
/// headers, and the hash of the signed body fields in `signed_params` order.
fn canonical_request(
    req: &SignedRequest<'_>,
    signed_params: &[String],
    params: &[(String, String)],
    signed_headers: &[String],
) -> Result<String, Tc3Error> {
    let mut payload = Sha256::new();
    for key in signed_params {
        let value = &params
            .iter()
            .find(|(k, _)| k == key)
            .ok_or_else(|| Tc3Error::Invalid(format!("signed param {key} is not in the body")))?
            .1;
        payload.update(format!("&{key}={value}\r\n").as_bytes());
    }
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let raw = (req.header)(name)
            .ok_or_else(|| Tc3Error::Invalid(format!("signed header {name} is missing")))?;
        let value = if name == "content-type" {
            raw
        } else {
            raw.trim().to_lowercase()
        };
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    Ok(format!(
        "post\n//{}{}\n{}\n{}\n{}\n{}",
        req.host,
        req.path,
        req.query,
        canonical_headers,
        signed_headers.join(";"),
        hex::encode(payload.finalize())
    ))
}

/// The `authorization` header a client sends for `req` (signing every non-empty body field
/// and the `host` and `content-type` headers) with `secret_id`/`secret_key` at `timestamp`, as
/// the SDK computes it. For clients of `/admin` written in Rust (the benchmark, tests).
pub fn sign(
    req: &SignedRequest<'_>,
    secret_id: &str,
    secret_key: &str,
    timestamp: i64,
) -> Result<String, Tc3Error> {
    let (canonical, signed_params) = client_canonical(req)?;
    Ok(format!(
        "TC3-HMAC-SHA256 Credential={secret_id}/{}/tcb/tc3_request, SignedParams={}, \
         SignedHeaders={CLIENT_SIGNED_HEADERS}, Signature={}",
        utc_date(timestamp),
        signed_params,
        signature(secret_key, timestamp, &canonical)
    ))
}

/// The headers [`sign`] signs.
pub const CLIENT_SIGNED_HEADERS: &str = "content-type;host";

/// The canonical request [`sign`] signs for `req`, and its SignedParams list.
pub fn client_canonical(req: &SignedRequest<'_>) -> Result<(String, String), Tc3Error> {
    let params = signable_params(req.body);
    let signed_params: Vec<String> = params.iter().map(|(k, _)| k.clone()).collect();
    let signed_headers: Vec<String> = CLIENT_SIGNED_HEADERS
        .split(';')
        .map(str::to_string)
        .collect();
    let canonical = canonical_request(req, &signed_params, &params, &signed_headers)?;
    Ok((canonical, signed_params.join(";")))
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The hex signature of a canonical request at `timestamp` with `secret_key`.
pub fn signature(secret_key: &str, timestamp: i64, canonical_request: &str) -> String {
    let date = utc_date(timestamp);
    let string_to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{date}/tcb/tc3_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(format!("TC3{secret_key}").as_bytes(), &date);
    let k_service = hmac(&k_date, "tcb");
    let k_signing = hmac(&k_service, "tc3_request");
    hex::encode(hmac(&k_signing, &string_to_sign))
}

/// The UTC date (YYYY-MM-DD) of a Unix time, by the civil-from-days algorithm.
pub fn utc_date(unix: i64) -> String {
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request captured from @cloudbase/node-sdk 3.18.3 (secretKey `sk_test_456`).
    const BODY: &str = r#"{"action":"functions.invokeFunction","function_name":"hello","request_data":"{\"a\":1,\"b\":\"x y\",\"nested\":{\"k\":[1,2]}}","envName":"test-env-1","wxCloudApiToken":"","wxCloudbaseAccesstoken":"","tcb_sessionToken":"","crossAuthorizationToken":""}"#;
    const AUTH: &str = "TC3-HMAC-SHA256 Credential=AKIDtest123/2026-11-22/tcb/tc3_request, SignedParams=action;envname;function_name;request_data, SignedHeaders=content-type;host;user-agent;x-client-timestamp;x-sdk-version;x-tcb-source, Signature=bdba1c3c119ff0f281c730f1a23469c4fb737c5e7786b188a48c7b30113317b6";

    fn headers(name: &str) -> Option<String> {
        Some(
            match name {
                "content-type" => "application/json",
                "host" => "127.0.0.1:34633",
                "user-agent" => "tcb-node-sdk/3.18.3",
                "x-client-timestamp" => "1795311814989",
                "x-sdk-version" => "tcb-node-sdk/3.18.3",
                "x-tcb-source" => ",unknown",
                "authorization" => AUTH,
                "x-timestamp" => "1795311813",
                "x-signature-expires" => "600",
                _ => return None,
            }
            .to_string(),
        )
    }

    fn check(body: &str, now: i64, key: &str) -> Result<String, Tc3Error> {
        let body: serde_json::Map<String, serde_json::Value> = serde_json::from_str(body).unwrap();
        let req = SignedRequest {
            host: "127.0.0.1:34633",
            path: "/admin",
            query: "env=test-env-1&seqId=1a200ec494d_1",
            header: &headers,
            body: &body,
        };
        verify(&req, now, |id| {
            (id == "AKIDtest123").then(|| key.to_string())
        })
    }

    #[test]
    fn accepts_the_sdks_own_signature() {
        assert_eq!(
            check(BODY, 1795311814, "sk_test_456").unwrap(),
            "AKIDtest123"
        );
    }

    #[test]
    fn refuses_tampering_wrong_keys_and_stale_timestamps() {
        let tampered = BODY.replace("hello", "hellp");
        assert!(matches!(
            check(&tampered, 1795311814, "sk_test_456"),
            Err(Tc3Error::Invalid(_))
        ));
        let smuggled = BODY.replace(r#""wxCloudApiToken":"""#, r#""wxCloudApiToken":"x""#);
        assert!(matches!(
            check(&smuggled, 1795311814, "sk_test_456"),
            Err(Tc3Error::Invalid(_))
        ));
        assert!(matches!(
            check(BODY, 1795311814, "other"),
            Err(Tc3Error::Invalid(_))
        ));
        assert!(matches!(
            check(BODY, 1795311813 + 601, "sk_test_456"),
            Err(Tc3Error::Expired { .. })
        ));
    }

    #[test]
    fn a_client_cannot_stretch_the_window_or_crash_the_check() {
        let body: serde_json::Map<String, serde_json::Value> = serde_json::from_str(BODY).unwrap();
        for (ts, expires) in [("1795311813", "99999999"), ("-9223372036854775808", "600")] {
            let headers = move |name: &str| match name {
                "x-timestamp" => Some(ts.to_string()),
                "x-signature-expires" => Some(expires.to_string()),
                other => super::tests::headers(other),
            };
            let req = SignedRequest {
                host: "127.0.0.1:34633",
                path: "/admin",
                query: "env=test-env-1&seqId=1a200ec494d_1",
                header: &headers,
                body: &body,
            };
            let got = verify(&req, 1795311813 + 700, |_| Some("sk_test_456".into()));
            assert!(
                matches!(got, Err(Tc3Error::Expired { expires: 600, .. })),
                "{ts} {expires}: {got:?}"
            );
        }
    }

    #[test]
    fn a_signature_made_by_sign_verifies_and_covers_the_body() {
        let body: serde_json::Map<String, serde_json::Value> = serde_json::from_str(BODY).unwrap();
        let mut req = SignedRequest {
            host: "127.0.0.1:34633",
            path: "/admin",
            query: "env=test-env-1",
            header: &headers,
            body: &body,
        };
        let auth = sign(&req, "AKIDtest123", "sk_test_456", 1795311813).unwrap();
        let parsed = parse_authorization(&auth).unwrap();
        assert_eq!(parsed.secret_id, "AKIDtest123");
        verify_parsed(&req, &parsed, "sk_test_456", 1795311814).unwrap();
        assert!(verify_parsed(&req, &parsed, "sk_other", 1795311814).is_err());
        let tampered: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&BODY.replace("hello", "hellp")).unwrap();
        req.body = &tampered;
        assert!(verify_parsed(&req, &parsed, "sk_test_456", 1795311814).is_err());
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1795311813), "2026-11-22");
        assert_eq!(utc_date(951782400), "2000-02-29");
    }

    /// A signature is accepted once; a full memory moves the key's window forward instead of
    /// forgetting signatures that could then be replayed.
    #[test]
    fn replays_are_refused_and_memory_stays_bounded() {
        let guard = ReplayGuard::new(3);
        let now = 1_000_000;
        guard.check_once("id", "sig1", now, now).unwrap();
        assert!(guard.check_once("id", "sig1", now, now).is_err());
        guard.check_once("other", "sig1", now, now).unwrap();
        guard.check_once("id", "sig2", now - 5, now).unwrap();
        guard.check_once("id", "sig3", now - 1, now).unwrap();
        // The fourth forgets second now-5: sig2 must not come back.
        guard.check_once("id", "sig4", now, now).unwrap();
        assert!(guard.check_once("id", "sig2", now - 5, now).is_err());
        assert!(guard.check_once("id", "sig5", now - 5, now).is_err());
        // Seconds past the window are forgotten as time goes on.
        guard
            .check_once("id", "sig6", now + 700, now + 700)
            .unwrap();
        let seen = guard.keys.get("id").unwrap();
        assert_eq!(seen.lock().unwrap().count, 1);
    }
}
