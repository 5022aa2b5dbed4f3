//! Errors of the model's own checks; the store wraps them in its `StoreError`.

/// A value the model refuses (a function's config, a share's functions, permissions), with
/// the reason; the store reports it as `StoreError::InvalidName` or `InvalidConfig`.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// A name does not follow its pattern.
    #[error(transparent)]
    Name(#[from] cloudfn_protocol::names::InvalidName),
    /// A configuration value is out of range.
    #[error("invalid config: {0}")]
    Config(String),
}

/// Why a token was refused, with the protocol errcode of each case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No such token (40014).
    #[error("invalid access_token")]
    Invalid,
    /// Past its lifetime (42001).
    #[error("access_token expired")]
    Expired,
    /// Replaced by a newer token more than the overlap ago (40001).
    #[error("access_token is invalid or not latest")]
    NotLatest,
}

impl TokenError {
    /// The protocol errcode.
    pub fn errcode(self) -> i32 {
        match self {
            TokenError::Invalid => 40014,
            TokenError::Expired => 42001,
            TokenError::NotLatest => 40001,
        }
    }
}
