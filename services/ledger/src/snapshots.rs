//! When a node takes a snapshot (after which openraft purges the Raft log before it).
//!
//! A snapshot is a small manifest ([`crate::storage::snapshot`]), so taking one costs about the
//! same at any ledger size, and what bounds the disk a node uses besides its state is the Raft
//! log since the last snapshot. openraft's `LogsSinceLast(n)` counts Raft entries, but one
//! Raft entry carries a whole batch of appends (up to `ledger_max_batch`), so under load the
//! log would hold up to n × batch ledger entries. Here a snapshot is due once the log since
//! the last one holds `ledger_snapshot_every` Raft entries **or** adds that many ledger
//! entries, whichever comes first.

use std::time::Duration;

use openraft::Raft;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::storage::{LedgerView, TypeConfig};

const CHECK_EVERY: Duration = Duration::from_millis(500);
/// A requested snapshot that has not shown up by then (openraft ignores a request while a
/// build runs; a failed build stops the Raft core) is requested again.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Whether a snapshot is due, given the Raft entries applied since the last snapshot, the
/// configured interval and the ledger entries now and in the last snapshot.
pub fn due(
    raft_entries_since: u64,
    every: u64,
    entries_now: u64,
    entries_at_snapshot: u64,
) -> bool {
    raft_entries_since >= every || entries_now.saturating_sub(entries_at_snapshot) >= every
}

/// Checks twice a second whether a snapshot is due and asks openraft for one.
pub(crate) fn spawn(
    raft: Raft<TypeConfig>,
    view: LedgerView,
    every: u64,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The snapshot index at the time of our last request, and when it was made.
        let mut requested: Option<(u64, Instant)> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (applied, snapshot) = {
                let metrics = raft.metrics();
                let m = metrics.borrow();
                (
                    m.last_applied.map_or(0, |l| l.index),
                    m.snapshot.map_or(0, |l| l.index),
                )
            };
            if let Some((at, when)) = requested
                && at == snapshot
                && when.elapsed() < RETRY_AFTER
            {
                continue;
            }
            let (now, at_snapshot) = view.entry_counts();
            if !due(applied.saturating_sub(snapshot), every, now, at_snapshot) {
                continue;
            }
            tracing::info!(
                raft_index = applied,
                ledger_entries = now,
                entries_in_last_snapshot = at_snapshot,
                "taking a snapshot"
            );
            if let Err(error) = raft.trigger().snapshot().await {
                tracing::warn!(%error, "requesting a snapshot failed");
            }
            requested = Some((snapshot, Instant::now()));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_appends_snapshot_every_interval() {
        assert!(!due(19_999, 20_000, 19_999, 0));
        assert!(due(20_000, 20_000, 20_000, 0));
        // Raft entries that add no ledger entries (cosignatures) count too.
        assert!(due(20_000, 20_000, 1_000_000, 1_000_000));
    }

    #[test]
    fn batched_appends_snapshot_by_ledger_entries() {
        // 100 Raft entries of 200 appends each: the log holds 20k ledger entries.
        assert!(due(100, 20_000, 1_020_000, 1_000_000));
        assert!(!due(99, 20_000, 1_019_999, 1_000_000));
        // The same at any ledger size: a snapshot no longer copies the ledger.
        assert!(due(100, 20_000, 10_020_000, 10_000_000));
    }
}
