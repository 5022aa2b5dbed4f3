//! The console's routes, declared once: its assets and login open to all, every page and form
//! behind a session ([`Session`]: no session, a redirect to the login page), every form's CSRF
//! token checked before anything is done ([`SessionForm`]), what no route serves a page in the
//! console's own shape. The handlers only take a request apart; what each page loads and each
//! form does is `pages.rs`'s.

use super::session::{Current, SESSION_COOKIE, cookie, set_cookie};
use super::{Console, Form, MAX_FORM_BYTES, pages, redirect};
use crate::admin_api::store_status;
use crate::http::{Body, QueryMap, read_body};
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Path, State};
use axum::routing::{any, get, post};
use cloudfn_store::StoreError;
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use minijinja::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The console, as every handler takes it.
type ConsoleState = State<Arc<Console>>;

/// The console's router (its paths are the whole path, `/console/...`).
pub(super) fn routes(console: Arc<Console>) -> Router {
    let asset = |bytes: &'static [u8], content_type: &'static str| {
        get(move || async move { super::asset(bytes, content_type) })
    };
    Router::new()
        .route(
            "/console/static/htmx.min.js",
            asset(
                include_bytes!("../../assets/htmx.min.js"),
                "text/javascript",
            ),
        )
        .route(
            "/console/static/console.js",
            asset(include_bytes!("../../assets/console.js"), "text/javascript"),
        )
        .route(
            "/console/static/console.css",
            asset(include_bytes!("../../assets/console.css"), "text/css"),
        )
        .route("/console/login", any(login))
        .route("/console/logout", post(logout))
        .route("/console", get(overview))
        .route("/console/", get(overview))
        .route("/console/envs/{env}", get(env))
        .route("/console/envs/{env}/deploy", post(deploy))
        .route("/console/envs/{env}/functions/{name}", get(function))
        .route(
            "/console/envs/{env}/functions/{name}/rollback",
            get(confirm_rollback).post(rollback),
        )
        .route("/console/envs/{env}/rules", get(rules).post(save_rules))
        .route("/console/envs/{env}/rules/try", post(try_rules))
        .route("/console/envs/{env}/activations/{id}", get(activation))
        .route("/console/activations", get(activations))
        .route("/console/metrics", get(metrics))
        .route("/console/sharing", get(sharing))
        .route(
            "/console/sharing/configure",
            get(configure).post(|State(c): ConsoleState, f: SessionForm| async move {
                sharing_step(c, f, "configure").await
            }),
        )
        .route(
            "/console/sharing/unbind",
            get(confirm_unbind).post(|State(c): ConsoleState, f: SessionForm| async move {
                sharing_step(c, f, "unbind").await
            }),
        )
        .route(
            "/console/sharing/{step}",
            post(
                |State(c): ConsoleState, Params(step): Params<String>, f: SessionForm| async move {
                    match step {
                        Some(step) => sharing_step(c, f, &step).await,
                        None => no_page(&c, &f.cur),
                    }
                },
            ),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .with_state(console)
}

/// The signed-in operator's session, and whether htmx sent the request; without a session, a
/// redirect to the login page (saying the session ran out when a stale cookie came).
pub(super) struct Session {
    cur: Current,
    htmx: bool,
}

impl FromRequestParts<Arc<Console>> for Session {
    type Rejection = Response<Body>;

    async fn from_request_parts(
        parts: &mut Parts,
        c: &Arc<Console>,
    ) -> Result<Self, Response<Body>> {
        let htmx = parts.headers.contains_key("hx-request");
        let session = cookie(&parts.headers, SESSION_COOKIE);
        match session.as_deref().and_then(|id| c.sessions.get(id)) {
            Some(cur) => Ok(Session { cur, htmx }),
            None => Err(redirect(
                htmx,
                if session.is_some() {
                    "/console/login?expired=1"
                } else {
                    "/console/login"
                },
            )),
        }
    }
}

/// A page's request: the session, the query, and the page's own URL (for links that change
/// one filter).
pub(super) struct PageRequest {
    cur: Current,
    query: HashMap<String, String>,
    self_url: String,
}

impl FromRequestParts<Arc<Console>> for PageRequest {
    type Rejection = Response<Body>;

    async fn from_request_parts(
        parts: &mut Parts,
        c: &Arc<Console>,
    ) -> Result<Self, Response<Body>> {
        let Session { cur, .. } = Session::from_request_parts(parts, c).await?;
        let Ok(QueryMap(query)) = QueryMap::from_request_parts(parts, c).await;
        let self_url = parts
            .uri
            .path_and_query()
            .map_or("/console".to_string(), |p| p.to_string());
        Ok(PageRequest {
            cur,
            query,
            self_url,
        })
    }
}

/// A form sent in a session, its CSRF token the session's: read (within
/// [`MAX_FORM_BYTES`]) and checked before the handler does anything.
pub(super) struct SessionForm {
    cur: Current,
    htmx: bool,
    form: Form,
}

impl FromRequest<Arc<Console>> for SessionForm {
    type Rejection = Response<Body>;

    async fn from_request(
        req: axum::extract::Request,
        c: &Arc<Console>,
    ) -> Result<Self, Response<Body>> {
        let (mut parts, body) = req.into_parts();
        let Session { cur, htmx } = Session::from_request_parts(&mut parts, c).await?;
        let body = read_body(body, MAX_FORM_BYTES)
            .await
            .map_err(|e| c.page_error(&cur, StatusCode::PAYLOAD_TOO_LARGE, &e.to_string()))?;
        let form = Form::parse(&body);
        if !cur.csrf_ok(form.get("csrf")) {
            return Err(c.csrf_refused(&cur));
        }
        Ok(SessionForm { cur, htmx, form })
    }
}

/// A route's path parameters, or `None` when one does not decode (not UTF-8): taken before the
/// session is known, so a bad path must not answer before the session is checked; the handler
/// says "no such page" once it is.
pub(super) struct Params<T>(Option<T>);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Params(
            Path::<T>::from_request_parts(parts, state)
                .await
                .ok()
                .map(|Path(t)| t),
        ))
    }
}

/// No such page (a path that does not decode).
fn no_page(c: &Console, cur: &Current) -> Response<Body> {
    c.page_error(cur, StatusCode::NOT_FOUND, "no such console page")
}

/// A page, or the store's refusal as an error page.
fn page(c: &Console, cur: &Current, result: Result<Response<Body>, StoreError>) -> Response<Body> {
    result.unwrap_or_else(|e| c.page_error(cur, store_status(&e), &e.to_string()))
}

async fn login(State(c): ConsoleState, req: axum::extract::Request) -> Response<Body> {
    c.login(req).await
}

async fn logout(State(c): ConsoleState, f: SessionForm) -> Response<Body> {
    c.sessions.end(&f.cur.id);
    let mut resp = redirect(f.htmx, "/console/login");
    resp.headers_mut().insert(
        "set-cookie",
        set_cookie(SESSION_COOKIE, "", Duration::ZERO)
            .parse()
            .expect("a cookie is a valid header value"),
    );
    resp
}

/// A POST no form is sent to: read and CSRF-checked as every form is, then "no such form".
async fn no_form(c: &Arc<Console>, req: axum::extract::Request) -> Response<Body> {
    match SessionForm::from_request(req, c).await {
        Ok(f) => c.page_error(&f.cur, StatusCode::NOT_FOUND, "no such console form"),
        Err(refused) => refused,
    }
}

/// No route: for a signed-in operator, a page saying so (a form's CSRF token is checked
/// first, as for every form); a method other than GET or a form's POST is refused.
async fn no_route(State(c): ConsoleState, req: axum::extract::Request) -> Response<Body> {
    let method = req.method().clone();
    if method == Method::POST {
        return no_form(&c, req).await;
    }
    let (mut parts, _) = req.into_parts();
    let cur = match Session::from_request_parts(&mut parts, &c).await {
        Ok(s) => s.cur,
        Err(to_login) => return to_login,
    };
    if method == Method::GET {
        c.page_error(&cur, StatusCode::NOT_FOUND, "no such console page")
    } else {
        c.page_error(&cur, StatusCode::METHOD_NOT_ALLOWED, "use GET or a form")
    }
}

async fn overview(State(c): ConsoleState, p: PageRequest) -> Response<Body> {
    page(&c, &p.cur, pages::overview(&c, &p.cur).await)
}

async fn env(
    State(c): ConsoleState,
    p: PageRequest,
    Params(env): Params<String>,
) -> Response<Body> {
    let Some(env) = env else {
        return no_page(&c, &p.cur);
    };
    let done = pages::done_message(&p.query);
    let env_page = pages::env_page(&c, &p.cur, &env, done, None, &Value::UNDEFINED).await;
    page(&c, &p.cur, env_page)
}

async fn deploy(
    State(c): ConsoleState,
    Params(env): Params<String>,
    req: axum::extract::Request,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let Session { cur, htmx } = match Session::from_request_parts(&mut parts, &c).await {
        Ok(s) => s,
        Err(to_login) => return to_login,
    };
    let Some(env) = env else {
        return no_page(&c, &cur);
    };
    let content_type = crate::http::header(&parts.headers, "content-type").unwrap_or_default();
    if !content_type.starts_with("multipart/form-data") {
        // Not the deploy form's encoding: a form like any other, then no such form.
        return no_form(&c, axum::extract::Request::from_parts(parts, body)).await;
    }
    pages::deploy(&c, &cur, env, &content_type, body, htmx).await
}

async fn function(
    State(c): ConsoleState,
    p: PageRequest,
    Params(path): Params<(String, String)>,
) -> Response<Body> {
    let Some((env, name)) = path else {
        return no_page(&c, &p.cur);
    };
    let reveal = p.query.get("reveal").is_some_and(|v| v == "1");
    let done = pages::done_message(&p.query);
    let function = pages::function_page(&c, &p.cur, &env, &name, done, reveal).await;
    page(&c, &p.cur, function)
}

async fn confirm_rollback(
    State(c): ConsoleState,
    p: PageRequest,
    Params(path): Params<(String, String)>,
) -> Response<Body> {
    let Some((env, name)) = path else {
        return no_page(&c, &p.cur);
    };
    let confirm = pages::confirm_rollback(&c, &p.cur, &env, &name, p.query.get("to")).await;
    page(&c, &p.cur, confirm)
}

async fn rollback(
    State(c): ConsoleState,
    Params(path): Params<(String, String)>,
    f: SessionForm,
) -> Response<Body> {
    let Some((env, name)) = path else {
        return no_page(&c, &f.cur);
    };
    pages::rollback(&c, &f.cur, &env, &name, &f.form, f.htmx).await
}

async fn rules(
    State(c): ConsoleState,
    p: PageRequest,
    Params(env): Params<String>,
) -> Response<Body> {
    let Some(env) = env else {
        return no_page(&c, &p.cur);
    };
    let done = pages::done_message(&p.query);
    page(&c, &p.cur, pages::rules(&c, &p.cur, &env, done).await)
}

async fn save_rules(
    State(c): ConsoleState,
    Params(env): Params<String>,
    f: SessionForm,
) -> Response<Body> {
    let Some(env) = env else {
        return no_page(&c, &f.cur);
    };
    pages::save_rules(&c, &f.cur, &env, &f.form, f.htmx).await
}

async fn try_rules(
    State(c): ConsoleState,
    Params(env): Params<String>,
    f: SessionForm,
) -> Response<Body> {
    let Some(env) = env else {
        return no_page(&c, &f.cur);
    };
    pages::try_rules(&c, &f.cur, &env, &f.form)
}

async fn activation(
    State(c): ConsoleState,
    p: PageRequest,
    Params(path): Params<(String, String)>,
) -> Response<Body> {
    let Some((env, id)) = path else {
        return no_page(&c, &p.cur);
    };
    page(&c, &p.cur, pages::activation(&c, &p.cur, &env, &id).await)
}

async fn activations(State(c): ConsoleState, p: PageRequest) -> Response<Body> {
    let activations = pages::activations(&c, &p.cur, &p.query, &p.self_url).await;
    page(&c, &p.cur, activations)
}

async fn metrics(State(c): ConsoleState, p: PageRequest) -> Response<Body> {
    let metrics = pages::metrics(&c, &p.cur, &p.query, &p.self_url).await;
    page(&c, &p.cur, metrics)
}

async fn sharing(State(c): ConsoleState, p: PageRequest) -> Response<Body> {
    let app = p.query.get("app").map(String::as_str);
    let done = pages::done_message(&p.query);
    page(
        &c,
        &p.cur,
        pages::sharing(&c, &p.cur, app, done, None).await,
    )
}

async fn configure(State(c): ConsoleState, p: PageRequest) -> Response<Body> {
    let get = |k: &str| p.query.get(k).map_or("", String::as_str);
    let done = pages::done_message(&p.query);
    let configure = pages::configure(&c, &p.cur, get("app"), get("to"), done, None).await;
    page(&c, &p.cur, configure)
}

async fn confirm_unbind(State(c): ConsoleState, p: PageRequest) -> Response<Body> {
    page(
        &c,
        &p.cur,
        pages::confirm_unbind(&c, &p.cur, &p.query).await,
    )
}

async fn sharing_step(c: Arc<Console>, f: SessionForm, step: &str) -> Response<Body> {
    pages::sharing_step(&c, &f.cur, step, &f.form, f.htmx).await
}
