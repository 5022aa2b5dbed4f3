//! The data model every store implements and every other crate speaks: environments,
//! functions and their versions, apps and their credentials, shares and rules, activation
//! records, and the in-memory snapshot of what the call path needs.

use crate::error::Invalid;
use crate::names::validate_function_name;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

/// Default time limit of a call (protocol §8: 3 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default time limit of an HTTP-API call (protocol §3: 5 s).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Default memory limit of a call.
pub const DEFAULT_MEMORY_MB: u32 = 256;
/// Largest memory limit a function may ask for (protocol §8).
pub const MAX_MEMORY_MB: u32 = 2048;
/// Longest time limit a function may ask for (protocol §8: 900 s on the newest platform).
pub const MAX_TIMEOUT_MS: u64 = 900_000;
/// Total size of a function's variables (SCF's environment-variable limit).
const MAX_VARS_BYTES: usize = 4096;

/// The name of the function that decides grants of a shared env.
pub const AUTH_FUNCTION: &str = "cloudbase_auth";

/// A function version's configuration, fixed when it is deployed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct FunctionConfig {
    /// Time limit of one call, in milliseconds; `None` takes the platform default for the
    /// call's path (3 s, 5 s for HTTP-API calls: protocol §3, §8).
    pub timeout_ms: Option<u64>,
    /// Memory limit of one call, in MiB.
    pub memory_mb: u32,
    /// Variables the function reads with `var(name)`.
    pub vars: BTreeMap<String, String>,
    /// Whether the env directory is writable for this function (read-only by default).
    pub fs_write: bool,
    /// What the component is: a cloud function (JSON event in, JSON result out) or an HTTP
    /// function (a `wasi:http/proxy` component behind the container gateways).
    pub kind: FunctionKind,
    /// Hosts the function may send HTTP requests to (`host` or `host:port`), whatever its
    /// kind; none by default, and outbound HTTP is refused for every host not named.
    pub outbound_hosts: Vec<String>,
}

impl FunctionConfig {
    /// A configuration a client sent (the admin API's `cloudfn-config`): like a stored one,
    /// but a field this version does not know is refused, naming it and the known ones, instead
    /// of being dropped (a misspelt `outbound_host` must not deploy a function that silently
    /// lacks it). Stored configs stay lenient, so an older binary still reads newer data.
    pub fn from_client_json(text: &str) -> Result<FunctionConfig, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let known = serde_json::to_value(FunctionConfig::default()).expect("a config serializes");
        if let (Some(sent), Some(known)) = (value.as_object(), known.as_object())
            && let Some(unknown) = sent.keys().find(|k| !known.contains_key(*k))
        {
            let names: Vec<&str> = known.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown field `{unknown}`, expected one of {}",
                names.join(", ")
            ));
        }
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}

/// What kind of component a function version is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    /// A cloud function: `cloudfn:function/handler`, called with a JSON event.
    #[default]
    Function,
    /// An HTTP function: `wasi:http/incoming-handler`, served behind the container gateways
    /// (WeChat callContainer, Douyin Cloud, Taobao cloud applications).
    Http,
}

impl FunctionKind {
    /// The name used on the command line, in listings and in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionKind::Function => "function",
            FunctionKind::Http => "http",
        }
    }
}

impl std::fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FunctionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "function" => Ok(FunctionKind::Function),
            "http" => Ok(FunctionKind::Http),
            other => Err(format!(
                "unknown kind {other:?}: a version is a `function` (cloud function) or `http` \
                 (wasi:http function)"
            )),
        }
    }
}

impl Default for FunctionConfig {
    fn default() -> Self {
        FunctionConfig {
            timeout_ms: None,
            memory_mb: DEFAULT_MEMORY_MB,
            vars: BTreeMap::new(),
            fs_write: false,
            kind: FunctionKind::Function,
            outbound_hosts: Vec::new(),
        }
    }
}

impl FunctionConfig {
    /// A default configuration changed by `f`: `FunctionConfig::with(|c| c.memory_mb = 64)`.
    pub fn with(f: impl FnOnce(&mut FunctionConfig)) -> Self {
        let mut c = FunctionConfig::default();
        f(&mut c);
        c
    }

    /// A default configuration with these variables.
    pub fn vars<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        FunctionConfig::with(|c| {
            c.vars = pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
    }

    /// Checks every value is within the platform's limits.
    pub fn validate(&self) -> Result<(), Invalid> {
        let bad = |msg: String| Err(Invalid::Config(msg));
        if let Some(ms) = self.timeout_ms
            && (ms == 0 || ms > MAX_TIMEOUT_MS)
        {
            return bad(format!(
                "timeout must be between 1 ms and {} s, got {ms} ms",
                MAX_TIMEOUT_MS / 1000
            ));
        }
        if !(1..=MAX_MEMORY_MB).contains(&self.memory_mb) {
            return bad(format!(
                "memory must be between 1 and {MAX_MEMORY_MB} MB, got {} MB",
                self.memory_mb
            ));
        }
        let mut total = 0;
        for (k, v) in &self.vars {
            let valid = k.len() <= 64
                && k.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return bad(format!(
                    "variable name {k:?} must match [A-Za-z_][A-Za-z0-9_]* (at most 64 characters)"
                ));
            }
            total += k.len() + v.len();
        }
        if total > MAX_VARS_BYTES {
            return bad(format!(
                "variables take {total} bytes, more than the {MAX_VARS_BYTES}-byte limit"
            ));
        }
        if self.outbound_hosts.len() > MAX_OUTBOUND_HOSTS {
            return bad(format!(
                "at most {MAX_OUTBOUND_HOSTS} outbound hosts, got {}",
                self.outbound_hosts.len()
            ));
        }
        for host in &self.outbound_hosts {
            if !valid_outbound_host(host) {
                return bad(format!(
                    "outbound host {host:?} must be a lower-case host name or `host:port` \
                     (no scheme, path or wildcard)"
                ));
            }
        }
        Ok(())
    }
}

/// Most outbound hosts one HTTP function may name.
const MAX_OUTBOUND_HOSTS: usize = 32;

/// `host` or `host:port`, lower-case: what an HTTP function's request authority is matched
/// against, exactly.
fn valid_outbound_host(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// One environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvInfo {
    /// Its id, e.g. `prod-01`.
    pub name: String,
    /// The app that owns it.
    pub owner_appid: String,
    /// Unix seconds.
    pub created_at: i64,
    /// How many functions it has.
    pub functions: u32,
}

/// One function and its active version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionInfo {
    /// The environment.
    pub env: String,
    /// The function's name.
    pub name: String,
    /// The version calls run.
    pub active_version: u32,
    /// How many versions are kept.
    pub versions: u32,
    /// Unix seconds of the last deploy or rollback.
    pub updated_at: i64,
    /// The active version's kind.
    #[serde(default)]
    pub kind: FunctionKind,
}

/// One immutable version of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The environment.
    pub env: String,
    /// The function's name.
    pub name: String,
    /// The version id (1, 2, …).
    pub version: u32,
    /// SHA-256 of the component, hex: its content address.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// Its configuration.
    pub config: FunctionConfig,
    /// Unix seconds.
    pub created_at: i64,
    /// Whether calls currently run this version.
    pub active: bool,
}

/// An app as listed (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    /// The appid.
    pub appid: String,
    /// The company ("subject") it belongs to.
    pub subject: Option<String>,
    /// Its server-SDK secretId, when it has credentials.
    pub secret_id: Option<String>,
    /// Whether it has an app secret for `/cgi-bin/token`.
    pub has_secret: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Whether its sharing switch is on (it may share its envs).
    #[serde(default)]
    pub sharing: bool,
}

/// Credentials shown once, when created or rotated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCredentials {
    /// The appid.
    pub appid: String,
    /// The app secret for `/cgi-bin/token` (32 hex characters).
    pub secret: String,
    /// The server SDK's secretId.
    pub secret_id: String,
    /// The server SDK's secretKey.
    pub secret_key: String,
}

/// How long an access token lives (protocol §2: `expires_in` 7200).
pub const TOKEN_TTL: Duration = Duration::from_secs(7200);
/// How long a replaced token keeps working (protocol §2: 5 minutes).
pub const TOKEN_OVERLAP: Duration = Duration::from_secs(300);

/// Token lifetimes; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct TokenPolicy {
    /// Lifetime of a new token.
    pub ttl: Duration,
    /// How long a replaced token stays valid.
    pub overlap: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            ttl: TOKEN_TTL,
            overlap: TOKEN_OVERLAP,
        }
    }
}

/// What the store keeps of one access token: enough to check it, not to rebuild it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// SHA-256 of the token, hex.
    pub token_sha256: String,
    /// The app it was issued to.
    pub appid: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds when a newer token replaced it.
    pub superseded_at: Option<i64>,
}

impl TokenRecord {
    /// The token's app at `now`, or why it is refused.
    pub fn check(&self, now: i64, policy: TokenPolicy) -> Result<&str, crate::error::TokenError> {
        if now >= self.expires_at {
            return Err(crate::error::TokenError::Expired);
        }
        if let Some(superseded) = self.superseded_at
            && now >= superseded + policy.overlap.as_secs() as i64
        {
            return Err(crate::error::TokenError::NotLatest);
        }
        Ok(&self.appid)
    }
}

/// Permissions a share can grant: calling its functions; listing them, their versions and the
/// records of the sharee's own calls; deploying, rolling back and removing them (never
/// `cloudbase_auth`, never the env's rules or shares).
pub const PERMISSIONS: &[&str] = &["functions:invoke", "functions:read", "functions:deploy"];

/// The permission to call a shared env's functions.
pub const PERM_INVOKE: &str = "functions:invoke";
/// The permission to list a shared env's functions, versions and own calls' records.
pub const PERM_READ: &str = "functions:read";
/// The permission to deploy, roll back and remove a shared env's functions.
pub const PERM_DEPLOY: &str = "functions:deploy";

/// Which functions a share covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SharedFunctions {
    /// Every function of the env (`*`).
    All,
    /// Only these.
    Only(Vec<String>),
}

impl SharedFunctions {
    /// Parses `*` or `a,b,c`.
    pub fn parse(s: &str) -> Result<SharedFunctions, Invalid> {
        if s.trim() == "*" {
            return Ok(SharedFunctions::All);
        }
        let names: Vec<String> = s
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return Err(Invalid::Config(
                "--functions must be `*` or a comma-separated list of function names".into(),
            ));
        }
        for n in &names {
            validate_function_name(n)?;
        }
        Ok(SharedFunctions::Only(names))
    }

    /// Whether `function` is covered.
    pub fn covers(&self, function: &str) -> bool {
        match self {
            SharedFunctions::All => true,
            SharedFunctions::Only(names) => names.iter().any(|n| n == function),
        }
    }

    /// `*` or `a,b,c`: the form [`SharedFunctions::parse`] reads.
    pub fn encode(&self) -> String {
        match self {
            SharedFunctions::All => "*".into(),
            SharedFunctions::Only(names) => names.join(","),
        }
    }
}

/// Checks a share's permissions are known and not empty.
pub fn validate_permissions(perms: &[String]) -> Result<(), Invalid> {
    if perms.is_empty() {
        return Err(Invalid::Config(format!(
            "a share needs at least one permission: {}",
            PERMISSIONS.join(", ")
        )));
    }
    if let Some(p) = perms.iter().find(|p| !PERMISSIONS.contains(&p.as_str())) {
        return Err(Invalid::Config(format!(
            "unknown permission {p:?}; known: {}",
            PERMISSIONS.join(", ")
        )));
    }
    Ok(())
}

/// One share: `owner`'s env `env` used by app `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareInfo {
    /// The shared environment.
    pub env: String,
    /// Its owner.
    pub owner_appid: String,
    /// The app it is shared with.
    pub to_appid: String,
    /// Granted permissions, e.g. `functions:invoke`.
    pub perms: Vec<String>,
    /// The functions covered.
    pub functions: SharedFunctions,
    /// Unix seconds.
    pub created_at: i64,
}

impl ShareInfo {
    /// Whether the share lets its app invoke `function`.
    pub fn permits_invoke(&self, function: &str) -> bool {
        self.permits(PERM_INVOKE, function)
    }

    /// Whether the share grants `perm` (one of [`PERMISSIONS`]) for `function`.
    pub fn permits(&self, perm: &str, function: &str) -> bool {
        self.has(perm) && self.functions.covers(function)
    }

    /// Whether the share grants `perm` at all.
    pub fn has(&self, perm: &str) -> bool {
        self.perms.iter().any(|p| p == perm)
    }
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
    /// The `log` interface.
    Log,
}

/// One line of a call's logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Where it came from.
    pub stream: LogStream,
    /// Its level, for `log` lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<Cow<'static, str>>,
    /// The text, without the line break.
    pub message: String,
}

impl LogLine {
    /// How the line is labelled when shown: its level, else its stream.
    pub fn tag(&self) -> &str {
        self.level.as_deref().unwrap_or(match self.stream {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Log => "log",
        })
    }
}

/// A grant decision, kept in the activation record and logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the call went on.
    pub allowed: bool,
    /// The step that decided: `share`, `cloudbase_auth` or `rules`.
    pub step: String,
    /// Why, in words.
    pub reason: String,
    /// The calling app.
    pub caller_appid: String,
    /// Reused from the decision cache rather than made for this call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
}

/// Records kept per env by default.
pub const DEFAULT_RETENTION: u64 = 10_000;

/// The most the activation records may take on disk by default (all envs together).
pub const DEFAULT_RECORDS_MAX_BYTES: u64 = 1 << 30;

/// One call's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    /// Order of insertion; `logs --follow` resumes after the last one seen.
    #[serde(default)]
    pub seq: i64,
    /// The call's id.
    pub request_id: String,
    /// The environment.
    pub env: String,
    /// The function.
    pub function: String,
    /// The version that ran, if one was found.
    pub version: Option<u32>,
    /// The calling app (FROM_APPID under sharing, else APPID), if known.
    pub caller_appid: Option<String>,
    /// SOURCE.
    pub source: String,
    /// Start, Unix milliseconds.
    pub started_at_ms: i64,
    /// Duration in microseconds.
    pub duration_us: i64,
    /// 0 on success, else the protocol errcode.
    pub errcode: i32,
    /// "ok" or the error message.
    pub errmsg: String,
    /// Peak linear memory in bytes.
    pub peak_memory: i64,
    /// The call's log lines.
    pub logs: Vec<LogLine>,
    /// For a call across apps: the grant decision (allowed or denied, at which step, why).
    #[serde(default)]
    pub decision: Option<Decision>,
}

/// Which records to list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActivationQuery {
    /// The environment.
    pub env: String,
    /// Only this function.
    pub name: Option<String>,
    /// Only records after this `seq` (for following).
    pub after: Option<i64>,
    /// Only records before this `seq` (for paging back past the newest `limit`).
    #[serde(default)]
    pub before: Option<i64>,
    /// At most this many, newest ones (default 100).
    pub limit: Option<u32>,
    /// Only calls made by this app (a sharee reads its own calls' records only).
    #[serde(default)]
    pub caller: Option<String>,
    /// Only the call with this request id (a call's detail).
    #[serde(default)]
    pub request_id: Option<String>,
    /// Only records with this outcome (the store filters, so the newest `limit` matching
    /// ones come back however many others there are).
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// Only calls started at or after this time (Unix milliseconds).
    #[serde(default)]
    pub since_ms: Option<i64>,
}

/// A call's outcome, as records are filtered by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// errcode 0.
    Ok,
    /// Any other errcode.
    Error,
    /// A grant refused (the record's decision says not allowed).
    Denied,
}

impl Outcome {
    /// Its name (`ok`, `error`, `denied`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Denied => "denied",
        }
    }

    /// The outcome a name stands for.
    pub fn parse(name: &str) -> Option<Outcome> {
        [Outcome::Ok, Outcome::Error, Outcome::Denied]
            .into_iter()
            .find(|o| o.as_str() == name)
    }
}

/// One management change, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, increasing.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// The app that acted (`--as`, `acting`), or `None` for the operator.
    pub acting: Option<String>,
    /// What was done: `deploy`, `rollback`, `remove`, `rules.set`, `env.create`,
    /// `app.create`, `app.rotate-secret`, `app.revoke-sessions`, `sharing.on`, `sharing.off`,
    /// `share.add`, `share.remove`; and mini-program users' `login` and `login.refused`.
    pub action: String,
    /// The env it concerned, if one.
    pub env: Option<String>,
    /// The function or app it concerned, if one.
    pub target: Option<String>,
    /// Details (a version, permissions).
    pub detail: String,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only entries of this env.
    pub env: Option<String>,
    /// Only entries this app made or that concern it.
    pub app: Option<String>,
    /// Only entries after this `seq`.
    pub after: Option<i64>,
    /// At most this many, newest ones (default 100).
    pub limit: Option<u32>,
}

/// Everything the call path reads, as one consistent read: envs, the active version of every
/// function, shares, rules, live tokens and server-SDK keys. The pipeline keeps it in memory and
/// reloads it when the change feed moves, so a call makes no database round trip.
#[derive(Debug, Clone, Default)]
pub struct StateSnapshot {
    /// Every environment.
    pub envs: Vec<EnvInfo>,
    /// The active version of every function.
    pub active: Vec<VersionInfo>,
    /// Every share.
    pub shares: Vec<ShareInfo>,
    /// (env, rules JSON) of the envs that set their own rules.
    pub rules: Vec<(String, String)>,
    /// Access tokens (expired ones too, until they are cleaned up).
    pub tokens: Vec<TokenRecord>,
    /// (secretId, appid, secretKey) of every app with server-SDK credentials.
    pub secret_keys: Vec<(String, String, String)>,
    /// (appid, session generation) of every app: a user session is good only under its
    /// app's current generation.
    pub session_gens: Vec<(String, u64)>,
}
