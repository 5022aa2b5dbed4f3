//! The protocol errors of a call, each mapped to its errcode (protocol §3); every gateway
//! renders them in its own shape.

use cloudfn_store::StoreError;
use std::time::Duration;

/// Why an invocation failed. [`InvokeError::errcode`] gives the protocol code.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// A parameter is malformed: a bad function name, an event that is not JSON.
    #[error("parameter error: {0}")]
    InvalidParam(String),
    /// The environment does not exist.
    #[error("env not exists: {0}")]
    EnvNotFound(String),
    /// The function (or the requested version) does not exist in the environment.
    #[error("function not found: {name} in env {env}{}", version.map(|v| format!(" (version {v})")).unwrap_or_default())]
    FunctionNotFound {
        /// The environment searched.
        env: String,
        /// The function name asked for.
        name: String,
        /// The version asked for, when one was.
        version: Option<u32>,
    },
    /// The function is of the other kind: an HTTP function called with an event, or a cloud
    /// function through a container gateway.
    #[error("{name} in env {env} is {}", match kind {
        cloudfn_store::FunctionKind::Http => "an HTTP function: call it through a container gateway (callContainer, Douyin Cloud, Taobao)",
        cloudfn_store::FunctionKind::Function => "a cloud function, not an HTTP function: call it with callFunction",
    })]
    WrongKind {
        /// The environment.
        env: String,
        /// The function.
        name: String,
        /// What it is.
        kind: cloudfn_store::FunctionKind,
    },
    /// The function ran past its time limit.
    #[error("function {name} timed out after {} ms", limit.as_millis())]
    Timeout {
        /// The function.
        name: String,
        /// The limit it hit.
        limit: Duration,
    },
    /// The function tried to grow its memory past its limit.
    #[error("function {name} exceeded its memory limit of {limit_mb} MB")]
    MemoryLimit {
        /// The function.
        name: String,
        /// The configured limit.
        limit_mb: u32,
    },
    /// The function failed while running: a trap, a panic, an error it returned, or a result
    /// that is not JSON.
    #[error("function {name} failed: {message}")]
    Failed {
        /// The function.
        name: String,
        /// What went wrong, including the guest's last stderr line where it helps.
        message: String,
    },
    /// Function-to-function calls nested deeper than the host allows.
    #[error("function call depth limit of {0} exceeded")]
    DepthExceeded(u32),
    /// The env's concurrency cap is reached.
    #[error("too many concurrent calls in env {env} (limit {limit})")]
    TooBusy {
        /// The environment.
        env: String,
        /// Its cap.
        limit: usize,
    },
    /// `cloudbase_auth` denied the caller: its errCode and errMsg, passed back unchanged.
    #[error("{errmsg}")]
    Denied {
        /// cloudbase_auth's errCode (never 0).
        errcode: i32,
        /// cloudbase_auth's errMsg.
        errmsg: String,
    },
    /// The host has no room for another instance right now.
    #[error("the host is at capacity, try again: {0}")]
    Overloaded(String),
    /// The caller is not allowed to run this function.
    #[error("unauthorized operation: {0}")]
    Unauthorized(String),
    /// The env is not shared with the calling app at all. Like [`InvokeError::Unauthorized`]
    /// on the wire; apart so that such refusals are counted, not recorded per call (any token
    /// holder can make them, and records are kept per env).
    #[error("unauthorized operation: env {env} is not shared with app {appid}")]
    NotShared {
        /// The env.
        env: String,
        /// The calling app.
        appid: String,
    },
    /// Something went wrong in the host itself (storage, compilation of a stored artifact).
    /// Callers are told no more than that (the details name host paths); the activation
    /// record and the host's log have them.
    #[error("system error; the host's log has the details")]
    System(#[from] anyhow::Error),
}

impl InvokeError {
    /// The protocol errcode for this failure.
    pub fn errcode(&self) -> i32 {
        match self {
            InvokeError::InvalidParam(_) => -501007,
            InvokeError::EnvNotFound(_) => -501000,
            InvokeError::FunctionNotFound { .. } | InvokeError::WrongKind { .. } => -501009,
            InvokeError::Timeout { .. } => -501002,
            InvokeError::MemoryLimit { .. }
            | InvokeError::Failed { .. }
            | InvokeError::DepthExceeded(_) => -504002,
            InvokeError::Unauthorized(_) | InvokeError::NotShared { .. } => -501019,
            InvokeError::TooBusy { .. } | InvokeError::Overloaded(_) => -501004,
            InvokeError::Denied { errcode, .. } => *errcode,
            InvokeError::System(_) => -1,
        }
    }

    /// The protocol's error body: `{"errcode":N,"errmsg":"…"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "errcode": self.errcode(), "errmsg": self.to_string() })
    }
}

impl From<StoreError> for InvokeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::EnvNotFound(env) => InvokeError::EnvNotFound(env),
            StoreError::FunctionNotFound { env, name } => InvokeError::FunctionNotFound {
                env,
                name,
                version: None,
            },
            StoreError::VersionNotFound { env, name, version } => InvokeError::FunctionNotFound {
                env,
                name,
                version: Some(version),
            },
            StoreError::InvalidName(_)
            | StoreError::InvalidConfig(_)
            | StoreError::InvalidRules(_) => InvokeError::InvalidParam(e.to_string()),
            StoreError::Refused(_)
            | StoreError::Forbidden(_)
            | StoreError::ShareNotFound { .. } => InvokeError::Unauthorized(e.to_string()),
            StoreError::InvalidWasm(_) | StoreError::EnvExists(_) | StoreError::AppNotFound(_) => {
                InvokeError::System(anyhow::Error::new(e))
            }
            StoreError::Storage(e) => InvokeError::System(e),
        }
    }
}
