//! Activation records in SQLite: one per call (request id, env, function, version, caller app, start,
//! duration, outcome, peak memory, logs, grant decision), written by a background thread in
//! batches so the call path never waits for a disk sync; old records are pruned to a retention
//! limit per env and to a byte budget for all. They live in their own SQLite file (`activations.db` in the data dir): their constant
//! writes must not look like registry changes to the caches that watch `cloudfn.db`.

use crate::error::StoreError;
use crate::model::{Activation, ActivationQuery, LogLine, LogStream};
use anyhow::Context;
use rusqlite::{Connection, params};
use std::path::Path;
use std::sync::mpsc::{
    Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError, channel, sync_channel,
};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Records waiting to be written at most; past it new ones are dropped (and counted). More
/// than a second of the host's peak rate (~50k calls/s on 2 cores): the writer commits a batch
/// in well under that, so only a disk that stalls for a second or more drops records.
const QUEUE: usize = 65536;

enum Msg {
    /// A record and the bytes it holds in the queue.
    Record(Box<Activation>, usize),
    Flush(Sender<()>),
}

/// Most bytes of records waiting to be written; past it, new records lose their log lines.
const QUEUE_BYTES: usize = 64 << 20;

fn size_of(a: &Activation) -> usize {
    256 + a.errmsg.len() + a.logs.iter().map(|l| 64 + l.message.len()).sum::<usize>()
}

/// Schema migrations of `activations.db`, applied in order (`PRAGMA user_version` counts them).
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE activations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL,
        env TEXT NOT NULL,
        function TEXT NOT NULL,
        version INTEGER,
        caller_appid TEXT,
        source TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        errcode INTEGER NOT NULL,
        errmsg TEXT NOT NULL,
        peak_memory INTEGER NOT NULL,
        logs TEXT NOT NULL,
        decision TEXT
    );
    CREATE INDEX activations_by_fn ON activations (env, function, seq);",
    // Retention is per env.
    "CREATE INDEX activations_by_env ON activations (env, seq);",
];

/// The activation store: a background writer and a reader.
pub(super) struct Recorder {
    /// Taken only by `drop` (which ends the writer), so calls send without a lock.
    tx: Option<SyncSender<Msg>>,
    dropped: std::sync::atomic::AtomicU64,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    wake: Arc<Wake>,
    thread: Option<JoinHandle<()>>,
    reader: Mutex<Connection>,
}

fn open(path: &Path) -> anyhow::Result<Connection> {
    super::open_db(path, false).context("opening activation records")
}

impl Recorder {
    /// Opens (creating and migrating) the store at `db_path` and starts the writer, keeping at
    /// most `retention` records per env and all of them within `max_bytes`.
    pub fn start(db_path: &Path, retention: u64, max_bytes: u64) -> anyhow::Result<Recorder> {
        let mut conn = open(db_path)?;
        super::migrate(&mut conn, MIGRATIONS)
            .with_context(|| format!("migrating {}", db_path.display()))?;
        // The indexes' pages the writer touches stay in memory (SQLite's default is 2 MB):
        // with less, inserting and pruning read pages back from the file at every batch.
        conn.pragma_update(None, "cache_size", -16384)?;
        let reader = open(db_path)?;
        let (tx, rx) = sync_channel(QUEUE);
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writer_queued = queued.clone();
        let wake = Arc::new(Wake::default());
        let thread = std::thread::Builder::new()
            .name("cloudfn-activations".into())
            .spawn({
                let wake = wake.clone();
                move || {
                    crate::fsutil::background_priority();
                    writer(conn, rx, retention, max_bytes, writer_queued, &wake)
                }
            })
            .context("starting the activation writer")?;
        Ok(Recorder {
            tx: Some(tx),
            thread: Some(thread),
            reader: Mutex::new(reader),
            dropped: Default::default(),
            queued,
            wake,
        })
    }

    /// Queues a record.
    pub fn record(&self, mut activation: Activation) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut size = size_of(&activation);
        if self.queued.load(Relaxed) + size > QUEUE_BYTES {
            // The writer is behind: keep the record, not its (possibly megabytes of) logs.
            activation.logs = vec![LogLine {
                stream: LogStream::Stderr,
                level: None,
                message: "[cloudfn: logs dropped, the record writer was behind]".into(),
            }];
            activation
                .errmsg
                .truncate(activation.errmsg.floor_char_boundary(1024));
            size = size_of(&activation);
        }
        self.queued.fetch_add(size, Relaxed);
        if let Some(tx) = &self.tx
            && let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                tx.try_send(Msg::Record(Box::new(activation), size))
        {
            self.queued.fetch_sub(size, Relaxed);
            // The disk cannot keep up: drop the record rather than queue without bound.
            let n = self
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!("activation writer is behind; {} record(s) dropped", n + 1);
            }
        }
    }

    /// Records dropped so far (the queue was full).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until every queued record is written.
    pub fn flush(&self) {
        let (done_tx, done_rx) = channel();
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Msg::Flush(done_tx)).is_ok());
        self.wake.wake();
        if sent {
            let _ = done_rx.recv();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // The writer drains what is queued, sees the channel closed, and ends.
        drop(self.tx.take());
        self.wake.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Ends the writer's batching wait early (a flush, shutdown). Its own flag, not thread
/// parking: the channel parks and unparks the writer thread too and would eat the wake-up.
#[derive(Default)]
struct Wake {
    woken: Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Wake {
    fn wake(&self) {
        *self.woken.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_one();
    }

    /// Waits up to `max`, or not at all if woken since the last wait.
    fn wait(&self, max: std::time::Duration) {
        let woken = self.woken.lock().unwrap_or_else(|e| e.into_inner());
        let (mut woken, _) = self
            .cv
            .wait_timeout_while(woken, max, |woken| !*woken)
            .unwrap_or_else(|e| e.into_inner());
        *woken = false;
    }
}

/// How long the writer waits for more records before committing a batch.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);
/// Most records committed in one transaction.
const MAX_BATCH: usize = 8192;
/// How often the envs written are pruned to their retention, and all to the byte budget.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn writer(
    mut conn: Connection,
    rx: Receiver<Msg>,
    retention: u64,
    max_bytes: u64,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    wake: &Wake,
) {
    let mut pruning = Pruning {
        retention,
        max_bytes,
        ..Pruning::default()
    };
    // The last batch was full: records are waiting, so the next batch starts at once.
    let mut behind = false;
    loop {
        // Idle with envs still to prune: prune them when their second is up.
        let first = match pruning.dirty.is_empty() {
            true => rx.recv().ok(),
            false => match rx.recv_timeout(PRUNE_EVERY) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => {
                    pruning.run(&conn, true);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => None,
            },
        };
        let Some(first) = first else {
            pruning.run(&conn, true);
            return;
        };
        // Records gather for a few milliseconds into one transaction: under load a commit per
        // record costs more CPU than the calls. The writer waits on its own signal rather than
        // on the channel, since a sender wakes a waiting receiver (a futex wake and a context
        // switch per record); `flush` and shutdown signal it. Behind (the last batch was
        // full), it does not wait: at the host's peak the window alone, once per batch, made
        // the writer slower than the calls and the queue overflowed (2026-12-07: 6 % of 1.6M
        // records dropped over 3 × 10 s at 50k calls/s).
        if !matches!(first, Msg::Flush(_)) && !behind {
            wake.wait(BATCH_WINDOW);
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        behind = batch.len() == MAX_BATCH;
        let mut waiters = Vec::new();
        let mut records = Vec::new();
        for m in batch {
            match m {
                Msg::Record(r, size) => {
                    queued.fetch_sub(size, std::sync::atomic::Ordering::Relaxed);
                    records.push(r)
                }
                Msg::Flush(w) => waiters.push(w),
            }
        }
        if !records.is_empty() {
            if let Err(e) = insert(&mut conn, &records) {
                tracing::error!("writing {} activation records failed: {e:#}", records.len());
            }
            for r in &records {
                if !pruning.dirty.contains(&r.env) {
                    pruning.dirty.insert(r.env.clone());
                }
            }
        }
        // A flush leaves every env within its retention.
        pruning.run(&conn, !waiters.is_empty());
        for w in waiters {
            let _ = w.send(());
        }
    }
}

/// Keeping records within their limits: each env's newest `retention`, and all of them
/// within `max_bytes`. Each env written is pruned at most once per [`PRUNE_EVERY`] (and on a
/// flush, and when the writer is idle): under load a batch comes every 50 ms, and deleting
/// as many rows as were just inserted, batch after batch, doubled the writer's work. An env
/// may so hold up to a second's records over its retention for a moment.
#[derive(Default)]
struct Pruning {
    retention: u64,
    max_bytes: u64,
    /// Envs written since they were last pruned.
    dirty: std::collections::BTreeSet<String>,
    /// When the envs were last pruned, and all records trimmed to the byte budget.
    last: Option<std::time::Instant>,
}

impl Pruning {
    fn run(&mut self, conn: &Connection, now_anyway: bool) {
        let now = std::time::Instant::now();
        if self.dirty.is_empty()
            || !now_anyway
                && self
                    .last
                    .is_some_and(|at| now.duration_since(at) < PRUNE_EVERY)
        {
            return;
        }
        self.last = Some(now);
        // Each env keeps its newest `retention` records, so one env's flood of calls never
        // evicts another's. A range delete on the (env, seq) index per env.
        for env in std::mem::take(&mut self.dirty) {
            if let Err(e) = conn
                .prepare_cached(
                    "DELETE FROM activations WHERE env = ?1 AND seq <= (SELECT seq FROM \
                     activations WHERE env = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
                )
                .and_then(|mut stmt| stmt.execute(rusqlite::params![env, self.retention as i64]))
            {
                tracing::error!("pruning activation records of env {env} failed: {e}");
            }
        }
        if let Err(e) = trim(conn, self.max_bytes) {
            tracing::error!(
                "trimming activation records to {} bytes failed: {e}",
                self.max_bytes
            );
        }
    }
}

/// Deletes the oldest records of all envs, a tenth at a time, until the records take at most
/// `max_bytes` of pages; the freed pages are reused, so the file stays about that size.
fn trim(conn: &Connection, max_bytes: u64) -> rusqlite::Result<()> {
    for _ in 0..16 {
        let used: i64 = conn.query_row(
            "SELECT ((SELECT page_count FROM pragma_page_count()) -
                     (SELECT freelist_count FROM pragma_freelist_count())) *
                    (SELECT page_size FROM pragma_page_size())",
            [],
            |r| r.get(0),
        )?;
        if used as u64 <= max_bytes {
            return Ok(());
        }
        let deleted = conn
            .prepare_cached(
                "DELETE FROM activations WHERE seq <= (SELECT seq FROM activations ORDER BY seq \
                 LIMIT 1 OFFSET (SELECT COUNT(*) / 10 FROM activations))",
            )?
            .execute([])?;
        if deleted == 0 {
            return Ok(());
        }
    }
    Ok(())
}

/// Rows per `INSERT` statement: one statement for many rows costs SQLite's statement machinery
/// once, not per row (the writer's CPU per record fell by about a third).
const ROWS_PER_INSERT: usize = 32;

/// The values of one record (the columns [`insert_sql`] names).
const COLUMNS: usize = 13;

/// The `INSERT` statements for one record and for [`ROWS_PER_INSERT`] records.
static INSERT_SQL: std::sync::LazyLock<[String; 2]> =
    std::sync::LazyLock::new(|| [insert_sql(1), insert_sql(ROWS_PER_INSERT)]);

fn insert_sql(rows: usize) -> String {
    let row = format!("({})", ["?"; COLUMNS].join(","));
    format!(
        "INSERT INTO activations (request_id, env, function, version, caller_appid, source, \
         started_at_ms, duration_us, errcode, errmsg, peak_memory, logs, decision) VALUES {}",
        vec![row; rows].join(",")
    )
}

fn insert(conn: &mut Connection, records: &[Box<Activation>]) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let full = records.len() / ROWS_PER_INSERT * ROWS_PER_INSERT;
    let (many, rest) = records.split_at(full);
    for (sql, chunks) in [
        (&INSERT_SQL[1], many.chunks(ROWS_PER_INSERT)),
        (&INSERT_SQL[0], rest.chunks(1)),
    ] {
        let mut stmt = tx.prepare_cached(sql)?;
        for chunk in chunks {
            for (i, r) in chunk.iter().enumerate() {
                bind(&mut stmt, i * COLUMNS, r)?;
            }
            stmt.raw_execute()?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Binds `r`'s [`COLUMNS`] values to the parameters after the first `before`.
fn bind(stmt: &mut rusqlite::Statement, before: usize, r: &Activation) -> anyhow::Result<()> {
    let logs = match r.logs.is_empty() {
        true => std::borrow::Cow::Borrowed("[]"),
        false => std::borrow::Cow::Owned(serde_json::to_string(&r.logs)?),
    };
    let decision = r.decision.as_ref().map(serde_json::to_string).transpose()?;
    let values: [&dyn rusqlite::ToSql; COLUMNS] = [
        &r.request_id,
        &r.env,
        &r.function,
        &r.version,
        &r.caller_appid,
        &r.source,
        &r.started_at_ms,
        &r.duration_us,
        &r.errcode,
        &r.errmsg,
        &r.peak_memory,
        &logs,
        &decision,
    ];
    for (i, value) in values.into_iter().enumerate() {
        stmt.raw_bind_parameter(before + i + 1, value)?;
    }
    Ok(())
}

impl Recorder {
    /// Activation records matching `q`, oldest first.
    pub fn query(&self, q: &ActivationQuery) -> Result<Vec<Activation>, StoreError> {
        let db = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = db.prepare_cached(
            "SELECT * FROM (
                SELECT seq, request_id, env, function, version, caller_appid, source, started_at_ms,
                       duration_us, errcode, errmsg, peak_memory, logs, decision
                FROM activations
                WHERE env = ?1 AND (?2 IS NULL OR function = ?2) AND seq > ?3
                  AND (?5 IS NULL OR caller_appid = ?5) AND (?6 IS NULL OR request_id = ?6)
                  AND (?7 IS NULL OR (?7 = 'ok' AND errcode = 0)
                       OR (?7 = 'error' AND errcode <> 0)
                       OR (?7 = 'denied' AND decision LIKE '%\"allowed\":false%'))
                  AND (?8 IS NULL OR started_at_ms >= ?8) AND (?9 IS NULL OR seq < ?9)
                ORDER BY seq DESC LIMIT ?4
             ) ORDER BY seq",
        )?;
        let rows = stmt.query_map(
            params![
                q.env,
                q.name,
                q.after.unwrap_or(0),
                q.limit.unwrap_or(100),
                q.caller,
                q.request_id,
                q.outcome.map(crate::model::Outcome::as_str),
                q.since_ms,
                q.before
            ],
            |r| {
                let logs: String = r.get(12)?;
                Ok(Activation {
                    seq: r.get(0)?,
                    request_id: r.get(1)?,
                    env: r.get(2)?,
                    function: r.get(3)?,
                    version: r.get(4)?,
                    caller_appid: r.get(5)?,
                    source: r.get(6)?,
                    started_at_ms: r.get(7)?,
                    duration_us: r.get(8)?,
                    errcode: r.get(9)?,
                    errmsg: r.get(10)?,
                    peak_memory: r.get(11)?,
                    logs: serde_json::from_str(&logs).unwrap_or_default(),
                    decision: r
                        .get::<_, Option<String>>(13)?
                        .and_then(|d| serde_json::from_str(&d).ok()),
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
