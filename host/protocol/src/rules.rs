//! Security rules for functions (protocol §6): `{"*": {"invoke": RULE}, "fn": {"invoke": RULE}}`,
//! RULE being `true`, `false` or a CEL expression over `auth` (`auth.appid`, `auth.openid`,
//! `auth.unionid`, `auth.loginType`, `auth.custom.*`). An exact function name beats `*`. CEL's
//! error-absorbing `&&`/`||` give the platform's four forms their platform meaning, e.g.
//! `auth.loginType != 'ANONYMOUS' && auth != null` is false, not an error, when `auth` is null.

use serde_json::Value;
use std::collections::HashMap;

/// The rules an env has until it sets its own: any authenticated caller may invoke.
pub const DEFAULT_RULES: &str = r#"{"*": {"invoke": "auth != null"}}"#;

/// One compiled rule.
pub struct Rule {
    source: String,
    program: cel::Program,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

/// An env's compiled rules.
#[derive(Debug)]
pub struct Rules {
    default: Rule,
    functions: HashMap<String, Rule>,
}

/// What a rule said, and which rule it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the call may go on.
    pub allowed: bool,
    /// The entry that decided (`*` or a function name) and its expression.
    pub rule: String,
    /// Why an evaluation failed (a failure denies).
    pub error: Option<String>,
}

fn compile(entry: &str, rule: &Value) -> Result<Rule, String> {
    let source = match rule {
        Value::Bool(b) => b.to_string(),
        Value::String(s) if !s.trim().is_empty() => s.clone(),
        other => {
            return Err(format!(
                "`{entry}`.invoke must be true, false or an expression string, not {other}"
            ));
        }
    };
    let program = cel::Program::compile(&source)
        .map_err(|e| format!("`{entry}`.invoke does not compile: {e}"))?;
    Ok(Rule { source, program })
}

impl Rules {
    /// Parses and compiles rules; the error names the entry and, for an expression, the line
    /// and column where it fails to parse.
    pub fn parse(json: &str) -> Result<Rules, String> {
        let value: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(entries) = value else {
            return Err(
                "the rules must be a JSON object of function name → {\"invoke\": RULE}".into(),
            );
        };
        let mut default = None;
        let mut functions = HashMap::new();
        for (entry, body) in &entries {
            if entry != "*" {
                crate::names::validate_function_name(entry).map_err(|e| e.to_string())?;
            }
            let Value::Object(body) = body else {
                return Err(format!(
                    "`{entry}` must be an object like {{\"invoke\": RULE}}"
                ));
            };
            if let Some(key) = body.keys().find(|k| *k != "invoke") {
                return Err(format!(
                    "`{entry}` has an unknown key `{key}` (only `invoke` is supported)"
                ));
            }
            let rule = body
                .get("invoke")
                .ok_or_else(|| format!("`{entry}` has no `invoke` rule"))?;
            let rule = compile(entry, rule)?;
            if entry == "*" {
                default = Some(rule);
            } else {
                functions.insert(entry.clone(), rule);
            }
        }
        Ok(Rules {
            default: default.ok_or("the `*` entry is required")?,
            functions,
        })
    }

    /// The default rules.
    pub fn default_rules() -> Rules {
        Rules::parse(DEFAULT_RULES).expect("the default rules compile")
    }

    /// Rules that deny every call: what an env gets if its stored rules no longer compile.
    pub fn deny_all() -> Rules {
        Rules::parse(r#"{"*": {"invoke": false}}"#).expect("constant rules compile")
    }

    /// Evaluates the rule for `function` with `auth` (null for no caller).
    pub fn check(&self, function: &str, auth: &Value) -> Verdict {
        let (entry, rule) = match self.functions.get(function) {
            Some(rule) => (function, rule),
            None => ("*", &self.default),
        };
        // The standard library is built once per process: building it per check cost more
        // than the rest of a call.
        static STDLIB: std::sync::OnceLock<std::sync::Arc<cel::Env>> = std::sync::OnceLock::new();
        let env = STDLIB.get_or_init(|| std::sync::Arc::new(cel::Env::stdlib()));
        let mut ctx = cel::Context::with_env(env.clone());
        let rule_text = format!("{entry}: {}", rule.source);
        if let Err(e) = ctx.add_variable("auth", auth) {
            return Verdict {
                allowed: false,
                rule: rule_text,
                error: Some(format!("auth cannot be evaluated: {e}")),
            };
        }
        match rule.program.execute(&ctx) {
            Ok(cel::Value::Bool(allowed)) => Verdict {
                allowed,
                rule: rule_text,
                error: None,
            },
            Ok(other) => Verdict {
                allowed: false,
                rule: rule_text,
                error: Some(format!("the rule gave {other:?}, not a boolean")),
            },
            Err(e) => Verdict {
                allowed: false,
                rule: rule_text,
                error: Some(e.to_string()),
            },
        }
    }
}

/// Where in `text` the error `message` of [`Rules::parse`] on it points, as (line, column),
/// both from 1, for an editor to show: a JSON error says it itself; an expression's error says
/// where in the expression, which is found in the text as the entry's string literal. Kept
/// beside the messages it reads, so the two change together.
pub fn error_position(text: &str, message: &str) -> Option<(usize, usize)> {
    let number_after = |s: &str, key: &str| -> Option<usize> {
        let rest = &s[s.find(key)? + key.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    if message.starts_with("not JSON") {
        return Some((
            number_after(message, " line ")?,
            number_after(message, " column ")?,
        ));
    }
    // "`ENTRY`.invoke does not compile: ... <input>:LINE:COL ..."
    let entry = message.strip_prefix('`')?.split('`').next()?;
    let pos = &message[message.find("<input>:")? + "<input>:".len()..];
    let mut parts = pos.split(':');
    let (expr_line, expr_col): (usize, usize) = (
        parts.next()?.parse().ok()?,
        parts
            .next()?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()?,
    );
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let expr = value.get(entry)?.get("invoke")?.as_str()?;
    let literal = serde_json::to_string(expr).ok()?;
    let key = serde_json::to_string(entry).ok()?;
    let from = text.find(&key)?;
    // Where the expression starts: just after the literal's opening quote.
    let start = from + text[from..].find(&literal)? + 1;
    // The reported spot counts the expression's own characters; in the text an escape
    // (`\"`, `\n`, `\u0041`) is several characters for one of them. Walk the literal.
    let mut decoded = (1, 1);
    let mut raw = text[start..].chars();
    let mut offset = 0;
    while decoded < (expr_line, expr_col) {
        let c = raw.next()?;
        offset += 1;
        let ch = if c == '\\' {
            let e = raw.next()?;
            offset += 1;
            if e == 'u' {
                for _ in 0..4 {
                    raw.next()?;
                    offset += 1;
                }
            }
            if e == 'n' { '\n' } else { 'x' }
        } else {
            c
        };
        decoded = if ch == '\n' {
            (decoded.0 + 1, 1)
        } else {
            (decoded.0, decoded.1 + 1)
        };
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, col + offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn auth(login: &str, custom: Value) -> Value {
        json!({"appid":"wxB","openid":"o1","unionid":null,"loginType":login,"custom":custom})
    }

    #[test]
    fn rules_errors_are_placed_in_the_editor_text() {
        let text = "{\n  \"*\": {\"invoke\": \"auth != null &&\"}\n}";
        let message = Rules::parse(text).unwrap_err();
        // The expression starts at column 20, after `  "*": {"invoke": "`; CEL reports the end
        // of input, its 16th character.
        assert_eq!(error_position(text, &message), Some((2, 35)), "{message}");
        // An escape before the spot is one character of the expression, several of the text.
        let text = r#"{"*": {"invoke": "auth.x == \"a\" &&"}}"#;
        let message = Rules::parse(text).unwrap_err();
        // (the expression starts at column 19 and has 16 characters, 18 in the text).
        assert_eq!(
            error_position(text, &message),
            Some((1, 19 + 18)),
            "{message}"
        );
        let message = Rules::parse("{\n  \"*\": \n}").unwrap_err();
        assert_eq!(
            error_position("{\n  \"*\": \n}", &message),
            Some((3, 1)),
            "{message}"
        );
    }

    #[test]
    fn the_four_platform_forms_keep_their_meaning() {
        let cases = [
            ("true", [true, true, true]),
            ("false", [false, false, false]),
            ("\"auth != null\"", [true, true, false]),
            (
                "\"auth.loginType != 'ANONYMOUS' && auth != null\"",
                [true, false, false],
            ),
        ];
        for (rule, want) in cases {
            let rules = Rules::parse(&format!(r#"{{"*": {{"invoke": {rule}}}}}"#)).unwrap();
            let got = [
                rules.check("f", &auth("WECHAT", json!({}))).allowed,
                rules.check("f", &auth("ANONYMOUS", json!({}))).allowed,
                rules.check("f", &Value::Null).allowed,
            ];
            assert_eq!(got, want, "{rule}");
        }
    }

    #[test]
    fn custom_claims_and_exact_names_beat_the_default() {
        let rules = Rules::parse(
            r#"{"*": {"invoke": false},
                "users_add": {"invoke": "auth.custom.role == 'partner' && auth.appid == 'wxB'"}}"#,
        )
        .unwrap();
        assert!(
            rules
                .check("users_add", &auth("WECHAT", json!({"role":"partner"})))
                .allowed
        );
        assert!(
            !rules
                .check("users_add", &auth("WECHAT", json!({"role":"guest"})))
                .allowed
        );
        // A missing claim is an evaluation error: denied, with the reason.
        let v = rules.check("users_add", &auth("WECHAT", json!({})));
        assert!(!v.allowed && v.error.is_some(), "{v:?}");
        assert!(
            !rules
                .check("echo", &auth("WECHAT", json!({"role":"partner"})))
                .allowed
        );
    }

    #[test]
    fn invalid_rules_say_what_and_where() {
        let err = |json: &str| Rules::parse(json).unwrap_err();
        assert!(err(r#"{"echo": {"invoke": true}}"#).contains("`*` entry is required"));
        assert!(err(r#"{"*": {}}"#).contains("`*` has no `invoke` rule"));
        assert!(err(r#"{"*": {"invoke": true, "read": true}}"#).contains("unknown key `read`"));
        assert!(err(r#"{"*": {"invoke": 3}}"#).contains("must be true, false or an expression"));
        let e = err(r#"{"*": {"invoke": "auth != null &&"}}"#);
        assert!(
            e.contains("does not compile") && e.contains("<input>:1:"),
            "{e}"
        );
        assert!(err("[1]").contains("JSON object"));
    }
}
