//! The console's pages: what each route (`routes.rs`) loads, which `Control` method a form
//! calls, and the template it renders. Changes go through the same control plane as the admin API (sharing
//! steps act as the app the page is for, so the store's checks and errors are the CLI's).

use super::charts::{Series, line_chart, sparkline};
use super::session::Current;
use super::{Console, Form, redirect};
use crate::admin_api::MAX_WASM_BYTES;
use crate::admin_api::store_status;
use crate::http::Body;
use cloudfn_invoke::Actor;
use cloudfn_invoke::metrics::{BUCKET_SECONDS, Point, Window};
use cloudfn_protocol::rules::{Rules, error_position};
use cloudfn_store::{
    ActivationQuery, FunctionConfig, FunctionKind, Outcome, PERMISSIONS, SharedFunctions,
    StoreError,
};
use hyper::{Response, StatusCode};
use minijinja::{Value, context};
use serde::Serialize;
use std::collections::BTreeMap;

/// The templates, by name.
pub(super) const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("env.html", include_str!("templates/env.html")),
    ("function.html", include_str!("templates/function.html")),
    ("confirm.html", include_str!("templates/confirm.html")),
    ("sharing.html", include_str!("templates/sharing.html")),
    ("configure.html", include_str!("templates/configure.html")),
    ("rules.html", include_str!("templates/rules.html")),
    (
        "activations.html",
        include_str!("templates/activations.html"),
    ),
    ("activation.html", include_str!("templates/activation.html")),
    ("metrics.html", include_str!("templates/metrics.html")),
];

/// Rows the activations page shows; older ones are a page further (`before=SEQ`).
const ACTIVATIONS_SHOWN: usize = 200;

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of Unix seconds.
fn utc(secs: i64) -> String {
    let day = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}",
        cloudfn_protocol::tc3::utc_date(secs),
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}

fn now_secs() -> u64 {
    cloudfn_store::fsutil::now().max(0) as u64
}

/// What a finished step says at the top of the page it redirects to (`?done=`): fixed
/// sentences, so a link cannot make the console say anything else.
pub(super) fn done_message(query: &std::collections::HashMap<String, String>) -> Option<String> {
    let what = match query.get("done")?.as_str() {
        "deployed" => "Deployed",
        "rolledback" => "Rolled back",
        "saved" => "Rules saved",
        "shared" => "Shared",
        "removed" => "Share removed",
        "unbound" => "Unbound",
        "sharing-on" => "Sharing turned on",
        "sharing-off" => "Sharing turned off",
        _ => return None,
    };
    Some(match query.get("v").and_then(|v| v.parse::<u32>().ok()) {
        Some(v) => format!("{what}: version {v} is active."),
        None => format!("{what}."),
    })
}

/// `POST /console/envs/{env}/functions/{name}/rollback`.
pub(super) async fn rollback(
    c: &Console,
    cur: &Current,
    env: &str,
    name: &str,
    form: &Form,
    htmx: bool,
) -> Response<Body> {
    let Some(to) = form.get("to").and_then(|t| t.parse::<u32>().ok()) else {
        return c.page_error(cur, StatusCode::BAD_REQUEST, "which version? (to=N)");
    };
    match c
        .control()
        .rollback_as(&Actor::Operator, env, name, to)
        .await
    {
        Ok(()) => redirect(
            htmx,
            &format!(
                "/console/envs/{}/functions/{}?done=rolledback&v={to}",
                enc(env),
                enc(name)
            ),
        ),
        Err(e) => c.page_error(cur, store_status(&e), &e.to_string()),
    }
}

/// `POST /console/envs/{env}/rules`: saves them, or shows why they do not validate.
pub(super) async fn save_rules(
    c: &Console,
    cur: &Current,
    env: &str,
    form: &Form,
    htmx: bool,
) -> Response<Body> {
    let text = form.get("rules").unwrap_or("");
    match c.control().set_rules_as(&Actor::Operator, env, text).await {
        Ok(_) => redirect(
            htmx,
            &format!("/console/envs/{}/rules?done=saved", enc(env)),
        ),
        Err(StoreError::InvalidRules(message)) => {
            let mut resp = rules_page(c, cur, env, text, RulesOutcome::Invalid(message));
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            resp
        }
        Err(e) => c.page_error(cur, store_status(&e), &e.to_string()),
    }
}

/// `POST /console/envs/{env}/rules/try`: what the rules (as edited, unsaved) decide for a
/// function and a sample `auth`.
pub(super) fn try_rules(c: &Console, cur: &Current, env: &str, form: &Form) -> Response<Body> {
    let text = form.get("rules").unwrap_or("");
    let function = form.get("function").unwrap_or("").trim();
    let auth = form.get("auth").unwrap_or("null");
    let outcome = match (Rules::parse(text), serde_json::from_str(auth)) {
        // Shown where "try it" puts its answer (an htmx try swaps only that part).
        (Err(message), _) => RulesOutcome::TryError(
            match error_position(text, &message) {
                Some((line, col)) => {
                    format!("the rules do not validate (line {line}, column {col}): {message}")
                }
                None => format!("the rules do not validate: {message}"),
            },
            function,
            auth,
        ),
        (_, Err(e)) => {
            RulesOutcome::TryError(format!("the sample auth is not JSON: {e}"), function, auth)
        }
        (Ok(rules), Ok(auth_value)) => {
            let v = rules.check(
                if function.is_empty() { "*" } else { function },
                &auth_value,
            );
            RulesOutcome::Tried(v, function, auth)
        }
    };
    rules_page(c, cur, env, text, outcome)
}

/// The rules page as saved.
pub(super) async fn rules(
    c: &Console,
    cur: &Current,
    env: &str,
    done: Option<String>,
) -> Result<Response<Body>, StoreError> {
    let text = c.control().rules(env).await?;
    Ok(rules_page(c, cur, env, &text, RulesOutcome::Saved(done)))
}

#[derive(Serialize)]
struct EnvRow {
    name: String,
    owner: String,
    functions: u32,
    calls: u64,
    errors: u64,
    spark: String,
}

pub(super) async fn overview(c: &Console, cur: &Current) -> Result<Response<Body>, StoreError> {
    let store = c.host().store();
    let now = now_secs();
    let mut rows = Vec::new();
    for env in store.envs().await? {
        let series = c.host().metrics().history.series(&env.name, now);
        let (calls, errors) = totals(&series);
        // One point a minute: a 10 s step is too fine for a sparkline.
        let per_minute: Vec<f64> = series
            .chunks((60 / BUCKET_SECONDS) as usize)
            .map(|m| m.iter().map(|p| f64::from(p.calls)).sum())
            .collect();
        rows.push(EnvRow {
            spark: sparkline(&per_minute, 160, 24),
            name: env.name,
            owner: env.owner_appid,
            functions: env.functions,
            calls,
            errors,
        });
    }
    let apps = store.apps().await?;
    Ok(c.render(
        StatusCode::OK,
        "overview.html",
        context! { csrf => &cur.csrf, nav => "overview", title => "Overview", envs => rows, apps => apps },
    ))
}

fn totals(series: &[Point]) -> (u64, u64) {
    series.iter().fold((0, 0), |(c, e), p| {
        (c + u64::from(p.calls), e + u64::from(p.errors))
    })
}

#[derive(Serialize)]
struct FunctionRow {
    name: String,
    kind: FunctionKind,
    active_version: u32,
    versions: u32,
    updated: String,
}

/// The env page; after a failed deploy, with its error and the form as sent.
pub(super) async fn env_page(
    c: &Console,
    cur: &Current,
    env: &str,
    done: Option<String>,
    deploy_error: Option<String>,
    form: &Value,
) -> Result<Response<Body>, StoreError> {
    let info = c.host().store().env(env).await?;
    let functions: Vec<FunctionRow> = c
        .control()
        .functions_as(&Actor::Operator, env)
        .await?
        .into_iter()
        .map(|f| FunctionRow {
            updated: utc(f.updated_at),
            name: f.name,
            kind: f.kind,
            active_version: f.active_version,
            versions: f.versions,
        })
        .collect();
    // Shared without the cloudbase_auth every sharee's call runs first: say so where the
    // operator who removed it looks next.
    let sharees: Vec<String> = if functions
        .iter()
        .any(|f| f.name == cloudfn_store::AUTH_FUNCTION)
    {
        Vec::new()
    } else {
        let shares = c.host().store().shares(Some(env), None).await?;
        shares.into_iter().map(|s| s.to_appid).collect()
    };
    // The form's fields as sent (after a failed deploy), else empty ones.
    let form = if form.is_undefined() {
        Value::from_serialize(BTreeMap::<String, String>::new())
    } else {
        form.clone()
    };
    let status = if deploy_error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok(c.render(
        status,
        "env.html",
        context! {
            csrf => &cur.csrf, nav => "overview", title => format!("Env {env}"), env => info,
            functions => functions, done => done, deploy_error => deploy_error, form => form,
            broken_shares => sharees,
        },
    ))
}

#[derive(Serialize)]
struct VersionRow {
    version: u32,
    created: String,
    size: u64,
    sha256: String,
    active: bool,
    config: FunctionConfig,
}

pub(super) async fn function_page(
    c: &Console,
    cur: &Current,
    env: &str,
    name: &str,
    done: Option<String>,
    reveal: bool,
) -> Result<Response<Body>, StoreError> {
    let mut versions: Vec<VersionRow> = c
        .control()
        .versions_as(&Actor::Operator, env, name)
        .await?
        .into_iter()
        .map(|v| VersionRow {
            created: utc(v.created_at),
            version: v.version,
            size: v.size,
            sha256: v.sha256,
            active: v.active,
            config: v.config,
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.version));
    let active = versions.iter().find(|v| v.active);
    let timeout = active.and_then(|v| v.config.timeout_ms).map(seconds);
    Ok(c.render(
        StatusCode::OK,
        "function.html",
        context! {
            csrf => &cur.csrf, nav => "overview", title => format!("{env}/{name}"), env => env,
            name => name, versions => &versions, active => active, done => done,
            timeout => timeout,
            activations => format!("/console/activations?env={}&function={}", enc(env), enc(name)),
            metrics => format!("/console/metrics?env={}", enc(env)),
            // Variables hold secrets: their values show only when asked for, not to whoever
            // looks over the operator's shoulder (or at a screenshot).
            reveal => reveal,
        },
    ))
}

/// Milliseconds as people read a timeout: `2.5 s`.
fn seconds(ms: u64) -> String {
    let s = format!("{:.3}", ms as f64 / 1000.0);
    format!("{} s", s.trim_end_matches('0').trim_end_matches('.'))
}

pub(super) async fn confirm_rollback(
    c: &Console,
    cur: &Current,
    env: &str,
    name: &str,
    to: Option<&String>,
) -> Result<Response<Body>, StoreError> {
    let versions = c.control().versions_as(&Actor::Operator, env, name).await?;
    let to = to.and_then(|t| t.parse::<u32>().ok());
    let Some(target) = versions.iter().find(|v| Some(v.version) == to) else {
        return Err(StoreError::VersionNotFound {
            env: env.to_string(),
            name: name.to_string(),
            version: to.unwrap_or(0),
        });
    };
    let current = versions
        .iter()
        .find(|v| v.active)
        .map_or("none".to_string(), |v| v.version.to_string());
    let to = target.version;
    Ok(c.render(
        StatusCode::OK,
        "confirm.html",
        context! {
            csrf => &cur.csrf, nav => "overview", title => "Roll back",
            heading => format!("Roll back {name}?"),
            message => format!(
                "Calls to {env}/{name} will run version {to} instead of version {current}. \
                 Later versions are kept: you can roll forward again."
            ),
            action => format!("/console/envs/{}/functions/{}/rollback", enc(env), enc(name)),
            fields => vec![("to", to.to_string())],
            button => format!("Roll back to version {to}"),
            cancel => format!("/console/envs/{}/functions/{}", enc(env), enc(name)),
        },
    ))
}

/// `POST /console/envs/{env}/deploy`: a multipart form with the component and its settings.
pub(super) async fn deploy(
    c: &Console,
    cur: &Current,
    env: String,
    content_type: &str,
    body: axum::body::Body,
    htmx: bool,
) -> Response<Body> {
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        return c.page_error(
            cur,
            StatusCode::BAD_REQUEST,
            "the form has no multipart boundary",
        );
    };
    let limits = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream((MAX_WASM_BYTES + 64 * 1024) as u64)
            .per_field(MAX_WASM_BYTES as u64),
    );
    let stream = http_body_util::BodyExt::into_data_stream(body);
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, limits);
    let read = tokio::time::timeout(UPLOAD_TIMEOUT, read_deploy_form(&mut multipart, cur)).await;
    let (fields, wasm) = match read {
        Ok(Ok(form)) => form,
        Ok(Err(FormError::Csrf)) => return c.csrf_refused(cur),
        Ok(Err(FormError::Upload(msg))) => {
            return env_page(c, cur, &env, None, Some(msg), &Value::UNDEFINED)
                .await
                .unwrap_or_else(|e| c.page_error(cur, store_status(&e), &e.to_string()));
        }
        Err(_) => {
            return c.page_error(
                cur,
                StatusCode::REQUEST_TIMEOUT,
                &format!("the upload took over {} s", UPLOAD_TIMEOUT.as_secs()),
            );
        }
    };
    let form_echo = Value::from_serialize(&fields);
    let name = fields
        .get("name")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    let settings = deploy_config(&fields);
    let outcome = match (settings, wasm) {
        (Err(msg), _) => Err(msg),
        (_, None) => Err("choose a .wasm component to upload".to_string()),
        (_, Some(w)) if w.is_empty() => Err("the uploaded file is empty".to_string()),
        (Ok(config), Some(w)) => c
            .control()
            .deploy_as(&Actor::Operator, &env, &name, &w, config)
            .await
            .map_err(|e| e.to_string()),
    };
    match outcome {
        Ok(v) => redirect(
            htmx,
            &format!(
                "/console/envs/{}/functions/{}?done=deployed&v={}",
                enc(&env),
                enc(&name),
                v.version
            ),
        ),
        Err(msg) => env_page(c, cur, &env, None, Some(msg), &form_echo)
            .await
            .unwrap_or_else(|e| c.page_error(cur, store_status(&e), &e.to_string())),
    }
}

/// How long a deploy form's upload may take.
const UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Why a deploy form was not read.
enum FormError {
    /// Its first field is not this session's CSRF token.
    Csrf,
    /// The upload failed or is too large: what to tell the user.
    Upload(String),
}

/// Reads the deploy form: its text fields, and the component. The form sends its CSRF token
/// first, and nothing after it is read unless the token is this session's.
async fn read_deploy_form(
    multipart: &mut multer::Multipart<'_>,
    cur: &Current,
) -> Result<(BTreeMap<String, String>, Option<bytes::Bytes>), FormError> {
    let upload = |e: multer::Error| {
        FormError::Upload(match e {
            multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
                format!(
                    "the component is over the {} MiB limit",
                    MAX_WASM_BYTES >> 20
                )
            }
            e => format!("the upload failed: {e}"),
        })
    };
    match multipart.next_field().await.map_err(upload)? {
        Some(field) if field.name() == Some("csrf") => {
            let token = field.text().await.map_err(upload)?;
            if !cur.csrf_ok(Some(&token)) {
                return Err(FormError::Csrf);
            }
        }
        _ => return Err(FormError::Csrf),
    }
    let mut fields = BTreeMap::new();
    let mut wasm = None;
    while let Some(field) = multipart.next_field().await.map_err(upload)? {
        let name = field.name().unwrap_or("").to_string();
        let bytes = field.bytes().await.map_err(upload)?;
        if name == "wasm" {
            wasm = Some(bytes);
        } else {
            fields.insert(name, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    Ok((fields, wasm))
}

/// The deploy form's settings as a config, with the CLI's meaning: empty fields take the
/// defaults (as `cloudfn deploy` without its flags: a deploy sets the whole configuration);
/// variables are `KEY=value` lines; outbound hosts are separated by commas or spaces.
fn deploy_config(fields: &BTreeMap<String, String>) -> Result<FunctionConfig, String> {
    let mut config = FunctionConfig::default();
    let field = |k: &str| fields.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    // Seconds, as `cloudfn deploy --timeout`: one unit for people everywhere.
    if let Some(t) = field("timeout") {
        let secs = t
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or_else(|| format!("timeout (s) must be a positive number of seconds, not {t}"))?;
        config.timeout_ms = Some((secs * 1000.0).round() as u64);
    }
    if let Some(m) = field("memory_mb") {
        config.memory_mb = m
            .parse()
            .map_err(|_| format!("memory (MiB) must be a whole number, not {m:?}"))?;
    }
    if field("kind") == Some("http") {
        config.kind = FunctionKind::Http;
    }
    config.fs_write = field("fs_write") == Some("on");
    config.outbound_hosts = fields
        .get("outbound_hosts")
        .map_or("", String::as_str)
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    for line in fields.get("vars").map_or("", String::as_str).lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("variable line {line:?} is not KEY=value"))?;
        config.vars.insert(k.trim().to_string(), v.to_string());
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// What the rules page shows under the editor.
enum RulesOutcome<'a> {
    /// The stored rules (after a save, with its message).
    Saved(Option<String>),
    /// Rules that do not validate: the message.
    Invalid(String),
    /// A "try it" verdict: verdict, function, auth.
    Tried(cloudfn_protocol::rules::Verdict, &'a str, &'a str),
    /// A "try it" that could not run: why, function, auth.
    TryError(String, &'a str, &'a str),
}

/// The `auth` "try it" starts from: what the rules see for a user of another app (made by
/// the function the grant itself uses, so a rule written from it holds for real calls).
fn try_it_sample() -> String {
    let caller = cloudfn_invoke::AppCaller {
        appid: "wxB".into(),
        openid: Some("o1".into()),
        ..Default::default()
    };
    let auth = cloudfn_invoke::grant::rules_auth(&caller, &serde_json::json!({}));
    serde_json::to_string(&auth).expect("a JSON value serialises")
}

fn rules_page(
    c: &Console,
    cur: &Current,
    env: &str,
    text: &str,
    outcome: RulesOutcome<'_>,
) -> Response<Body> {
    let mut ctx = BTreeMap::<&str, Value>::new();
    let sample = try_it_sample();
    let (mut function, mut auth) = ("", sample.as_str());
    match outcome {
        RulesOutcome::Saved(done) => {
            ctx.insert("done", Value::from(done));
        }
        RulesOutcome::Invalid(message) => {
            ctx.insert("at", Value::from_serialize(error_position(text, &message)));
            ctx.insert("rules_error", Value::from(message));
        }
        RulesOutcome::Tried(verdict, f, a) => {
            ctx.insert(
                "verdict",
                context! { allowed => verdict.allowed, rule => verdict.rule, error => verdict.error },
            );
            (function, auth) = (f, a);
        }
        RulesOutcome::TryError(message, f, a) => {
            ctx.insert("try_error", Value::from(message));
            (function, auth) = (f, a);
        }
    }
    ctx.insert("csrf", Value::from(cur.csrf.as_str()));
    ctx.insert("nav", Value::from("overview"));
    ctx.insert("title", Value::from(format!("Rules of {env}")));
    ctx.insert("env", Value::from(env));
    ctx.insert("rules", Value::from(text));
    ctx.insert("try_function", Value::from(function));
    ctx.insert("try_auth", Value::from(auth));
    c.render(StatusCode::OK, "rules.html", Value::from_serialize(&ctx))
}

#[derive(Serialize)]
struct Row {
    request_id: String,
    started: String,
    function: String,
    version: Option<u32>,
    caller: Option<String>,
    source: String,
    ms: String,
    outcome: &'static str,
    errcode: i32,
    short: String,
}

pub(super) async fn activations(
    c: &Console,
    cur: &Current,
    query: &std::collections::HashMap<String, String>,
    self_url: &str,
) -> Result<Response<Body>, StoreError> {
    let store = c.host().store();
    let envs: Vec<String> = store.envs().await?.into_iter().map(|e| e.name).collect();
    let apps: Vec<String> = store.apps().await?.into_iter().map(|a| a.appid).collect();
    let q = |k: &str| query.get(k).map(String::as_str).filter(|v| !v.is_empty());
    // A value the page does not know is said, not dropped: a filter silently ignored shows
    // calls that do not match it as if they did.
    let mut unknown = Vec::new();
    let env = match q("env") {
        Some(e) if !envs.iter().any(|known| known == e) => {
            unknown.push(format!("no environment {e}"));
            None
        }
        Some(e) => Some(e.to_string()),
        None => envs.first().cloned(),
    };
    let outcome = q("outcome").and_then(|o| {
        let parsed = Outcome::parse(o);
        if parsed.is_none() {
            unknown.push(format!("outcome {o} is not one of ok, error, denied"));
        }
        parsed
    });
    // The page offers 15 min, 1 h and 1 day.
    let since_minutes = q("since").and_then(|m| {
        let parsed = m
            .parse::<i64>()
            .ok()
            .filter(|m| (1..=7 * 24 * 60).contains(m));
        if parsed.is_none() {
            unknown.push(format!("since {m} is not a number of minutes up to a week"));
        }
        parsed
    });
    let before = q("before").and_then(|b| {
        let parsed = b.parse::<i64>().ok();
        if parsed.is_none() {
            unknown.push(format!("before {b} is not a record number"));
        }
        parsed
    });
    if let Some(a) = q("app").filter(|a| !apps.iter().any(|known| known == a)) {
        unknown.push(format!("no app {a}"));
    }
    let mut rows = Vec::new();
    let mut functions = Vec::new();
    let mut older = None;
    if let Some(env) = &env {
        functions = c
            .control()
            .functions_as(&Actor::Operator, env)
            .await?
            .into_iter()
            .map(|f| f.name)
            .collect();
        if let Some(f) = q("function").filter(|f| !functions.iter().any(|known| known == f)) {
            unknown.push(format!("no function {f} in {env}"));
        }
    }
    if let (Some(env), true) = (&env, unknown.is_empty()) {
        // The store filters, so a match older than the newest records is still found.
        let mut matching = c
            .control()
            .activations_as(
                &Actor::Operator,
                &ActivationQuery {
                    env: env.clone(),
                    name: q("function").map(str::to_string),
                    caller: q("app").map(str::to_string),
                    outcome,
                    since_ms: since_minutes.map(|m| now_secs() as i64 * 1000 - m * 60_000),
                    before,
                    limit: Some(ACTIVATIONS_SHOWN as u32 + 1),
                    ..Default::default()
                },
            )
            .await?;
        matching.sort_by_key(|r| std::cmp::Reverse(r.seq));
        if matching.len() > ACTIVATIONS_SHOWN {
            matching.truncate(ACTIVATIONS_SHOWN);
            older = matching
                .last()
                .map(|r| with_param(self_url, "before", &r.seq.to_string()));
        }
        rows = matching
            .into_iter()
            .map(|r| Row {
                started: utc_ms(r.started_at_ms),
                ms: format!("{:.1}", r.duration_us as f64 / 1000.0),
                outcome: if r.errcode == 0 { "ok" } else { "failed" },
                short: r.errmsg.chars().take(100).collect(),
                request_id: r.request_id,
                function: r.function,
                version: r.version,
                caller: r.caller_appid,
                source: r.source,
                errcode: r.errcode,
            })
            .collect();
    }
    let filters = context! {
        function => q("function").unwrap_or(""), app => q("app").unwrap_or(""),
        outcome => q("outcome").unwrap_or(""), since => q("since").unwrap_or(""),
        // An older page stands still: new calls are on the first one.
        tail => q("tail").is_some() && before.is_none(),
    };
    let (status, error) = if unknown.is_empty() {
        (StatusCode::OK, None)
    } else {
        (
            StatusCode::BAD_REQUEST,
            Some(format!("Unknown filter: {}.", unknown.join("; "))),
        )
    };
    Ok(c.render(
        status,
        "activations.html",
        context! {
            csrf => &cur.csrf, nav => "activations", title => "Activations", envs => envs,
            env => env, apps => apps, functions => functions, q => filters, records => rows,
            older => older, newest => before.map(|_| with_param(self_url, "before", "")),
            self_url => self_url, error => error, per_page => ACTIVATIONS_SHOWN,
        },
    ))
}

/// `url` (a path and query) with its query parameter `key` set to `value`, or removed
/// when `value` is empty.
fn with_param(url: &str, key: &str, value: &str) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k != key {
            out.append_pair(&k, &v);
        }
    }
    if !value.is_empty() {
        out.append_pair(key, value);
    }
    let query = out.finish();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

fn utc_ms(ms: i64) -> String {
    format!("{}.{:03}", utc(ms.div_euclid(1000)), ms.rem_euclid(1000))
}

pub(super) async fn activation(
    c: &Console,
    cur: &Current,
    env: &str,
    request_id: &str,
) -> Result<Response<Body>, StoreError> {
    let records = c
        .control()
        .activations_as(
            &Actor::Operator,
            &ActivationQuery {
                env: env.to_string(),
                request_id: Some(request_id.to_string()),
                limit: Some(1),
                ..Default::default()
            },
        )
        .await?;
    let Some(r) = records.into_iter().next() else {
        return Ok(c.page_error(
            cur,
            StatusCode::NOT_FOUND,
            &format!(
                "no record of call {request_id} in {env} (records are kept up to the retention)"
            ),
        ));
    };
    let logs: Vec<_> = r
        .logs
        .iter()
        .map(|l| context! { tag => l.tag(), message => &l.message })
        .collect();
    Ok(c.render(
        StatusCode::OK,
        "activation.html",
        context! {
            csrf => &cur.csrf, nav => "activations", title => format!("Call {request_id}"),
            started => utc_ms(r.started_at_ms), ms => format!("{:.1}", r.duration_us as f64 / 1000.0),
            logs => logs, r => Value::from_serialize(&r),
        },
    ))
}

#[derive(Serialize)]
struct EnvCharts {
    env: String,
    calls: u64,
    errors: u64,
    rate: String,
    error_rate: String,
    latency: String,
}

/// The metrics page's window unless one is asked for: the shortest holding all of the day's
/// calls (`calls` counts them in a window), so recent traffic fills the chart instead of
/// being a sliver at its right edge; an hour when there were none.
fn opening_window(calls: impl Fn(Window) -> u64) -> Window {
    let day = calls(Window::Day);
    if day == 0 {
        return Window::Hour;
    }
    [Window::FiveMinutes, Window::Hour]
        .into_iter()
        .find(|w| calls(*w) == day)
        .unwrap_or(Window::Day)
}
pub(super) async fn metrics(
    c: &Console,
    cur: &Current,
    query: &std::collections::HashMap<String, String>,
    self_url: &str,
) -> Result<Response<Body>, StoreError> {
    let envs: Vec<String> = c
        .host()
        .store()
        .envs()
        .await?
        .into_iter()
        .map(|e| e.name)
        .collect();
    let q = |k: &str| query.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let mut unknown = Vec::new();
    let env = q("env");
    if let Some(e) = env.filter(|e| !envs.iter().any(|known| known == e)) {
        unknown.push(format!("no environment {e}"));
    }
    let asked = q("window").and_then(|w| {
        let parsed = Window::parse(w);
        if parsed.is_none() {
            unknown.push(format!("window {w} is not one of 5m, 1h, 24h"));
        }
        parsed
    });
    let now = now_secs();
    let history = &c.host().metrics().history;
    let shown: Vec<&String> = envs
        .iter()
        .filter(|e| env.is_none_or(|only| only == *e))
        .collect();
    let window = asked.unwrap_or_else(|| {
        opening_window(|w| {
            shown
                .iter()
                .map(|e| totals(&history.window(e, now, w)).0)
                .sum()
        })
    });
    let minutes = window.minutes();
    let step = window.step_seconds();
    let charts: Vec<EnvCharts> = shown
        .iter()
        .map(|e| {
            let series = history.window(e, now, window);
            let (calls, errors) = totals(&series);
            let per_second = series
                .iter()
                .map(|p| Some(f64::from(p.calls) / step as f64))
                .collect();
            let error_rate = series
                .iter()
                .map(|p| (p.calls > 0).then(|| 100.0 * f64::from(p.errors) / f64::from(p.calls)))
                .collect();
            EnvCharts {
                env: e.to_string(),
                calls,
                errors,
                rate: line_chart(
                    "calls per second",
                    "/s",
                    minutes,
                    &[Series {
                        label: "calls/s",
                        color: "#2563eb",
                        values: per_second,
                    }],
                ),
                error_rate: line_chart(
                    "error rate",
                    "%",
                    minutes,
                    &[Series {
                        label: "errors %",
                        color: "#dc2626",
                        values: error_rate,
                    }],
                ),
                latency: line_chart(
                    "latency",
                    " ms",
                    minutes,
                    &[
                        Series {
                            label: "p50",
                            color: "#2563eb",
                            values: series.iter().map(|p| p.p50_ms).collect(),
                        },
                        Series {
                            label: "p99",
                            color: "#dc2626",
                            values: series.iter().map(|p| p.p99_ms).collect(),
                        },
                    ],
                ),
            }
        })
        .collect();
    let windows: Vec<_> = Window::ALL
        .iter()
        .map(|w| {
            context! {
                name => w.as_str(), current => *w == window,
                href => with_param(self_url, "window", w.as_str()),
            }
        })
        .collect();
    let (status, error, charts) = if unknown.is_empty() {
        (StatusCode::OK, None, charts)
    } else {
        let message = format!("Unknown filter: {}.", unknown.join("; "));
        (StatusCode::BAD_REQUEST, Some(message), Vec::new())
    };
    let (period, steps) = match window {
        Window::FiveMinutes => ("the last 5 minutes", "10-second steps"),
        Window::Hour => ("the last hour", "10-second steps"),
        Window::Day => ("the last 24 hours", "10-minute steps"),
    };
    Ok(c.render(
        status,
        "metrics.html",
        context! {
            csrf => &cur.csrf, nav => "metrics", title => "Metrics", envs => envs,
            env => env, charts => charts, self_url => self_url, windows => windows,
            window => window.as_str(), period => period, steps => steps, error => error,
        },
    ))
}

/// The shares between the page's app and one other app.
#[derive(Serialize)]
struct ShareGroup<'a> {
    app: &'a str,
    shares: Vec<&'a ShareRow>,
}

/// The rows of `shares`, each saying whether its env still has the `cloudbase_auth` every
/// sharee's call runs first (removed with `rm --force`, every such call fails with -501009).
async fn share_rows(
    c: &Console,
    shares: Vec<cloudfn_store::ShareInfo>,
) -> Result<Vec<ShareRow>, StoreError> {
    let mut guarded: BTreeMap<String, bool> = BTreeMap::new();
    let mut rows = Vec::with_capacity(shares.len());
    for s in shares {
        let has_auth = match guarded.get(&s.env) {
            Some(known) => *known,
            None => {
                let functions = c.host().store().functions(&s.env).await?;
                let has = functions
                    .iter()
                    .any(|f| f.name == cloudfn_store::AUTH_FUNCTION);
                guarded.insert(s.env.clone(), has);
                has
            }
        };
        rows.push(ShareRow {
            since: utc(s.created_at),
            functions: s.functions.encode(),
            env: s.env,
            owner_appid: s.owner_appid,
            to_appid: s.to_appid,
            perms: s.perms,
            broken: !has_auth,
        });
    }
    Ok(rows)
}

#[derive(Serialize)]
struct ShareRow {
    env: String,
    owner_appid: String,
    to_appid: String,
    perms: Vec<String>,
    functions: String,
    since: String,
    /// Its env has no `cloudbase_auth`: the share is there, but every call through it fails.
    broken: bool,
}

/// The sharing page for `app` (default the first app), with an error from a step.
pub(super) async fn sharing(
    c: &Console,
    cur: &Current,
    app: Option<&str>,
    done: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Result<Response<Body>, StoreError> {
    let store = c.host().store();
    let apps = store.apps().await?;
    let current = match app.filter(|a| !a.is_empty()) {
        Some(a) => Some(store.app(a).await?),
        None => apps.first().cloned(),
    };
    let mut ctx = context! {
        csrf => &cur.csrf, nav => "sharing", title => "Sharing", apps => &apps, done => done,
        error => error.as_ref().map(|e| &e.1), permissions => PERMISSIONS,
    };
    if let Some(app) = &current {
        let own_envs: Vec<String> = store
            .envs()
            .await?
            .into_iter()
            .filter(|e| e.owner_appid == app.appid)
            .map(|e| e.name)
            .collect();
        let peers: Vec<&str> = apps
            .iter()
            .filter(|a| a.appid != app.appid && a.subject.is_some() && a.subject == app.subject)
            .map(|a| a.appid.as_str())
            .collect();
        let rows = share_rows(c, store.shares(None, Some(&app.appid)).await?).await?;
        // Grouped by the other app, as the platform's console lists them.
        let group = |mine: bool| -> Vec<ShareGroup> {
            let mut groups: BTreeMap<&str, Vec<&ShareRow>> = BTreeMap::new();
            for r in &rows {
                match (mine, r.owner_appid == app.appid) {
                    (true, true) => groups.entry(&r.to_appid).or_default().push(r),
                    (false, false) => groups.entry(&r.owner_appid).or_default().push(r),
                    _ => {}
                }
            }
            groups
                .into_iter()
                .map(|(app, shares)| ShareGroup { app, shares })
                .collect()
        };
        ctx = context! {
            app => app, own_envs => own_envs, peers => peers, by_me => group(true),
            with_me => group(false), ..ctx
        };
    }
    let status = error.map_or(StatusCode::OK, |e| e.0);
    Ok(c.render(status, "sharing.html", ctx))
}

/// "Configure envs": the envs of `app` shared with `to`, each with its permissions and a
/// remove button, and a form to share one more (the seed's plus and minus).
pub(super) async fn configure(
    c: &Console,
    cur: &Current,
    app: &str,
    to: &str,
    done: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Result<Response<Body>, StoreError> {
    let store = c.host().store();
    store.app(app).await?;
    store.app(to).await?;
    let shares: Vec<ShareRow> = share_rows(c, store.shares(None, Some(app)).await?)
        .await?
        .into_iter()
        .filter(|s| s.owner_appid == app && s.to_appid == to)
        .collect();
    let unshared: Vec<String> = store
        .envs()
        .await?
        .into_iter()
        .filter(|e| e.owner_appid == app && !shares.iter().any(|s| s.env == e.name))
        .map(|e| e.name)
        .collect();
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.0);
    Ok(c.render(
        status,
        "configure.html",
        context! {
            csrf => &cur.csrf, nav => "sharing", title => "Configure envs", app => app, to => to,
            permissions => PERMISSIONS, shares => shares, unshared => unshared, done => done,
            error => error.map(|e| e.1),
        },
    ))
}

/// The confirmation before an app-level unbind (either side may).
pub(super) async fn confirm_unbind(
    c: &Console,
    cur: &Current,
    query: &std::collections::HashMap<String, String>,
) -> Result<Response<Body>, StoreError> {
    let get = |k: &str| query.get(k).map_or("", String::as_str);
    let (app, owner, to) = (get("app"), get("owner"), get("to"));
    let envs: Vec<String> = c
        .host()
        .store()
        .shares(None, Some(owner))
        .await?
        .into_iter()
        .filter(|s| s.owner_appid == owner && s.to_appid == to)
        .map(|s| s.env)
        .collect();
    let other = if app == owner { to } else { owner };
    Ok(c.render(
        StatusCode::OK,
        "confirm.html",
        context! {
            csrf => &cur.csrf, nav => "sharing", title => "Unbind",
            heading => format!("Unbind {owner} and {to}?"),
            message => format!(
                "Every share of {owner}'s envs with {to} ends ({}): {to} can no longer call \
                 into them in any way. {other} is told through its webhook, if it has one.",
                if envs.is_empty() { "none now".to_string() } else { envs.join(", ") }
            ),
            action => "/console/sharing/unbind",
            fields => vec![("app", app), ("owner", owner), ("to", to)],
            button => "Unbind",
            cancel => format!("/console/sharing?app={}", enc(app)),
        },
    ))
}

/// One step of the sharing flow, acting as the page's app: the store's checks decide.
pub(super) async fn sharing_step(
    c: &Console,
    cur: &Current,
    step: &str,
    form: &Form,
    htmx: bool,
) -> Response<Body> {
    let control = c.control();
    let app = form.get("app").unwrap_or("").to_string();
    let field = |k: &str| form.get(k).unwrap_or("").to_string();
    let result: Result<&str, StoreError> = match step {
        "switch" => {
            let on = form.get("on") == Some("on");
            control
                .set_sharing(&app, on)
                .await
                .map(|()| if on { "sharing-on" } else { "sharing-off" })
        }
        "share" => share(c, &app, form).await.map(|()| "shared"),
        "remove" => control
            .remove_share(&field("env"), &field("to"), Some(&app))
            .await
            .map(|()| "removed"),
        "unbind" => control
            .unbind(&field("owner"), &field("to"), Some(&app))
            .await
            .map(|_| "unbound"),
        _ => return c.page_error(cur, StatusCode::NOT_FOUND, "no such sharing step"),
    };
    // A step taken on the "configure envs" page goes back there.
    let configuring = form.get("back") == Some("configure");
    let to = field("to");
    match result {
        Ok(done) if configuring => redirect(
            htmx,
            &format!(
                "/console/sharing/configure?app={}&to={}&done={done}",
                enc(&app),
                enc(&to)
            ),
        ),
        Ok(done) => redirect(
            htmx,
            &format!("/console/sharing?app={}&done={done}", enc(&app)),
        ),
        Err(e) => {
            let error = Some((store_status(&e), e.to_string()));
            let page = if configuring {
                configure(c, cur, &app, &to, None, error).await
            } else {
                sharing(c, cur, Some(&app), None, error).await
            };
            page.unwrap_or_else(|e| c.page_error(cur, store_status(&e), &e.to_string()))
        }
    }
}

/// "Add share" (or "configure"): each picked env shared with the picked app, as the CLI's
/// `share add` would, one env at a time; the first refusal stops and is shown.
async fn share(c: &Console, app: &str, form: &Form) -> Result<(), StoreError> {
    let envs = form.all("env");
    if envs.is_empty() {
        return Err(StoreError::InvalidConfig(
            "pick at least one environment to share".into(),
        ));
    }
    let to = form.get("to").unwrap_or("");
    let perms = form.all("perm");
    let functions = SharedFunctions::parse(form.get("functions").unwrap_or("*").trim())?;
    for env in envs {
        c.control()
            .add_share(&env, to, &perms, functions.clone(), Some(app))
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_open_on_the_shortest_window_holding_the_days_calls() {
        let counts = |five: u64, hour: u64, day: u64| {
            move |w: Window| match w {
                Window::FiveMinutes => five,
                Window::Hour => hour,
                Window::Day => day,
            }
        };
        assert_eq!(opening_window(counts(3, 3, 3)), Window::FiveMinutes);
        assert_eq!(opening_window(counts(0, 7, 7)), Window::Hour);
        assert_eq!(opening_window(counts(1, 7, 7)), Window::Hour);
        assert_eq!(opening_window(counts(0, 0, 9)), Window::Day);
        assert_eq!(opening_window(counts(2, 5, 9)), Window::Day);
        assert_eq!(opening_window(counts(0, 0, 0)), Window::Hour);
    }

    #[test]
    fn try_it_starts_from_what_real_calls_carry() {
        let sample: serde_json::Value = serde_json::from_str(&try_it_sample()).unwrap();
        // A client's call with a user is WECHAT (not WECHAT-OPEN, which denied real users a
        // rule written from the sample).
        assert_eq!(sample["loginType"], "WECHAT");
        assert_eq!(sample["appid"], "wxB");
        assert_eq!(sample["openid"], "o1");
        assert_eq!(sample["custom"], serde_json::json!({}));
    }

    #[test]
    fn the_deploy_form_reads_like_the_cli() {
        let mut f = BTreeMap::new();
        f.insert("vars".into(), "A=1\nB = two=2\n".into());
        f.insert("timeout".into(), " 2.5 ".into());
        let c = deploy_config(&f).unwrap();
        assert_eq!(c.timeout_ms, Some(2500));
        f.insert("timeout".into(), "0".into());
        assert!(deploy_config(&f).unwrap_err().contains("seconds"));
        f.insert("timeout".into(), "0.5".into());
        assert_eq!(c.vars["B"], " two=2");
        assert!(!c.fs_write && c.outbound_hosts.is_empty());
        f.insert("fs_write".into(), "on".into());
        f.insert(
            "outbound_hosts".into(),
            "api.example.com, 127.0.0.1:9000".into(),
        );
        let c = deploy_config(&f).unwrap();
        assert!(c.fs_write);
        assert_eq!(c.outbound_hosts, ["api.example.com", "127.0.0.1:9000"]);
        f.insert("outbound_hosts".into(), "http://x/".into());
        assert!(
            deploy_config(&f).is_err(),
            "validated as the CLI's --allow-host"
        );
        f.remove("outbound_hosts");
        f.insert("memory_mb".into(), "lots".into());
        assert!(deploy_config(&f).unwrap_err().contains("memory"));
        assert_eq!(utc(86_400 + 3_661), "1970-01-02 01:01:01");
        assert_eq!(
            (seconds(2500), seconds(3000), seconds(1)),
            ("2.5 s".into(), "3 s".into(), "0.001 s".into())
        );
    }
}
