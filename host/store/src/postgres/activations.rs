//! Activation records in PostgreSQL, shared by every host: queued on the call path without
//! waiting, written by a background task in batches (one `INSERT … SELECT FROM unnest` per
//! batch), and pruned at most once a second (and on a flush) to the newest `retention` records
//! per env and to [`MAX_AGE`].

use crate::error::StoreError;
use crate::model::{Activation, ActivationQuery};
use deadpool_postgres::{GenericClient, Pool};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};

/// Records waiting to be written at most; past it new ones are dropped (and counted).
const QUEUE: usize = 65536;
/// How long the writer gathers records before a batch.
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Most records in one batch.
const MAX_BATCH: usize = 4096;
/// Records older than this go, whatever the retention.
pub const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often the writer prunes: each prune reads an env's index, so under load it runs at
/// most this often (records may exceed the retention by what arrives in between).
const PRUNE_EVERY: Duration = Duration::from_secs(1);

enum Msg {
    Record(Box<Activation>),
    Flush(oneshot::Sender<()>),
}

/// The queue and its writer task.
pub(super) struct Recorder {
    tx: mpsc::Sender<Msg>,
    wake: std::sync::Arc<Notify>,
    dropped: AtomicU64,
}

impl Recorder {
    pub(super) fn start(pool: Pool, retention: u64) -> Recorder {
        let (tx, rx) = mpsc::channel(QUEUE);
        let wake = std::sync::Arc::new(Notify::new());
        tokio::spawn(writer(pool, rx, retention, wake.clone()));
        Recorder {
            tx,
            wake,
            dropped: AtomicU64::new(0),
        }
    }

    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(super) fn record(&self, activation: Activation) {
        if self.tx.try_send(Msg::Record(Box::new(activation))).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!("activation writer is behind; {} record(s) dropped", n + 1);
            }
        }
    }

    pub(super) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            self.wake.notify_one();
            let _ = wait.await;
        }
    }
}

async fn writer(
    pool: Pool,
    mut rx: mpsc::Receiver<Msg>,
    retention: u64,
    wake: std::sync::Arc<Notify>,
) {
    // Envs written since the last prune, and when that was.
    let mut unpruned = std::collections::BTreeSet::new();
    let mut pruned_at = tokio::time::Instant::now();
    while let Some(first) = rx.recv().await {
        if !matches!(first, Msg::Flush(_)) {
            // Gather for a moment: one round trip per batch, not per call.
            tokio::select! {
                _ = tokio::time::sleep(BATCH_WINDOW) => {}
                _ = wake.notified() => {}
            }
        }
        let mut records = Vec::new();
        let mut waiters = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next.take().or_else(|| rx.try_recv().ok()) {
            match m {
                Msg::Record(r) => records.push(r),
                Msg::Flush(w) => waiters.push(w),
            }
            if records.len() >= MAX_BATCH {
                break;
            }
        }
        if !records.is_empty() {
            if let Err(e) = insert(&pool, &records).await {
                tracing::error!("writing {} activation records failed: {e:#}", records.len());
            }
            unpruned.extend(records.iter().map(|r| r.env.clone()));
        }
        // A flush prunes too, so a reader sees the retention applied.
        if !unpruned.is_empty() && (!waiters.is_empty() || pruned_at.elapsed() >= PRUNE_EVERY) {
            if let Err(e) = prune(&pool, &unpruned, retention).await {
                tracing::error!("pruning activation records failed: {e:#}");
            }
            unpruned.clear();
            pruned_at = tokio::time::Instant::now();
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}

async fn insert(pool: &Pool, records: &[Box<Activation>]) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    // Batches from all hosts take turns, so `seq`s are handed out in commit order: a reader
    // following with `after` (`logs --follow`) never sees a lower seq commit after a higher one.
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&super::RECORDS_LOCK])
        .await?;
    let col = |f: &dyn Fn(&Activation) -> String| records.iter().map(|r| f(r)).collect::<Vec<_>>();
    let logs = records
        .iter()
        .map(|r| serde_json::to_string(&r.logs))
        .collect::<Result<Vec<_>, _>>()?;
    let decisions = records
        .iter()
        .map(|r| r.decision.as_ref().map(serde_json::to_string).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    tx.execute(
        "INSERT INTO activations (request_id, env, function, version, caller_appid, source,
                started_at_ms, duration_us, errcode, errmsg, peak_memory, logs, decision)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                $6::text[], $7::bigint[], $8::bigint[], $9::int[], $10::text[], $11::bigint[],
                $12::text[], $13::text[])",
        &[
            &col(&|r| r.request_id.clone()),
            &col(&|r| r.env.clone()),
            &col(&|r| r.function.clone()),
            &records
                .iter()
                .map(|r| r.version.map(i64::from))
                .collect::<Vec<_>>(),
            &records
                .iter()
                .map(|r| r.caller_appid.clone())
                .collect::<Vec<_>>(),
            &col(&|r| r.source.clone()),
            &records.iter().map(|r| r.started_at_ms).collect::<Vec<_>>(),
            &records.iter().map(|r| r.duration_us).collect::<Vec<_>>(),
            &records.iter().map(|r| r.errcode).collect::<Vec<_>>(),
            &col(&|r| r.errmsg.clone()),
            &records.iter().map(|r| r.peak_memory).collect::<Vec<_>>(),
            &logs,
            &decisions,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Each env keeps its newest `retention` records, so one env's flood never evicts another's;
/// and no record outlives [`MAX_AGE`].
async fn prune(
    pool: &Pool,
    envs: &std::collections::BTreeSet<String>,
    retention: u64,
) -> anyhow::Result<()> {
    let client = pool.get().await?;
    for env in envs {
        client
            .execute(
                "DELETE FROM activations WHERE env = $1 AND seq <= (SELECT seq FROM activations
                 WHERE env = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)",
                &[&env, &(retention as i64)],
            )
            .await?;
    }
    let oldest = crate::fsutil::now_ms() - MAX_AGE.as_millis() as i64;
    client
        .execute(
            "DELETE FROM activations WHERE started_at_ms < $1",
            &[&oldest],
        )
        .await?;
    Ok(())
}

/// Records matching `q`, oldest first.
pub(super) async fn query(
    db: &impl GenericClient,
    q: &ActivationQuery,
) -> Result<Vec<Activation>, StoreError> {
    let rows = db
        .query(
            "SELECT * FROM (
                SELECT seq, request_id, env, function, version, caller_appid, source,
                       started_at_ms, duration_us, errcode, errmsg, peak_memory, logs, decision
                FROM activations
                WHERE env = $1 AND ($2::text IS NULL OR function = $2) AND seq > $3
                  AND ($5::text IS NULL OR caller_appid = $5)
                  AND ($6::text IS NULL OR request_id = $6)
                  AND ($7::text IS NULL OR ($7 = 'ok' AND errcode = 0)
                       OR ($7 = 'error' AND errcode <> 0)
                       OR ($7 = 'denied' AND decision LIKE '%\"allowed\":false%'))
                  AND ($8::bigint IS NULL OR started_at_ms >= $8)
                  AND ($9::bigint IS NULL OR seq < $9)
                ORDER BY seq DESC LIMIT $4
             ) recent ORDER BY seq",
            &[
                &q.env,
                &q.name,
                &q.after.unwrap_or(0),
                &(q.limit.unwrap_or(100) as i64),
                &q.caller,
                &q.request_id,
                &q.outcome.map(crate::model::Outcome::as_str),
                &q.since_ms,
                &q.before,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let logs: String = r.get(12);
            let decision: Option<String> = r.get(13);
            Activation {
                seq: r.get(0),
                request_id: r.get(1),
                env: r.get(2),
                function: r.get(3),
                version: r.get::<_, Option<i64>>(4).map(|v| v as u32),
                caller_appid: r.get(5),
                source: r.get(6),
                started_at_ms: r.get(7),
                duration_us: r.get(8),
                errcode: r.get(9),
                errmsg: r.get(10),
                peak_memory: r.get(11),
                logs: serde_json::from_str(&logs).unwrap_or_default(),
                decision: decision.and_then(|d| serde_json::from_str(&d).ok()),
            }
        })
        .collect())
}
