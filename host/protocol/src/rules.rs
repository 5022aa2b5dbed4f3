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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn auth(login: &str, custom: Value) -> Value {
        json!({"appid":"wxB","openid":"o1","unionid":null,"loginType":login,"custom":custom})
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
