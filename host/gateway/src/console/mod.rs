//! The web console, on the admin listener under `/console`: the operator's pages for envs,
//! functions and versions (deploy, rollback), environment sharing (the seed's flow, acting as
//! one app at a time), security rules (editor and "try it"), activation records (filters, a
//! call's detail, a live tail) and per-env charts. Pages are rendered on the server from
//! [`minijinja`] templates and work with JavaScript off; htmx (served from the binary) only
//! adds the upload progress, live refresh and in-place results.
//!
//! Authority is the admin token's: the login form exchanges it for a session cookie
//! ([`session`]), every form carries the session's CSRF token, and every change goes through
//! the same `Host` methods, with the same checks and errors, as the admin API and the CLI.

mod charts;
mod pages;
mod routes;
pub mod session;

use crate::http::{Body, BodyError, read_body_within};
use bytes::Bytes;
use cloudfn_invoke::{Control, Host};
use cloudfn_store::secrets::{constant_time_eq, random_hex};
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use minijinja::Environment;
use session::{Current, LOGIN_COOKIE, SESSION_COOKIE, Sessions, cookie, set_cookie};
use std::sync::Arc;
use std::time::Duration;

/// How long a console session lasts by default.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// Largest login form: a CSRF token and the admin token fit many times over.
const MAX_LOGIN_BYTES: usize = 4 * 1024;

/// The login body bytes held at once: 2,048 logins of the largest size; past it a login is
/// refused (503) until others are read.
const LOGIN_BUDGET: usize = 2048 * MAX_LOGIN_BYTES;

/// Largest form body other than a deploy.
const MAX_FORM_BYTES: usize = 1024 * 1024;

/// The console's router ([`routes`]: every page, form, asset and the login, declared once).
pub(crate) fn router(console: Console) -> axum::Router {
    routes::routes(Arc::new(console))
}

/// The console.
pub struct Console {
    /// Every change a page makes goes through the control plane; what it reads, through its
    /// host.
    control: Control,
    token_sha256: String,
    /// The login forms' own body budget: sent before anyone is known, they take room from it,
    /// apart from the public listener's (whose anonymous callers must not lock the operator
    /// out) and bounded ([`LOGIN_BUDGET`]).
    bodies: crate::http::BodyBudget,
    sessions: Sessions,
    templates: Environment<'static>,
}

/// A parsed form: every `(name, value)` in order (checkbox groups repeat a name).
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    fn parse(bytes: &[u8]) -> Form {
        Form(form_urlencoded::parse(bytes).into_owned().collect())
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Headers every console response carries: nothing cached, no framing, scripts only from the
/// console itself.
fn secure(mut builder: hyper::http::response::Builder) -> hyper::http::response::Builder {
    for (k, v) in [
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        (
            "content-security-policy",
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'",
        ),
    ] {
        builder = builder.header(k, v);
    }
    builder
}

/// A `303 See Other` to `to`, or for an htmx request an `HX-Redirect` (an XHR would follow a
/// 303 silently and swap the new page into the old one).
pub(crate) fn redirect(htmx: bool, to: &str) -> Response<Body> {
    let builder = if htmx {
        secure(Response::builder().status(StatusCode::OK)).header("hx-redirect", to)
    } else {
        secure(Response::builder().status(StatusCode::SEE_OTHER)).header("location", to)
    };
    builder
        .body(Full::new(Bytes::new()))
        .expect("static response parts are valid")
}

fn asset(body: &'static [u8], content_type: &'static str) -> Response<Body> {
    Response::builder()
        .header("content-type", content_type)
        .header("cache-control", "public, max-age=3600")
        .header("x-content-type-options", "nosniff")
        .body(Full::new(Bytes::from_static(body)))
        .expect("static response parts are valid")
}

impl Console {
    /// The console of `host`, its login checked against the admin token's hash.
    pub fn new(host: Arc<Host>, token_sha256: String, session_ttl: Duration) -> Console {
        let mut templates = Environment::new();
        for (name, source) in pages::TEMPLATES {
            templates
                .add_template(name, source)
                .expect("the console's templates parse");
        }
        Console {
            control: Control::new(host),
            token_sha256,
            bodies: crate::http::BodyBudget::new(LOGIN_BUDGET, LOGIN_BUDGET),
            sessions: Sessions::new(session_ttl),
            templates,
        }
    }

    /// Renders template `name` with `ctx` as an HTML response.
    pub(crate) fn render(
        &self,
        status: StatusCode,
        name: &str,
        ctx: minijinja::Value,
    ) -> Response<Body> {
        let html = self
            .templates
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|e| {
                tracing::error!("console template {name}: {e:#}");
                let e = e.to_string().replace('&', "&amp;").replace('<', "&lt;");
                format!(
                    "<!doctype html><title>console error</title><p>template {name} failed: {e}</p>"
                )
            });
        secure(Response::builder().status(status))
            .header("content-type", "text/html; charset=utf-8")
            .body(Full::new(Bytes::from(html)))
            .expect("static response parts are valid")
    }

    pub(crate) fn csrf_refused(&self, current: &Current) -> Response<Body> {
        self.page_error(
            current,
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or not this session's: reload the page and try again",
        )
    }

    /// A page saying what went wrong.
    pub(crate) fn page_error(
        &self,
        current: &Current,
        status: StatusCode,
        message: &str,
    ) -> Response<Body> {
        let mut resp = self.render(
            status,
            "error.html",
            minijinja::context! { csrf => &current.csrf, error => message, title => "Error" },
        );
        // From an htmx request (a form swapping one part of its page), the error replaces the
        // page's main part instead: the part it was to swap is not on an error page.
        for (k, v) in [
            ("hx-retarget", "main"),
            ("hx-reselect", "main"),
            ("hx-reswap", "outerHTML"),
        ] {
            resp.headers_mut()
                .insert(k, hyper::header::HeaderValue::from_static(v));
        }
        resp
    }

    /// `GET /console/login` shows the form; `POST` checks the token and starts a session.
    async fn login(&self, req: axum::extract::Request) -> Response<Body> {
        if req.method() != Method::POST {
            let expired = req.uri().query().is_some_and(|q| q.contains("expired=1"));
            return self.login_form(
                StatusCode::OK,
                expired.then_some("Your session expired: sign in again."),
            );
        }
        let sent_cookie = cookie(req.headers(), LOGIN_COOKIE);
        // Anyone may send a login: its body is small, and held within the logins' own budget,
        // so a flood of slow logins cannot hold the host's memory.
        let (parts, body) = req.into_parts();
        let body =
            match read_body_within(&self.bodies, "login", &parts.headers, body, MAX_LOGIN_BYTES)
                .await
            {
                Ok((b, _permit)) => b,
                Err(e @ BodyError::Busy(_)) => {
                    return self.login_form(StatusCode::SERVICE_UNAVAILABLE, Some(&e.to_string()));
                }
                Err(e @ BodyError::TooLarge(_)) => {
                    return self.login_form(StatusCode::PAYLOAD_TOO_LARGE, Some(&e.to_string()));
                }
                Err(e) => return self.login_form(StatusCode::BAD_REQUEST, Some(&e.to_string())),
            };
        let form = Form::parse(&body);
        let csrf_ok = match (sent_cookie.as_deref(), form.get("csrf")) {
            (Some(c), Some(f)) => !c.is_empty() && constant_time_eq(c.as_bytes(), f.as_bytes()),
            _ => false,
        };
        if !csrf_ok {
            return self.login_form(
                StatusCode::FORBIDDEN,
                Some("the login form is stale or was not sent from this console (CSRF check failed): try again"),
            );
        }
        let token = form.get("token").unwrap_or("").trim();
        if !crate::admin_api::token_matches(token, &self.token_sha256) {
            return self.login_form(
                StatusCode::UNAUTHORIZED,
                Some("wrong admin token (the one `cloudfn serve` printed, or --admin-token)"),
            );
        }
        let session = self.sessions.start();
        let mut resp = redirect(false, "/console");
        let headers = resp.headers_mut();
        for c in [
            set_cookie(SESSION_COOKIE, &session.id, self.sessions.ttl()),
            set_cookie(LOGIN_COOKIE, "", Duration::ZERO),
        ] {
            headers.append(
                "set-cookie",
                c.parse().expect("a cookie is a valid header value"),
            );
        }
        resp
    }

    fn login_form(&self, status: StatusCode, error: Option<&str>) -> Response<Body> {
        let csrf = random_hex(16);
        let mut resp = self.render(
            status,
            "login.html",
            minijinja::context! { login_csrf => &csrf, error => error, title => "Sign in" },
        );
        resp.headers_mut().insert(
            "set-cookie",
            set_cookie(LOGIN_COOKIE, &csrf, Duration::from_secs(3600))
                .parse()
                .expect("a cookie is a valid header value"),
        );
        resp
    }

    pub(crate) fn host(&self) -> &Arc<Host> {
        self.control.host()
    }

    pub(crate) fn control(&self) -> &Control {
        &self.control
    }
}
