//! Errors of the store, each a case a caller matches on (the admin API maps them to HTTP
//! statuses, the pipeline to protocol errcodes).

pub use cloudfn_model::error::{Invalid, TokenError};

/// Why a store operation (env, deploy, rollback, removal, share, app) was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A name does not follow its pattern.
    #[error(transparent)]
    InvalidName(#[from] cloudfn_protocol::names::InvalidName),
    /// The environment does not exist.
    #[error("env not exists: {0} (create it with `cloudfn env create {0} --owner APPID`)")]
    EnvNotFound(String),
    /// The app does not exist.
    #[error("app not found: {0} (create it with `cloudfn app create {0}`)")]
    AppNotFound(String),
    /// The change breaks a sharing rule (who may share, with whom, what must exist first).
    #[error("{0}")]
    Refused(String),
    /// An app acting through the admin API or the CLI (`--as`) may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such share.
    #[error("env {env} is not shared with app {to}")]
    ShareNotFound {
        /// The environment.
        env: String,
        /// The app it is not shared with.
        to: String,
    },
    /// Security rules that do not validate.
    #[error("invalid security rules: {0}")]
    InvalidRules(String),
    /// The environment exists already.
    #[error("env {0} already exists")]
    EnvExists(String),
    /// The function does not exist in the environment.
    #[error("function not found: {name} in env {env}")]
    FunctionNotFound {
        /// The environment.
        env: String,
        /// The function.
        name: String,
    },
    /// The function exists but not at this version.
    #[error("function {name} in env {env} has no version {version}")]
    VersionNotFound {
        /// The environment.
        env: String,
        /// The function.
        name: String,
        /// The missing version.
        version: u32,
    },
    /// The uploaded file is not a usable cloud function.
    #[error("invalid function: {0}")]
    InvalidWasm(String),
    /// A configuration value is out of range.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] anyhow::Error),
}

/// Why a token could not be issued (protocol §2 errcodes).
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// 40013.
    #[error("invalid appid")]
    UnknownApp,
    /// 40125.
    #[error("invalid appsecret")]
    WrongSecret,
    /// -1.
    #[error("system error")]
    System(#[from] anyhow::Error),
}

impl IssueError {
    /// The protocol errcode.
    pub fn errcode(&self) -> i32 {
        match self {
            IssueError::UnknownApp => 40013,
            IssueError::WrongSecret => 40125,
            IssueError::System(_) => -1,
        }
    }
}

impl From<Invalid> for StoreError {
    fn from(e: Invalid) -> Self {
        match e {
            Invalid::Name(e) => StoreError::InvalidName(e),
            Invalid::Config(msg) => StoreError::InvalidConfig(msg),
        }
    }
}

impl From<StoreError> for IssueError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AppNotFound(_) => IssueError::UnknownApp,
            StoreError::Storage(e) => IssueError::System(e),
            other => IssueError::System(anyhow::Error::new(other)),
        }
    }
}
