//! One test suite, two stores: every test here runs against the SQLite store (a temp data dir)
//! and the PostgreSQL store (a fresh database in a private cluster this binary starts from the
//! system's PostgreSQL binaries). Both must
//! behave the same through the store traits: the same results, the same errors.

use cloudfn_store::postgres::testing::PgCluster;
use cloudfn_store::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Opens another handle on a fixture's state.
type Opener = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Arc<dyn Store>>>>>;

/// A store under test, and a second handle on the same state (another process's view: a
/// second data dir handle, or a second host on the same database).
struct Fixture {
    store: Arc<dyn Store>,
    open_again: Opener,
    _dir: tempfile::TempDir,
}

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

impl Fixture {
    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let open = move || -> Pin<Box<dyn Future<Output = Arc<dyn Store>>>> {
            let path = path.clone();
            Box::pin(async move {
                Arc::new(sqlite::SqliteStore::open(&path, 3).unwrap()) as Arc<dyn Store>
            })
        };
        Fixture {
            store: Arc::new(sqlite::SqliteStore::open(dir.path(), 3).unwrap()),
            open_again: Box::new(open),
            _dir: dir,
        }
    }

    async fn postgres() -> Fixture {
        let url = fresh_database();
        let open = move || -> Pin<Box<dyn Future<Output = Arc<dyn Store>>>> {
            let url = url.clone();
            Box::pin(async move {
                let config = StoreConfig {
                    url: Some(url),
                    token_key: Some(KEY.into()),
                    migrate: true,
                };
                open(&config, std::path::Path::new("/nonexistent"), 3, 0)
                    .await
                    .unwrap()
            })
        };
        Fixture {
            store: open().await,
            open_again: Box::new(open),
            _dir: tempfile::tempdir().unwrap(),
        }
    }
}

/// The cluster of this test binary, stopped when the binary exits.
static CLUSTER: OnceLock<PgCluster> = OnceLock::new();

extern "C" fn stop_cluster() {
    if let Some(cluster) = CLUSTER.get() {
        cluster.discard();
    }
}

/// A new, empty database.
fn fresh_database() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "suite_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let cluster = CLUSTER.get_or_init(|| {
        let cluster = PgCluster::start().expect("starting a private PostgreSQL");
        // SAFETY: registering a plain function to run at exit.
        unsafe { libc::atexit(stop_cluster) };
        cluster
    });
    cluster.create_db(&name).unwrap()
}

/// Each test, once per store.
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Fixture::sqlite()).await;
                }
            )*
        }
        mod postgres_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Fixture::postgres().await).await;
                }
            )*
        }
    };
}

both_stores!(
    catalog_versions_rollback_and_removal,
    apps_credentials_and_tokens,
    sessions_settings_and_sealed_secrets,
    sharing_rules_are_enforced,
    audit_log_filters,
    activation_records_are_queried_and_pruned,
    a_large_batch_of_records_is_written_whole,
    changes_reach_another_handle_within_a_second,
);

async fn catalog_versions_rollback_and_removal(f: Fixture) {
    let s = &f.store;
    s.create_env("prod", "wxA").await.unwrap();
    assert!(matches!(
        s.create_env("prod", "wxA").await,
        Err(StoreError::EnvExists(_))
    ));
    assert!(matches!(
        s.create_env("Prod", "wxC").await,
        Err(StoreError::EnvExists(e)) if e == "prod"
    ));
    assert!(matches!(
        s.create_env("bad name", "wxA").await,
        Err(StoreError::InvalidName(_))
    ));
    let h1 = s.put_blob(b"one").await.unwrap();
    let h2 = s.put_blob(b"two").await.unwrap();
    assert_eq!(s.put_blob(b"one").await.unwrap(), h1, "content-addressed");
    assert_eq!(s.blob(&h2).await.unwrap(), b"two");
    assert!(s.blob(&"0".repeat(64)).await.is_err());
    let http = FunctionConfig {
        kind: FunctionKind::Http,
        memory_mb: 64,
        ..Default::default()
    };
    assert_eq!(
        s.add_version("prod", "fn1", &h1, 3, &FunctionConfig::default())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.add_version("prod", "fn1", &h2, 3, &http).await.unwrap(),
        2
    );
    assert!(matches!(
        s.add_version("nope", "fn1", &h2, 3, &http).await,
        Err(StoreError::EnvNotFound(_))
    ));
    let active = s.resolve("prod", "fn1", None).await.unwrap();
    assert_eq!(
        (active.sha256.as_str(), active.config.memory_mb),
        (h2.as_str(), 64)
    );
    let listed = s.functions("prod").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].active_version, listed[0].versions, listed[0].kind),
        (2, 2, FunctionKind::Http)
    );
    s.rollback("prod", "fn1", 1).await.unwrap();
    assert_eq!(s.resolve("prod", "fn1", None).await.unwrap().sha256, h1);
    assert_eq!(s.resolve("prod", "fn1", Some(2)).await.unwrap().sha256, h2);
    assert!(matches!(
        s.rollback("prod", "fn1", 9).await,
        Err(StoreError::VersionNotFound { version: 9, .. })
    ));
    assert!(matches!(
        s.resolve("prod", "fn1", Some(9)).await,
        Err(StoreError::VersionNotFound { version: 9, .. })
    ));
    let versions = s.versions("prod", "fn1").await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.active, v.size))
            .collect::<Vec<_>>(),
        vec![(2, false, 3), (1, true, 3)]
    );
    let env = s.env("prod").await.unwrap();
    assert_eq!((env.owner_appid.as_str(), env.functions), ("wxA", 1));
    let snap = s.snapshot().await.unwrap();
    assert_eq!(snap.envs.len(), 1);
    assert_eq!(snap.active.len(), 1);
    assert_eq!(snap.active[0].version, 1);
    s.remove_function("prod", "fn1").await.unwrap();
    assert!(matches!(
        s.resolve("prod", "fn1", None).await,
        Err(StoreError::FunctionNotFound { .. })
    ));
    assert!(matches!(
        s.resolve("nope", "fn1", None).await,
        Err(StoreError::EnvNotFound(_))
    ));
    assert!(matches!(
        s.remove_function("prod", "fn1").await,
        Err(StoreError::FunctionNotFound { .. })
    ));
    // Components stay after their function goes: other versions may share them.
    assert_eq!(s.blob(&h1).await.unwrap(), b"one");
    // A new function of the same name starts again at version 1.
    assert_eq!(
        s.add_version("prod", "fn1", &h2, 3, &FunctionConfig::default())
            .await
            .unwrap(),
        1
    );
    // What was stored is there for another handle, and the env owner became an app.
    let again = (f.open_again)().await;
    assert_eq!(again.envs().await.unwrap().len(), 1);
    assert!(!again.app("wxA").await.unwrap().has_secret);
}

/// The app of `token`, as the call path checks it: through a snapshot.
async fn verify(s: &dyn Store, token: &str, policy: TokenPolicy) -> Result<String, TokenError> {
    let snap = s.snapshot().await.unwrap();
    let hash = secrets::hash_secret(token);
    match snap.tokens.iter().find(|t| t.token_sha256 == hash) {
        None => Err(TokenError::Invalid),
        Some(t) => t.check(fsutil::now(), policy).map(str::to_string),
    }
}

async fn apps_credentials_and_tokens(f: Fixture) {
    let s = f.store.as_ref();
    let creds = s.create_app("wxA", Some("Acme")).await.unwrap();
    assert!(matches!(
        s.create_app("wxA", None).await,
        Err(StoreError::InvalidConfig(_))
    ));
    assert!(matches!(
        s.check_secret("wxA", "nope").await,
        Err(IssueError::WrongSecret)
    ));
    assert!(matches!(
        s.check_secret("wxZ", "nope").await,
        Err(IssueError::UnknownApp)
    ));
    s.check_secret("wxA", &creds.secret).await.unwrap();
    let info = s.app("wxA").await.unwrap();
    assert_eq!(
        (
            info.subject.as_deref(),
            info.secret_id.as_deref(),
            info.has_secret
        ),
        (Some("Acme"), Some(creds.secret_id.as_str()), true)
    );
    assert!(matches!(
        s.app("wxZ").await,
        Err(StoreError::AppNotFound(_))
    ));
    let policy = TokenPolicy::default();
    let (t1, ttl) = s.issue_token("wxA", policy).await.unwrap();
    assert_eq!(ttl, 7200);
    assert_eq!(verify(s, &t1, policy).await, Ok("wxA".to_string()));
    // Another handle (another host) hands back the same current token.
    let again = (f.open_again)().await;
    assert_eq!(
        again.stable_token("wxA", false, policy).await.unwrap().0,
        t1
    );
    let (t2, _) = again.stable_token("wxA", true, policy).await.unwrap();
    assert_ne!(t1, t2);
    assert_eq!(verify(s, &t2, policy).await, Ok("wxA".to_string()));
    // The replaced token works during the overlap, not after.
    assert_eq!(verify(s, &t1, policy).await, Ok("wxA".to_string()));
    let no_overlap = TokenPolicy {
        overlap: Duration::ZERO,
        ..policy
    };
    assert_eq!(verify(s, &t1, no_overlap).await, Err(TokenError::NotLatest));
    assert_eq!(verify(s, "bogus", policy).await, Err(TokenError::Invalid));
    let snap = s.snapshot().await.unwrap();
    assert_eq!(
        snap.secret_keys,
        vec![(
            creds.secret_id.clone(),
            "wxA".into(),
            creds.secret_key.clone()
        )]
    );
    // Rotation ends the old secret and every token at once.
    let rotated = s.rotate_secret("wxA").await.unwrap();
    assert!(matches!(
        s.check_secret("wxA", &creds.secret).await,
        Err(IssueError::WrongSecret)
    ));
    s.check_secret("wxA", &rotated.secret).await.unwrap();
    assert_eq!(verify(s, &t2, policy).await, Err(TokenError::Invalid));
    assert!(matches!(
        s.rotate_secret("wxZ").await,
        Err(StoreError::AppNotFound(_))
    ));
    // An env owner without credentials gets them when registered.
    s.create_env("dev", "wxB").await.unwrap();
    assert!(!s.app("wxB").await.unwrap().has_secret);
    s.create_app("wxB", Some("Acme")).await.unwrap();
    assert!(s.app("wxB").await.unwrap().has_secret);
    assert_eq!(
        s.apps()
            .await
            .unwrap()
            .iter()
            .map(|a| a.appid.as_str())
            .collect::<Vec<_>>(),
        vec!["wxA", "wxB"]
    );
}

async fn sessions_settings_and_sealed_secrets(f: Fixture) {
    let s = &f.store;
    s.create_app("wxA", Some("Acme")).await.unwrap();
    assert_eq!(s.setting("admin").await.unwrap(), None);
    s.set_setting("admin", "h1").await.unwrap();
    s.set_setting("admin", "h2").await.unwrap();
    assert_eq!(s.setting("admin").await.unwrap().as_deref(), Some("h2"));
    assert_eq!(s.upstream_secret("wxA").await.unwrap(), None);
    s.set_upstream_secret("wxA", Some("up-secret"))
        .await
        .unwrap();
    assert_eq!(
        s.upstream_secret("wxA").await.unwrap().as_deref(),
        Some("up-secret")
    );
    // Another handle opens it: the key is the store's, not the process's.
    let again = (f.open_again)().await;
    assert_eq!(
        again.upstream_secret("wxA").await.unwrap().as_deref(),
        Some("up-secret")
    );
    assert_eq!(again.mac("session", b"x"), s.mac("session", b"x"));
    assert_ne!(s.mac("session", b"x"), s.mac("other", b"x"));
    s.set_upstream_secret("wxA", None).await.unwrap();
    assert_eq!(s.upstream_secret("wxA").await.unwrap(), None);
    assert!(matches!(
        s.set_upstream_secret("wxZ", Some("x")).await,
        Err(StoreError::AppNotFound(_))
    ));
    assert_eq!(s.record_login("wxA", "o1", None, "k1").await.unwrap(), 0);
    assert_eq!(s.revoke_sessions("wxA").await.unwrap(), 1);
    assert_eq!(
        s.record_login("wxA", "o1", Some("u1"), "k2").await.unwrap(),
        1
    );
    assert!(matches!(
        s.record_login("wxZ", "o1", None, "k").await,
        Err(StoreError::AppNotFound(_))
    ));
    let snap = s.snapshot().await.unwrap();
    assert!(snap.session_gens.contains(&("wxA".to_string(), 1)));
}

async fn sharing_rules_are_enforced(f: Fixture) {
    let s = &f.store;
    for (app, subject) in [("wxA", "Acme"), ("wxB", "Acme"), ("wxC", "Other")] {
        s.create_app(app, Some(subject)).await.unwrap();
    }
    s.create_env("prod", "wxA").await.unwrap();
    let invoke = vec!["functions:invoke".to_string()];
    let refused = |r: Result<ShareInfo, StoreError>, what: &str| match r {
        Err(StoreError::Refused(m)) => assert!(m.contains(what), "{m}"),
        other => panic!("expected a refusal about {what}, got {other:?}"),
    };
    refused(
        s.add_share("prod", "wxB", &invoke, SharedFunctions::All, None)
            .await,
        "sharing on",
    );
    assert!(!s.app("wxA").await.unwrap().sharing);
    s.set_sharing("wxA", true).await.unwrap();
    // The switch is listed with the app (the console shows it).
    assert!(s.app("wxA").await.unwrap().sharing);
    assert!(
        s.apps()
            .await
            .unwrap()
            .iter()
            .any(|a| a.appid == "wxA" && a.sharing)
    );
    refused(
        s.add_share("prod", "wxB", &invoke, SharedFunctions::All, None)
            .await,
        "cloudbase_auth",
    );
    let h = s.put_blob(b"auth").await.unwrap();
    s.add_version("prod", AUTH_FUNCTION, &h, 4, &FunctionConfig::default())
        .await
        .unwrap();
    refused(
        s.add_share("prod", "wxC", &invoke, SharedFunctions::All, None)
            .await,
        "same subject",
    );
    refused(
        s.add_share("prod", "wxB", &invoke, SharedFunctions::All, Some("wxB"))
            .await,
        "owner",
    );
    refused(
        s.add_share("prod", "wxA", &invoke, SharedFunctions::All, None)
            .await,
        "needs no share",
    );
    assert!(matches!(
        s.add_share("prod", "wxZ", &invoke, SharedFunctions::All, None)
            .await,
        Err(StoreError::AppNotFound(a)) if a == "wxZ"
    ));
    assert!(matches!(
        s.add_share("prod", "wxB", &[], SharedFunctions::All, None)
            .await,
        Err(StoreError::InvalidConfig(_))
    ));
    let share = s
        .add_share("prod", "wxB", &invoke, SharedFunctions::All, None)
        .await
        .unwrap();
    assert_eq!(
        (share.owner_appid.as_str(), share.functions.clone()),
        ("wxA", SharedFunctions::All)
    );
    // Sharing again updates.
    let only = SharedFunctions::Only(vec!["echo".into()]);
    let both = vec!["functions:invoke".to_string(), "functions:read".to_string()];
    s.add_share("prod", "wxB", &both, only.clone(), Some("wxA"))
        .await
        .unwrap();
    let got = s.share("prod", "wxB").await.unwrap().unwrap();
    assert_eq!((got.perms.clone(), got.functions.clone()), (both, only));
    assert_eq!(s.share("prod", "wxC").await.unwrap(), None);
    assert_eq!(s.shares(None, Some("wxA")).await.unwrap().len(), 1);
    assert_eq!(s.shares(Some("prod"), None).await.unwrap().len(), 1);
    assert_eq!(s.shares(None, Some("wxC")).await.unwrap().len(), 0);
    match s.set_sharing("wxA", false).await {
        Err(StoreError::Refused(m)) => assert!(m.contains("still shares"), "{m}"),
        other => panic!("{other:?}"),
    }
    match s.remove_share("prod", "wxB", Some("wxB")).await {
        Err(StoreError::Refused(m)) => assert!(m.contains("unbind"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.unbind("wxA", "wxB", Some("wxC")).await,
        Err(StoreError::Refused(_))
    ));
    assert_eq!(
        s.unbind("wxA", "wxB", Some("wxB")).await.unwrap(),
        vec!["prod".to_string()]
    );
    assert!(matches!(
        s.unbind("wxA", "wxB", None).await,
        Err(StoreError::Refused(_))
    ));
    assert!(matches!(
        s.remove_share("prod", "wxB", None).await,
        Err(StoreError::ShareNotFound { .. })
    ));
    s.add_share("prod", "wxB", &invoke, SharedFunctions::All, None)
        .await
        .unwrap();
    s.remove_share("prod", "wxB", None).await.unwrap();
    s.set_sharing("wxA", false).await.unwrap();
    assert!(!s.app("wxA").await.unwrap().sharing);
    assert!(matches!(
        s.set_sharing("wxZ", true).await,
        Err(StoreError::AppNotFound(_))
    ));
    // Rules.
    assert_eq!(s.rules("prod").await.unwrap(), None);
    s.set_rules("prod", r#"{"r":1}"#).await.unwrap();
    s.set_rules("prod", r#"{"r":2}"#).await.unwrap();
    assert_eq!(
        s.rules("prod").await.unwrap().as_deref(),
        Some(r#"{"r":2}"#)
    );
    assert!(matches!(
        s.set_rules("nope", "{}").await,
        Err(StoreError::EnvNotFound(_))
    ));
    let snap = s.snapshot().await.unwrap();
    assert_eq!(
        snap.rules,
        vec![("prod".to_string(), r#"{"r":2}"#.to_string())]
    );
    assert!(snap.shares.is_empty());
}

async fn audit_log_filters(f: Fixture) {
    let s = &f.store;
    s.create_env("prod", "wxA").await.unwrap();
    let entry =
        |acting: Option<&str>, action: &str, env: Option<&str>, target: Option<&str>| AuditEntry {
            seq: 0,
            at: 0,
            acting: acting.map(Into::into),
            action: action.into(),
            env: env.map(Into::into),
            target: target.map(Into::into),
            detail: format!("{action} detail"),
        };
    s.audit(entry(None, "deploy", Some("prod"), Some("fn1")))
        .await
        .unwrap();
    s.audit(entry(Some("wxB"), "share.add", Some("other"), Some("wxB")))
        .await
        .unwrap();
    s.audit(entry(None, "app.create", None, Some("wxC")))
        .await
        .unwrap();
    let all = s.audit_log(&AuditQuery::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        vec!["deploy", "share.add", "app.create"]
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(all[0].at > 0);
    let of_env = |env: &str| AuditQuery {
        env: Some(env.into()),
        ..Default::default()
    };
    assert_eq!(s.audit_log(&of_env("prod")).await.unwrap().len(), 1);
    // An app sees what it did, what concerns it, and what happened to its envs.
    let of_app = |app: &str| AuditQuery {
        app: Some(app.into()),
        ..Default::default()
    };
    assert_eq!(
        s.audit_log(&of_app("wxA")).await.unwrap()[0].action,
        "deploy"
    );
    assert_eq!(s.audit_log(&of_app("wxB")).await.unwrap().len(), 1);
    let newest = AuditQuery {
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(
        s.audit_log(&newest)
            .await
            .unwrap()
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        vec!["share.add", "app.create"]
    );
    let after = AuditQuery {
        after: Some(all[1].seq),
        ..Default::default()
    };
    assert_eq!(s.audit_log(&after).await.unwrap().len(), 1);
}

fn activation(env: &str, function: &str, n: i64, caller: Option<&str>) -> Activation {
    Activation {
        seq: 0,
        request_id: format!("req-{env}-{n}"),
        env: env.into(),
        function: function.into(),
        version: Some(1),
        caller_appid: caller.map(Into::into),
        source: "wx_client".into(),
        started_at_ms: fsutil::now_ms(),
        duration_us: 100 + n,
        errcode: if n % 2 == 0 { 0 } else { -1 },
        errmsg: "ok".into(),
        peak_memory: 65536,
        logs: vec![LogLine {
            stream: LogStream::Stdout,
            level: None,
            message: format!("line {n}"),
        }],
        decision: caller.map(|c| Decision {
            allowed: true,
            step: "rules".into(),
            reason: "granted".into(),
            caller_appid: c.into(),
            cached: false,
        }),
    }
}

/// Many records queued at once (the writer inserts them many rows to a statement) are all
/// written, each with its own values, in order.
async fn a_large_batch_of_records_is_written_whole(f: Fixture) {
    let s = &f.store;
    // 35 envs × 2 records: within the fixtures' retention of 3, so none is pruned; 70 is two
    // statements of 32 rows and 6 single rows.
    for n in 0..70 {
        let caller = (n % 5 == 0).then_some("wxB");
        s.record(activation(&format!("e{}", n % 35), "echo", n, caller));
    }
    s.flush().await;
    for e in 0..35 {
        let got = s
            .activations(&ActivationQuery {
                env: format!("e{e}"),
                ..Default::default()
            })
            .await
            .unwrap();
        let want: Vec<Activation> = [e, e + 35]
            .into_iter()
            .zip(&got)
            .map(|(n, g)| {
                let mut a = activation(&format!("e{e}"), "echo", n, (n % 5 == 0).then_some("wxB"));
                (a.seq, a.started_at_ms) = (g.seq, g.started_at_ms);
                a
            })
            .collect();
        assert_eq!(got, want, "env e{e}");
    }
}

async fn activation_records_are_queried_and_pruned(f: Fixture) {
    let s = &f.store;
    // The fixtures keep 3 records per env.
    for n in 0..5 {
        s.record(activation(
            "prod",
            if n < 4 { "echo" } else { "other" },
            n,
            None,
        ));
    }
    s.record(activation("dev", "echo", 0, Some("wxB")));
    s.flush().await;
    let q = |env: &str| ActivationQuery {
        env: env.into(),
        ..Default::default()
    };
    let prod = s.activations(&q("prod")).await.unwrap();
    assert_eq!(
        prod.iter()
            .map(|a| a.request_id.as_str())
            .collect::<Vec<_>>(),
        vec!["req-prod-2", "req-prod-3", "req-prod-4"],
        "the newest 3 of prod, oldest first"
    );
    assert_eq!(prod[0].logs[0].message, "line 2");
    assert_eq!(prod[1].errcode, -1);
    let dev = s.activations(&q("dev")).await.unwrap();
    assert_eq!(dev.len(), 1, "one env's records never evict another's");
    assert_eq!(dev[0].decision.as_ref().unwrap().caller_appid, "wxB");
    assert_eq!(dev[0], {
        let mut a = activation("dev", "echo", 0, Some("wxB"));
        a.seq = dev[0].seq;
        a.started_at_ms = dev[0].started_at_ms;
        a
    });
    let echo = ActivationQuery {
        name: Some("echo".into()),
        ..q("prod")
    };
    assert_eq!(s.activations(&echo).await.unwrap().len(), 2);
    let by_caller = ActivationQuery {
        caller: Some("wxB".into()),
        ..q("dev")
    };
    assert_eq!(s.activations(&by_caller).await.unwrap().len(), 1);
    // One call's record, by its request id, in its own env only.
    let one = ActivationQuery {
        request_id: Some("req-prod-3".into()),
        ..q("prod")
    };
    let found = s.activations(&one).await.unwrap();
    assert_eq!(found, [prod[1].clone()]);
    let elsewhere = ActivationQuery {
        request_id: Some("req-prod-3".into()),
        ..q("dev")
    };
    assert!(s.activations(&elsewhere).await.unwrap().is_empty());
    let follow = ActivationQuery {
        after: Some(prod[1].seq),
        ..q("prod")
    };
    assert_eq!(s.activations(&follow).await.unwrap().len(), 1);
    // Paging back: the newest `limit` older than a record, however many are newer.
    let back = ActivationQuery {
        before: Some(prod[2].seq),
        limit: Some(1),
        ..q("prod")
    };
    assert_eq!(s.activations(&back).await.unwrap(), [prod[1].clone()]);
    let last = ActivationQuery {
        limit: Some(1),
        ..q("prod")
    };
    assert_eq!(
        s.activations(&last).await.unwrap()[0].request_id,
        "req-prod-4"
    );
    // Outcome and time are the store's filters, not a look at the newest records only.
    let by = |outcome| ActivationQuery {
        outcome: Some(outcome),
        ..q("prod")
    };
    let ids = |records: Vec<Activation>| {
        records
            .into_iter()
            .map(|a| a.request_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(s.activations(&by(Outcome::Ok)).await.unwrap()),
        ["req-prod-2", "req-prod-4"]
    );
    assert_eq!(
        ids(s.activations(&by(Outcome::Error)).await.unwrap()),
        ["req-prod-3"]
    );
    let mut denied = activation("dev", "echo", 7, Some("wxC"));
    denied.decision.as_mut().unwrap().allowed = false;
    s.record(denied);
    s.flush().await;
    let denied = ActivationQuery {
        outcome: Some(Outcome::Denied),
        ..q("dev")
    };
    assert_eq!(ids(s.activations(&denied).await.unwrap()), ["req-dev-7"]);
    let later = ActivationQuery {
        since_ms: Some(fsutil::now_ms() + 60_000),
        ..q("prod")
    };
    assert!(s.activations(&later).await.unwrap().is_empty());
    let earlier = ActivationQuery {
        since_ms: Some(0),
        ..q("prod")
    };
    assert_eq!(s.activations(&earlier).await.unwrap().len(), 3);
    // Records are not state: they do not move the change feed.
    let before = s.version();
    s.record(activation("prod", "echo", 9, None));
    s.flush().await;
    assert_eq!(s.version(), before);
}

/// What the multi-host design rests on: a change through one handle reaches another's
/// snapshot within a second, and each handle sees its own changes at once.
async fn changes_reach_another_handle_within_a_second(f: Fixture) {
    let (a, b) = (&f.store, (f.open_again)().await);
    assert!(a.reachable() && b.reachable());
    b.snapshot().await.unwrap();
    let seen = b.version();
    let before = a.version();
    a.create_env("prod", "wxA").await.unwrap();
    assert_ne!(a.version(), before, "the writer's own feed moves at once");
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while b.version() == seen {
        assert!(
            std::time::Instant::now() < deadline,
            "the other handle did not hear of the change within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.snapshot().await.unwrap().envs.len(), 1);
    // A refused change moves nothing.
    let seen = b.version();
    assert!(a.create_env("prod", "wxA").await.is_err());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(b.version(), seen);
}

/// Several hosts starting at once each run the migrations: every one succeeds, each migration
/// is applied once, and a store opens on the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_apply_each_version_once() {
    let url = fresh_database();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { postgres::migrate(&url).await })
        })
        .collect();
    let mut applied = 0;
    let mut latest = 0;
    for run in runs {
        let (before, after) = run.await.unwrap().unwrap();
        latest = after;
        if before < after {
            applied += 1;
        }
    }
    assert_eq!(applied, 1, "exactly one run applied the migrations");
    assert!(latest >= 1);
    let out = std::process::Command::new(postgres::testing::bin_dir().unwrap().join("psql"))
        .arg(&url)
        .args([
            "-tAc",
            "SELECT count(*), max(version) FROM schema_migrations",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{latest}|{latest}")
    );
    // A store refuses a database it does not know the schema of, and says what to do.
    let empty = fresh_database();
    let err = postgres::PostgresStore::open(&empty, vec![0; 32], 10, false)
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("cloudfn migrate"), "{err:#}");
    // And a token key that is not 32 bytes.
    let config = StoreConfig {
        url: Some(url),
        token_key: Some("abc".into()),
        migrate: false,
    };
    let err = open(&config, std::path::Path::new("/nonexistent"), 10, 0)
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("64 hex digits"), "{err:#}");
}
