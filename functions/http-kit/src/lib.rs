//! The shared plumbing of the example and test HTTP functions (`wx_counter`, `tt_todo`,
//! `tb_app`, `http_probe`): request body, query, headers and responses over the `wasi` 0.14.2
//! `wasi:http/proxy` bindings, so each function keeps only its own routes and logic.

use serde_json::Value;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasi::io::streams::{OutputStream, StreamError};

/// The most `blocking_write_and_flush` accepts in one call; larger bodies go in pieces.
pub const CHUNK: usize = 4096;

/// The routes match on the path alone, while the parameters travel after the `?`.
pub fn split_target(path_with_query: &str) -> (&str, &str) {
    path_with_query
        .split_once('?')
        .unwrap_or((path_with_query, ""))
}

/// Error messages name the method as the client sent it, and `Method` has no `Display`.
pub fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
    }
}

/// The identity the host adds arrives as headers; a function wants the first value as text,
/// and a stray non-UTF-8 byte should not cost it the rest.
pub fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    let values = request.headers().get(name);
    let first = values.first()?;
    Some(String::from_utf8_lossy(first).into_owned())
}

/// The handlers parse the body whole, and an unreadable body (already taken, or failing midway)
/// is for them the same as an empty one: the parse then says what is wrong.
pub fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut data = Vec::new();
    let Ok(body) = request.consume() else {
        return data;
    };
    let Ok(stream) = body.stream() else {
        return data;
    };
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        data.extend_from_slice(&chunk);
    }
    data
}

/// The query as `application/x-www-form-urlencoded` pairs. Callers choose how duplicates
/// resolve by what they collect into: a `Vec` keeps them all in order, a map lets the later one
/// win.
pub fn parse_query<C: FromIterator<(String, String)>>(query: &str) -> C {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Form decoding (`+` is a space, `%XX` a byte). A malformed escape stays as written rather than
/// failing the request: the caller's parameter is still worth seeing.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The example functions answer in JSON only.
pub fn respond_json(out: ResponseOutparam, status: u16, body: &Value) {
    respond(out, status, "application/json", body.to_string().as_bytes());
}

/// A body already in memory, cut to what one write takes.
pub fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    respond_with(out, status, content_type, |stream| {
        body.chunks(CHUNK)
            .try_for_each(|chunk| stream.blocking_write_and_flush(chunk))
    });
}

/// For a body made while it is sent, too large to hold. A write error means the client went
/// away: there is no one left to tell, so the body is just left unfinished.
pub fn respond_with(
    out: ResponseOutparam,
    status: u16,
    content_type: &str,
    write: impl FnOnce(&OutputStream) -> Result<(), StreamError>,
) {
    let headers = Fields::from_list(&[("content-type".into(), content_type.into())])
        .expect("a valid content-type");
    let response = OutgoingResponse::new(headers);
    response
        .set_status_code(status)
        .expect("a status the host accepts");
    let body = response.body().expect("the body, taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("the stream, taken once");
    let written = write(&stream);
    // The stream is a child of the body: it must go before the body is finished.
    drop(stream);
    if written.is_ok() {
        let _ = OutgoingBody::finish(body, None);
    }
}
