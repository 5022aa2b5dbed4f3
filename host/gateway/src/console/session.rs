//! Console sessions: the admin token is exchanged once, at the login form, for a random
//! session id kept in an HttpOnly, SameSite=Strict cookie; each session has its own CSRF token,
//! which every form carries back. Sessions live in this host's memory: a restart (or another
//! host behind the same balancer) asks for the token again.

use cloudfn_store::secrets::{constant_time_eq, random_hex};
use dashmap::DashMap;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cloudfn_console";
/// The login form's CSRF cookie (the form has no session yet): double-submit.
pub const LOGIN_COOKIE: &str = "cloudfn_login";
/// Sessions kept at once; past it the oldest are dropped (each needs the admin token, so this
/// only bounds a leak, not an attack).
const MAX_SESSIONS: usize = 1_000;

struct Session {
    expires: Instant,
    csrf: String,
}

/// The live sessions.
pub struct Sessions {
    ttl: Duration,
    live: DashMap<String, Session>,
}

/// A request's session: its id and CSRF token.
#[derive(Clone)]
pub struct Current {
    /// The session id (the cookie's value).
    pub id: String,
    /// The token every form of this session must send back.
    pub csrf: String,
}

impl Sessions {
    /// Sessions lasting `ttl` from login.
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            ttl,
            live: DashMap::new(),
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session.
    pub fn start(&self) -> Current {
        let now = Instant::now();
        self.live.retain(|_, s| s.expires > now);
        if self.live.len() >= MAX_SESSIONS {
            let oldest = self
                .live
                .iter()
                .min_by_key(|s| s.expires)
                .map(|s| s.key().clone());
            if let Some(id) = oldest {
                self.live.remove(&id);
            }
        }
        let current = Current {
            id: random_hex(32),
            csrf: random_hex(32),
        };
        self.live.insert(
            current.id.clone(),
            Session {
                expires: now + self.ttl,
                csrf: current.csrf.clone(),
            },
        );
        current
    }

    /// The live session with id `id`; an expired one is forgotten.
    pub fn get(&self, id: &str) -> Option<Current> {
        let session = self.live.get(id)?;
        if session.expires <= Instant::now() {
            drop(session);
            self.live.remove(id);
            return None;
        }
        Some(Current {
            id: id.to_string(),
            csrf: session.csrf.clone(),
        })
    }

    /// Ends a session (logout).
    pub fn end(&self, id: &str) {
        self.live.remove(id);
    }
}

impl Current {
    /// Whether a form's CSRF field is this session's token.
    pub fn csrf_ok(&self, sent: Option<&str>) -> bool {
        sent.is_some_and(|s| constant_time_eq(s.as_bytes(), self.csrf.as_bytes()))
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value scoped to the console: HttpOnly, SameSite=Strict, for `max_age`
/// (zero: delete it).
pub fn set_cookie(name: &str, value: &str, max_age: Duration) -> String {
    format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}",
        max_age.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_expires_and_its_csrf_token_is_its_own() {
        let sessions = Sessions::new(Duration::from_millis(50));
        let s = sessions.start();
        let got = sessions.get(&s.id).expect("live");
        assert!(got.csrf_ok(Some(&s.csrf)));
        assert!(!got.csrf_ok(Some(&sessions.start().csrf)));
        assert!(!got.csrf_ok(None));
        std::thread::sleep(Duration::from_millis(60));
        assert!(sessions.get(&s.id).is_none());
        let other = sessions.start();
        sessions.end(&other.id);
        assert!(sessions.get(&other.id).is_none());
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut h = hyper::HeaderMap::new();
        h.append("cookie", "a=1; cloudfn_console=abc".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
