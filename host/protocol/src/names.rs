//! The naming rules of functions, envs and apps (protocol §3), checked by every store and
//! entry point: names key caches, become directories and land in records.

/// A name that does not follow its pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} name {name:?}: {rule}")]
pub struct InvalidName {
    /// "function", "env" or "app".
    pub kind: &'static str,
    /// The rejected name.
    pub name: String,
    /// The rule it breaks.
    pub rule: &'static str,
}

/// A name made of ASCII letters, digits, '_' and '-', with a length range and rules for its
/// first and last characters; `rule` says it in words for the error.
fn check_name(
    kind: &'static str,
    name: &str,
    len: std::ops::RangeInclusive<usize>,
    first: fn(&u8) -> bool,
    last: fn(&u8) -> bool,
    rule: &'static str,
) -> Result<(), InvalidName> {
    let b = name.as_bytes();
    let ok = len.contains(&b.len())
        && b.first().is_some_and(first)
        && b.last().is_some_and(last)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidName {
            kind,
            name: name.to_string(),
            rule,
        })
    }
}

/// Checks a function name against protocol §3: `^[a-zA-Z][a-zA-Z0-9_-]{0,58}[a-zA-Z0-9]$`.
pub fn validate_function_name(name: &str) -> Result<(), InvalidName> {
    check_name(
        "function",
        name,
        2..=60,
        u8::is_ascii_alphabetic,
        u8::is_ascii_alphanumeric,
        "2-60 characters: a letter first, then letters, digits, '_' or '-', \
         ending with a letter or digit",
    )
}

/// Checks an env id: 2-64 characters of letters, digits, '-' and '_', starting with a letter
/// or digit (e.g. `prod-01`, `test-f96b31`); it names a directory, so nothing else is allowed.
pub fn validate_env_name(name: &str) -> Result<(), InvalidName> {
    check_name(
        "env",
        name,
        2..=64,
        u8::is_ascii_alphanumeric,
        |_| true,
        "2-64 characters: letters, digits, '-' or '_', starting with a letter or digit",
    )
}

/// Checks an appid: 2-64 letters, digits, '_' or '-' (e.g. `wx8f3a…`, `tt12…`).
pub fn validate_appid(appid: &str) -> Result<(), InvalidName> {
    check_name(
        "app",
        appid,
        2..=64,
        |_| true,
        |_| true,
        "2-64 characters: letters, digits, '-' or '_'",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_follow_protocol_pattern() {
        for ok in [
            "ab",
            "echo",
            "cloudbase_auth",
            "users-add2",
            &"a".repeat(60),
        ] {
            assert!(validate_function_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "1abc",
            "_abc",
            "abc_",
            "ab.c",
            "a b",
            "../x",
            &"a".repeat(61),
        ] {
            assert!(validate_function_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names_cannot_escape_the_data_dir() {
        for bad in ["..", "a/b", ".hidden", "a", "é1"] {
            assert!(validate_env_name(bad).is_err(), "{bad}");
        }
        assert!(validate_env_name("prod-01").is_ok());
    }
}
