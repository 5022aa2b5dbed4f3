//! The change feed of a data dir: a 64-bit counter in `changes.seq`, memory-mapped shared by
//! every process that opens the data dir. A writer bumps it after each commit, so reading it is
//! one memory load: the call path checks it on every call without a database round trip.
//!
//! A process that dies between its commit and its bump would leave the others unaware, so a
//! watcher thread also reads SQLite's `data_version` once a second and bumps the counter when
//! another connection committed.

use anyhow::Context;
use memmap2::MmapMut;
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often the watcher looks for commits the counter missed.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The mapped counter.
pub(super) struct Feed {
    map: MmapMut,
}

impl Feed {
    /// Maps `root/changes.seq` (creating it) and starts the watcher of `db`.
    pub(super) fn open(root: &Path, db: &Path) -> anyhow::Result<Arc<Feed>> {
        let path = root.join("changes.seq");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // Growing to the same length is a no-op, so racing first opens agree.
        if file.metadata()?.len() < 8 {
            file.set_len(8)?;
        }
        // SAFETY: the file is only ever accessed through this mapping's atomic counter, by
        // cloudfn processes; its length is never reduced.
        let map = unsafe { MmapMut::map_mut(&file) }
            .with_context(|| format!("mapping {}", path.display()))?;
        let feed = Arc::new(Feed { map });
        let watcher = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
        let weak = Arc::downgrade(&feed);
        std::thread::Builder::new()
            .name("cloudfn-feed".into())
            .spawn(move || watch(watcher, weak))
            .context("starting the change-feed watcher")?;
        Ok(feed)
    }

    fn counter(&self) -> &AtomicU64 {
        // SAFETY: the mapping is page-aligned and at least 8 bytes long, and lives as long as
        // `self`; every access to it is atomic.
        unsafe { &*(self.map.as_ptr() as *const AtomicU64) }
    }

    /// The current value.
    pub(super) fn version(&self) -> u64 {
        self.counter().load(Ordering::Acquire)
    }

    /// Tells every process a change was committed.
    pub(super) fn bump(&self) {
        self.counter().fetch_add(1, Ordering::AcqRel);
    }
}

fn watch(conn: Connection, feed: Weak<Feed>) {
    let data_version = |c: &Connection| {
        c.pragma_query_value(None, "data_version", |r| r.get::<_, i64>(0))
            .ok()
    };
    let mut last = data_version(&conn);
    loop {
        std::thread::sleep(WATCH_INTERVAL);
        let Some(feed) = feed.upgrade() else { return };
        let now = data_version(&conn);
        if now != last {
            last = now;
            feed.bump();
        }
    }
}
