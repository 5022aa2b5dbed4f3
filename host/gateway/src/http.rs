//! Small HTTP helpers shared by the public gateway and the admin API: bounded body reading
//! (each body within its limit, all bodies being read within the host's [`BodyBudget`]), JSON
//! responses, query parsing.

use bytes::Bytes;
use dashmap::DashMap;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The response body type of both listeners.
pub type Body = Full<Bytes>;

/// A JSON response with `status`.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("JSON values and plain structs serialize");
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// The WeChat API's error shape, `{errcode, errmsg}` (HTTP 200), of the token endpoints,
/// `/tcb/*` and mini-program logins.
pub fn wx_error(errcode: impl Into<i64>, errmsg: impl Into<String>) -> Response<Body> {
    json(
        StatusCode::OK,
        &serde_json::json!({ "errcode": errcode.into(), "errmsg": errmsg.into() }),
    )
}

/// A plain-text response.
pub fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Larger than the limit.
    TooLarge(usize),
    /// The connection failed mid-body.
    Io(String),
    /// The host (or the caller's share of it) is holding as many body bytes as it may.
    Busy(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge(limit) => write!(f, "the body is over {limit} bytes"),
            BodyError::Io(e) | BodyError::Busy(e) => f.write_str(e),
        }
    }
}

/// The request-body bytes the host buffers at once, across every connection, and the share of
/// them one caller (an app, known before its body is read) may hold: without it, many
/// connections each sending most of a large body and then stalling hold gigabytes.
pub struct BodyBudget {
    total: Arc<Semaphore>,
    per_caller: usize,
    callers: DashMap<String, Arc<Semaphore>>,
}

/// Budget units are KiB, so a budget of gigabytes fits a semaphore's permit count.
const UNIT: usize = 1024;

impl BodyBudget {
    /// A budget of `total` bytes, of which one caller may hold `per_caller`.
    pub fn new(total: usize, per_caller: usize) -> BodyBudget {
        BodyBudget {
            total: Arc::new(Semaphore::new((total / UNIT).max(1))),
            per_caller: (per_caller / UNIT).max(1),
            callers: DashMap::new(),
        }
    }

    /// `total` bytes (at least one body of `max_body`), a quarter of them per caller (so one
    /// app cannot take it all) but at least one body of `max_body`.
    pub fn for_bodies(total: usize, max_body: usize) -> BodyBudget {
        let total = total.max(max_body);
        BodyBudget::new(total, (total / 4).max(max_body))
    }

    /// Reserves room for a body of up to `bytes` for `caller`, or says the host is full. The
    /// reservation lasts until the returned permits drop.
    fn reserve(&self, caller: &str, bytes: usize) -> Result<BodyPermit, BodyError> {
        let units = bytes.div_ceil(UNIT).max(1);
        let mine = self
            .callers
            .entry(caller.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_caller)))
            .clone();
        let busy = |whose: &str| {
            BodyError::Busy(format!(
                "{whose} request bodies are being received at once; try again"
            ))
        };
        let units = u32::try_from(units).map_err(|_| BodyError::TooLarge(bytes))?;
        let caller_permit = mine
            .try_acquire_many_owned(units)
            .map_err(|_| busy("too many of this app's"))?;
        let host_permit = self
            .total
            .clone()
            .try_acquire_many_owned(units)
            .map_err(|_| busy("too many"))?;
        Ok(BodyPermit {
            _caller: caller_permit,
            _host: host_permit,
        })
    }
}

/// Room for one body in the [`BodyBudget`], held while the body is read and parsed.
pub struct BodyPermit {
    _caller: OwnedSemaphorePermit,
    _host: OwnedSemaphorePermit,
}

/// How long a client may take to send a body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads the whole body of an authenticated `caller`'s request, of at most `limit` bytes,
/// within `budget`: room for its declared length (or `limit` when it declares none) is
/// reserved first, and the body is refused at once if there is none. The permit keeps the
/// room until the caller drops it.
pub async fn read_body_within<B>(
    budget: &BodyBudget,
    caller: &str,
    headers: &hyper::HeaderMap,
    body: B,
    limit: usize,
) -> Result<(Bytes, BodyPermit), BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let declared = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        drain(body).await;
        return Err(BodyError::TooLarge(limit));
    }
    let permit = budget.reserve(caller, declared.unwrap_or(limit))?;
    Ok((read_body(body, limit).await?, permit))
}

/// Reads a whole body of at most `limit` bytes, within [`BODY_TIMEOUT`]. Only for small
/// limits; bodies of callers use [`read_body_within`]. A body over the limit is read on (and
/// dropped, never kept) up to [`DRAIN_MAX`], so a client still sending it reads the refusal
/// instead of a broken pipe.
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut body = body;
    let read = async {
        let mut kept = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Io(e.to_string()))?;
            if let Some(data) = frame.data_ref() {
                if kept.len() + data.len() > limit {
                    return Err(BodyError::TooLarge(limit));
                }
                kept.extend_from_slice(data);
            }
        }
        Ok(kept.freeze())
    };
    let outcome = tokio::time::timeout(BODY_TIMEOUT, read).await;
    match outcome {
        Ok(Err(BodyError::TooLarge(limit))) => {
            drain(body).await;
            Err(BodyError::TooLarge(limit))
        }
        Ok(read) => read,
        Err(_) => Err(BodyError::Io(format!(
            "the body did not arrive within {} s",
            BODY_TIMEOUT.as_secs()
        ))),
    }
}

/// How much of a refused body is read on and dropped, at most, and for how long.
const DRAIN_MAX: usize = 32 * 1024 * 1024;
/// See [`DRAIN_MAX`].
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and drops the rest of a refused body, within [`DRAIN_MAX`] and [`DRAIN_TIME`]: past
/// either, the connection just closes (as it would have).
async fn drain<B: hyper::body::Body<Data = Bytes> + Unpin>(mut body: B) {
    let drop_rest = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > DRAIN_MAX {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drop_rest).await;
}

/// The query string's parameters, decoded (unknown ones ignored), as an extractor.
pub(crate) struct QueryMap(pub HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for QueryMap {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut hyper::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(QueryMap(query_map(parts.uri.query())))
    }
}

/// The query string's parameters (later duplicates win).
pub fn query_map(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Parameters of a query string, decoded, in the order of `keys`; for each, the last one when
/// it is repeated, as in [`query_map`]. One pass, and only the values asked for are decoded,
/// only when they have escapes: the call path reads three parameters of a query holding a
/// long access token, and keeps none.
pub fn query_params<'q, const N: usize>(
    query: Option<&'q str>,
    keys: [&str; N],
) -> [Option<std::borrow::Cow<'q, str>>; N] {
    let mut found: [Option<&'q str>; N] = [None; N];
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decoded(k);
        if let Some(i) = keys.iter().position(|key| *key == k) {
            found[i] = Some(v);
        }
    }
    found.map(|v| v.map(decoded))
}

/// [`query_params`] of one key.
pub fn query_param<'q>(query: Option<&'q str>, key: &str) -> Option<std::borrow::Cow<'q, str>> {
    let [v] = query_params(query, [key]);
    v
}

/// One form-urlencoded component (no `&`; a value may hold `=`), decoded: borrowed as it is
/// when it has no escapes.
fn decoded(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return std::borrow::Cow::Borrowed(s);
    }
    let value = form_urlencoded::parse(format!("_={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned());
    std::borrow::Cow::Owned(value.unwrap_or_default())
}

/// A header's value as text, if present and valid.
pub fn header(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_parameter_reads_as_the_whole_query_decoded_reads_it() {
        let queries = [
            "access_token=abc&env=prod-01&name=echo",
            "env=a%2Db&name=x+y&env=last",
            "na%6De=escaped-key&x=%E4%B8%AD&eq=a=b&flag&empty=",
            "",
            "&&name",
        ];
        for q in queries {
            let all = query_map(Some(q));
            for key in [
                "access_token",
                "env",
                "name",
                "x",
                "eq",
                "flag",
                "empty",
                "none",
            ] {
                assert_eq!(
                    query_param(Some(q), key).as_deref(),
                    all.get(key).map(String::as_str),
                    "{key} in {q:?}"
                );
            }
        }
        assert_eq!(query_param(None, "env"), None);
        // No escapes: the query's own bytes, not a copy.
        assert!(matches!(
            query_param(Some("env=prod"), "env"),
            Some(std::borrow::Cow::Borrowed("prod"))
        ));
    }
}
