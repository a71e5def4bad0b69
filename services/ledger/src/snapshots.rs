//! When a node takes a snapshot (after which openraft purges the Raft log before it).
//!
//! openraft's `LogsSinceLast(n)` snapshots every n Raft entries. A snapshot copies the whole
//! ledger, so at a fixed interval the copying per appended entry grows with the ledger: at 1M
//! entries a snapshot every 20k appends writes ~24 KB of snapshot per appended entry, and at
//! 10M a node would be snapshotting all the time. Here a snapshot is due once the log since the
//! last one holds at least `ledger_snapshot_every` Raft entries **and** the ledger has grown by
//! at least 1/[`GROWTH_DIVISOR`] of what the last snapshot held. Snapshot sizes then grow
//! geometrically, so an appended entry is copied into snapshots about `GROWTH_DIVISOR + 1`
//! times over its life whatever the ledger's size, and the log between snapshots holds at most
//! about a quarter of the ledger's entries (plus `ledger_snapshot_every`). Raft entries that add
//! no ledger entries (cosignatures, membership) still force a snapshot after
//! [`MAX_INTERVALS`] × `ledger_snapshot_every` of them, so the log stays bounded. A restarted
//! node reads the last snapshot's entry count from `snapshots/current.entries`.

use std::time::Duration;

use openraft::Raft;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::storage::{LedgerView, TypeConfig};

/// A snapshot is due once the ledger has grown by this fraction (1/n) since the last one.
pub const GROWTH_DIVISOR: u64 = 4;
/// Raft entries since the last snapshot (in units of `ledger_snapshot_every`) after which a
/// snapshot is taken even if the ledger has hardly grown.
pub const MAX_INTERVALS: u64 = 50;

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
    if raft_entries_since < every {
        return false;
    }
    let grown = entries_now.saturating_sub(entries_at_snapshot);
    grown >= entries_at_snapshot / GROWTH_DIVISOR
        || raft_entries_since >= every.saturating_mul(MAX_INTERVALS)
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
    fn small_ledgers_snapshot_every_interval() {
        assert!(!due(19_999, 20_000, 19_999, 0));
        assert!(due(20_000, 20_000, 20_000, 0));
        // 20k appended to a 50k-entry ledger: more than a quarter.
        assert!(due(20_000, 20_000, 70_000, 50_000));
    }

    #[test]
    fn large_ledgers_wait_for_a_quarter_of_growth() {
        assert!(!due(20_000, 20_000, 1_020_000, 1_000_000));
        assert!(!due(249_999, 20_000, 1_249_999, 1_000_000));
        assert!(due(250_000, 20_000, 1_250_000, 1_000_000));
        // Batched appends: few Raft entries, much growth, still gated by the interval.
        assert!(!due(2_500, 20_000, 1_250_000, 1_000_000));
    }

    #[test]
    fn raft_entries_without_ledger_growth_still_bound_the_log() {
        assert!(!due(999_999, 20_000, 1_000_000, 1_000_000));
        assert!(due(1_000_000, 20_000, 1_000_000, 1_000_000));
    }
}
