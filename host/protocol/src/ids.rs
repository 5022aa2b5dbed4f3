//! User ids as a caller's server names them (`X-WX-OPENID`, `X-WX-UNIONID`): they key caches
//! and land in records and in functions' WXContext, so they are bounded and plain.

/// Longest id accepted.
pub const MAX_ID_LEN: usize = 128;

/// Reads a header's raw bytes as an id: `Ok(None)` when absent or empty, an error when it is
/// not 1 to [`MAX_ID_LEN`] ASCII letters, digits, `-` or `_` (a value that is not even text is
/// refused like any other bad id, never taken as absent, which would make the call anonymous).
pub fn user_id(raw: Option<&[u8]>) -> Result<Option<String>, String> {
    match raw.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v)
            if v.len() <= MAX_ID_LEN
                && v.iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-') =>
        {
            Ok(Some(String::from_utf8_lossy(v).into_owned()))
        }
        Some(_) => Err(format!(
            "must be at most {MAX_ID_LEN} letters, digits, '-' or '_'"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_pass_and_anything_else_is_refused() {
        assert_eq!(user_id(None), Ok(None));
        assert_eq!(user_id(Some(b"")), Ok(None));
        assert_eq!(user_id(Some(b"o-Ab_9")), Ok(Some("o-Ab_9".into())));
        assert!(user_id(Some("ö".as_bytes())).is_err());
        assert!(user_id(Some(b"a b")).is_err());
        assert!(user_id(Some(&[b'a'; 129])).is_err());
    }
}
