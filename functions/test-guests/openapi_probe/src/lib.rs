//! Test guest: makes the cloud calls its event asks for and reports each outcome.
//! `{"send": {"touser": …}, "as": "wxB"?, "path": "…"?, "body": {…}?, "times": N?}`:
//! `send` goes through the SDK's typed `subscribe_message`; `path`/`body` through `call`.

use cloudfn_sdk::openapi::{self, OpenApiError, subscribe_message};
use cloudfn_sdk::{Error, WxContext};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Ask {
    send: Option<Value>,
    r#as: Option<String>,
    path: Option<String>,
    body: Option<Value>,
    times: Option<u32>,
}

fn outcome<T: serde::Serialize>(r: Result<T, OpenApiError>) -> Value {
    match r {
        Ok(v) => json!({"ok": v}),
        Err(e) => json!({"errcode": e.errcode, "errmsg": e.errmsg}),
    }
}

#[cloudfn_sdk::function]
fn openapi_probe(ask: Ask, _ctx: &WxContext) -> Result<Value, Error> {
    let mut results = Vec::new();
    for _ in 0..ask.times.unwrap_or(1) {
        let r = if let Some(send) = &ask.send {
            let message = subscribe_message::Message {
                touser: send["touser"].as_str().unwrap_or_default().into(),
                template_id: send["template_id"].as_str().unwrap_or("T1").into(),
                data: send["data"].clone(),
                ..Default::default()
            };
            outcome(match &ask.r#as {
                Some(app) => subscribe_message::send_as(app, &message),
                None => subscribe_message::send(&message),
            })
        } else {
            let path = ask
                .path
                .as_deref()
                .unwrap_or("cgi-bin/message/subscribe/send");
            let body = ask.body.clone().unwrap_or(json!({}));
            outcome(match &ask.r#as {
                Some(app) => openapi::call_as::<Value>(app, path, &body),
                None => openapi::call::<Value>(path, &body),
            })
        };
        results.push(r);
    }
    Ok(json!({ "results": results }))
}
