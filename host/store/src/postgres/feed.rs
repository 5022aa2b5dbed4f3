//! The change feed across hosts: one connection per host that `LISTEN`s on the channel every
//! state-changing commit notifies, and a counter the call path reads with one memory load.
//!
//! A notification moves the counter, so the next call takes a new snapshot. A lost connection
//! (PostgreSQL restarted, a network cut) may have lost notifications: the task reconnects with
//! backoff and moves the counter once it listens again, which reloads everything (a full
//! resync). A ping each second notices a connection that died silently.

use super::CHANNEL;
use anyhow::Context;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio_postgres::{AsyncMessage, NoTls};

/// How often the listening connection is checked.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The counter and whether the listening connection is up.
pub(super) struct Feed {
    version: AtomicU64,
    connected: AtomicBool,
}

impl Feed {
    /// Connects, listens, and keeps listening in a background task for as long as the feed
    /// lives.
    pub(super) async fn start(config: tokio_postgres::Config) -> anyhow::Result<Arc<Feed>> {
        let feed = Arc::new(Feed {
            version: AtomicU64::new(0),
            connected: AtomicBool::new(false),
        });
        // The first connection is made here, so a wrong URL fails the start, not a log line.
        let first = listen(&config, &feed)
            .await
            .context("listening for changes")?;
        tokio::spawn(keep_listening(config, Arc::downgrade(&feed), first));
        Ok(feed)
    }

    pub(super) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub(super) fn bump(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
}

/// A listening connection: its client (for pings) and the task driving it, which ends when the
/// connection does.
struct Listening {
    client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<()>,
}

async fn listen(config: &tokio_postgres::Config, feed: &Arc<Feed>) -> anyhow::Result<Listening> {
    let (client, mut conn) = config.connect(NoTls).await?;
    let weak = Arc::downgrade(feed);
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => match weak.upgrade() {
                    Some(feed) => feed.bump(),
                    None => return,
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!("the change-feed connection failed: {e}");
                    return;
                }
                None => return,
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    feed.connected.store(true, Ordering::Release);
    // Whatever happened while nobody listened is read again.
    feed.bump();
    Ok(Listening { client, driver })
}

async fn keep_listening(config: tokio_postgres::Config, feed: Weak<Feed>, first: Listening) {
    let mut current = Some(first);
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(strong) = feed.upgrade() else { return };
        match current.take() {
            Some(mut l) => {
                drop(strong);
                let alive = tokio::select! {
                    _ = &mut l.driver => false,
                    _ = tokio::time::sleep(PING_EVERY) => {
                        matches!(
                            tokio::time::timeout(PING_EVERY * 2, l.client.simple_query("")).await,
                            Ok(Ok(_))
                        )
                    }
                };
                if alive {
                    current = Some(l);
                    continue;
                }
                l.driver.abort();
                if let Some(feed) = feed.upgrade() {
                    feed.connected.store(false, Ordering::Release);
                    tracing::warn!("lost the change-feed connection to PostgreSQL; reconnecting");
                }
            }
            None => match listen(&config, &strong).await {
                Ok(l) => {
                    tracing::info!("change feed listening again; state reloaded");
                    backoff = Duration::from_millis(100);
                    current = Some(l);
                }
                Err(e) => {
                    drop(strong);
                    tracing::debug!("reconnecting the change feed failed: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            },
        }
    }
}
