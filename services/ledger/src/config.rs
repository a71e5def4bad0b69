//! Ledger configuration: the shared service settings plus the node's place in the Raft
//! cluster, its storage and its checkpoint keys.

use std::collections::BTreeMap;
use std::path::PathBuf;

use caretrail_platform::{
    auth::AuthSettings,
    config::{ConfigError, Validate},
};
use caretrail_runtime::ServiceSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// How a node that finds no Raft state on disk joins a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Bootstrap {
    /// Form a one-node cluster of this node (the embedded default).
    #[default]
    Single,
    /// The node with the lowest id in `ledger_initial_members` forms the cluster with all of
    /// them, unless a peer already belongs to an initialised cluster; the others wait to be
    /// contacted. A replaced node with an empty disk rejoins as the same member.
    Members,
    /// Do nothing; an operator uses the admin API (`POST /cluster/admin/init`).
    None,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub service: ServiceSettings,
    #[serde(flatten)]
    pub auth: AuthSettings,
    #[serde(flatten)]
    pub ledger: LedgerSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LedgerSettings {
    /// Raft node id (≥ 1), unique in the cluster; in Kubernetes the StatefulSet ordinal + 1.
    #[serde(default = "default_node_id")]
    pub ledger_node_id: u64,
    /// Raft log, state machine and snapshots.
    #[serde(default = "default_data_dir")]
    pub ledger_data_dir: PathBuf,
    /// Interface of the internal cluster port (Raft traffic, forwarding, admin API).
    #[serde(default = "default_cluster_host")]
    pub ledger_cluster_host: String,
    /// Internal cluster port; 0 picks a free one (tests).
    #[serde(default)]
    pub ledger_cluster_port: u16,
    /// `host:port` at which peers reach this node's cluster port; defaults to the bound
    /// address (set it to the pod's DNS name in Kubernetes).
    #[serde(default)]
    pub ledger_advertise_addr: Option<String>,
    /// Shared secret every cluster-port request must carry (`Authorization: Bearer …`).
    /// Required with more than one node; a one-node ledger generates one at start.
    #[serde(default)]
    pub ledger_cluster_secret: Option<SecretString>,
    #[serde(default)]
    pub ledger_bootstrap: Bootstrap,
    /// `1=ledger-0.ledger:7100,2=ledger-1.ledger:7100,3=ledger-2.ledger:7100`
    #[serde(default)]
    pub ledger_initial_members: String,
    /// PEM file with the checkpoint signing keys (an Ed25519 and an SM2 PKCS#8 key); every
    /// node of a cluster must use the same file. A one-node ledger creates
    /// `<data dir>/checkpoint-keys.pem` when it is missing.
    #[serde(default)]
    pub ledger_checkpoint_key_file: Option<PathBuf>,
    /// First part of every tenant's checkpoint origin: `<prefix>/<tenant id>`.
    #[serde(default = "default_origin_prefix")]
    pub ledger_origin_prefix: String,
    /// Largest accepted payload (entries hold ids and hashes only).
    #[serde(default = "default_max_payload")]
    pub ledger_max_payload_bytes: usize,
    /// Most entries proposed in one Raft entry.
    #[serde(default = "default_max_batch")]
    pub ledger_max_batch: usize,
    /// A snapshot is taken once the log since the last one holds this many Raft entries or
    /// ledger entries (the log is purged after it; see [`crate::snapshots`]).
    #[serde(default = "default_snapshot_every")]
    pub ledger_snapshot_every: u64,
    /// Raft entries of log kept before a snapshot, but at most about as many ledger entries
    /// (see [`crate::snapshots`]), so a briefly lagging follower catches up from the log
    /// rather than a whole snapshot.
    #[serde(default = "default_keep_logs")]
    pub ledger_snapshot_keep_logs: u64,
    /// Memory (MiB) for leaf hashes kept for proofs, all tenants together: 32 B per entry, so
    /// 512 MiB covers 16M entries. Proofs of entries beyond it read a block of leaf hashes from
    /// the store (a disk read once the store outgrows the page cache). 0 keeps none.
    #[serde(default = "default_leaf_hash_cache_mb")]
    pub ledger_leaf_hash_cache_mb: u64,
    /// Memory (MiB) for the state database's page cache (redb's, on top of the OS page
    /// cache; filled as pages are read). A larger one did not make appends cheaper at 10M
    /// entries (docs/PERFORMANCE.md), so this is a memory knob, not a speed one.
    #[serde(default = "default_state_cache_mb")]
    pub ledger_state_cache_mb: u64,
    /// Entries per generation of the leaf-hash and request-id indexes (docs/ARCHITECTURE.md,
    /// state layout): an append costs what an insert into one generation's trees costs, so
    /// smaller generations make appends cheaper, at 10 bits of request filter per entry either
    /// way and one filter probe per sealed generation on each new request id. A changed
    /// value applies from the active generation on; sealed ones keep their size.
    #[serde(default = "default_index_generation_entries")]
    pub ledger_index_generation_entries: u64,
    /// How long an append waits for commit before answering `unavailable` (outcome unknown;
    /// retry with the same request id).
    #[serde(default = "default_propose_timeout")]
    pub ledger_propose_timeout_ms: u64,
    #[serde(default = "default_heartbeat")]
    pub ledger_heartbeat_ms: u64,
    #[serde(default = "default_election_min")]
    pub ledger_election_timeout_min_ms: u64,
    #[serde(default = "default_election_max")]
    pub ledger_election_timeout_max_ms: u64,
    /// Lets the admin API block traffic to and from chosen peers (partition tests only).
    #[serde(default)]
    pub ledger_fault_injection: bool,
    /// Check every stored entry and tree node against each other at start; refuse to start on
    /// a mismatch (tampering or corruption). Cost grows with the ledger's size.
    #[serde(default = "default_true")]
    pub ledger_verify_on_start: bool,
}

fn default_node_id() -> u64 {
    1
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data/ledger")
}
fn default_cluster_host() -> String {
    "127.0.0.1".into()
}
fn default_origin_prefix() -> String {
    "caretrail.local".into()
}
fn default_max_payload() -> usize {
    16 * 1024
}
fn default_max_batch() -> usize {
    2048
}
fn default_snapshot_every() -> u64 {
    20_000
}
fn default_keep_logs() -> u64 {
    1000
}
fn default_leaf_hash_cache_mb() -> u64 {
    crate::storage::DEFAULT_LEAF_HASH_CACHE_BYTES >> 20
}
fn default_state_cache_mb() -> u64 {
    (crate::storage::DEFAULT_STATE_CACHE_BYTES >> 20) as u64
}
fn default_index_generation_entries() -> u64 {
    crate::storage::DEFAULT_GENERATION_ENTRIES
}
fn default_propose_timeout() -> u64 {
    10_000
}
fn default_heartbeat() -> u64 {
    100
}
fn default_election_min() -> u64 {
    500
}
fn default_election_max() -> u64 {
    1000
}
fn default_true() -> bool {
    true
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            ledger_node_id: default_node_id(),
            ledger_data_dir: default_data_dir(),
            ledger_cluster_host: default_cluster_host(),
            ledger_cluster_port: 0,
            ledger_advertise_addr: None,
            ledger_cluster_secret: None,
            ledger_bootstrap: Bootstrap::Single,
            ledger_initial_members: String::new(),
            ledger_checkpoint_key_file: None,
            ledger_origin_prefix: default_origin_prefix(),
            ledger_max_payload_bytes: default_max_payload(),
            ledger_max_batch: default_max_batch(),
            ledger_snapshot_every: default_snapshot_every(),
            ledger_snapshot_keep_logs: default_keep_logs(),
            ledger_leaf_hash_cache_mb: default_leaf_hash_cache_mb(),
            ledger_state_cache_mb: default_state_cache_mb(),
            ledger_index_generation_entries: default_index_generation_entries(),
            ledger_propose_timeout_ms: default_propose_timeout(),
            ledger_heartbeat_ms: default_heartbeat(),
            ledger_election_timeout_min_ms: default_election_min(),
            ledger_election_timeout_max_ms: default_election_max(),
            ledger_fault_injection: false,
            ledger_verify_on_start: true,
        }
    }
}

impl LedgerSettings {
    /// `ledger_initial_members` parsed: node id → cluster address.
    pub fn initial_members(&self) -> Result<BTreeMap<u64, String>, ConfigError> {
        let mut out = BTreeMap::new();
        for part in self
            .ledger_initial_members
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (id, addr) = part.split_once('=').ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "ledger_initial_members: {part:?} is not <id>=<host:port>"
                ))
            })?;
            let id: u64 = id.trim().parse().map_err(|_| {
                ConfigError::Invalid(format!("ledger_initial_members: bad node id in {part:?}"))
            })?;
            if id == 0
                || addr.trim().is_empty()
                || out.insert(id, addr.trim().to_string()).is_some()
            {
                return Err(ConfigError::Invalid(format!(
                    "ledger_initial_members: bad or repeated member {part:?}"
                )));
            }
        }
        Ok(out)
    }

    /// How this node opens its storage.
    pub fn store_options(&self) -> crate::storage::StoreOptions {
        crate::storage::StoreOptions {
            leaf_hash_cache_bytes: self.ledger_leaf_hash_cache_mb << 20,
            state_cache_bytes: usize::try_from(self.ledger_state_cache_mb << 20)
                .unwrap_or(usize::MAX),
            index_generation_entries: self.ledger_index_generation_entries,
            // Derived from the checkpoint key when the node starts (lib.rs).
            at_rest_key: None,
        }
    }

    pub fn checkpoint_key_file(&self) -> PathBuf {
        self.ledger_checkpoint_key_file
            .clone()
            .unwrap_or_else(|| self.ledger_data_dir.join("checkpoint-keys.pem"))
    }
}

impl Validate for LedgerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.ledger_node_id == 0 {
            return invalid("ledger_node_id must be ≥ 1");
        }
        let members = self.initial_members()?;
        match self.ledger_bootstrap {
            Bootstrap::Members => {
                if !members.contains_key(&self.ledger_node_id) {
                    return invalid(
                        "ledger_bootstrap = members needs ledger_initial_members that include this node",
                    );
                }
            }
            Bootstrap::Single | Bootstrap::None => {}
        }
        let clustered = self.ledger_bootstrap != Bootstrap::Single;
        if clustered {
            match &self.ledger_cluster_secret {
                Some(s) if s.expose_secret().len() >= 16 => {}
                _ => {
                    return invalid(
                        "ledger_cluster_secret (≥ 16 characters) is required for a multi-node ledger",
                    );
                }
            }
            if self.ledger_checkpoint_key_file.is_none() {
                return invalid(
                    "ledger_checkpoint_key_file is required for a multi-node ledger (every node signs with the same keys)",
                );
            }
        }
        if self.ledger_origin_prefix.is_empty()
            || self.ledger_origin_prefix.contains(char::is_whitespace)
            || self.ledger_origin_prefix.contains('+')
        {
            return invalid("ledger_origin_prefix must be non-empty, without spaces or '+'");
        }
        if !(256..=caretrail_ledger_proofs::entry::MAX_PAYLOAD_LEN)
            .contains(&self.ledger_max_payload_bytes)
        {
            return invalid("ledger_max_payload_bytes must be 256..=1048576");
        }
        if !(1..=10_000).contains(&self.ledger_max_batch) {
            return invalid("ledger_max_batch must be 1..=10000");
        }
        if self.ledger_snapshot_every < 100 {
            return invalid("ledger_snapshot_every must be ≥ 100");
        }
        if self.ledger_leaf_hash_cache_mb > 1 << 20 {
            return invalid("ledger_leaf_hash_cache_mb must be 0..=1048576");
        }
        if !(16..=1 << 20).contains(&self.ledger_state_cache_mb) {
            return invalid("ledger_state_cache_mb must be 16..=1048576");
        }
        if !(1024..=1 << 30).contains(&self.ledger_index_generation_entries) {
            return invalid("ledger_index_generation_entries must be 1024..=1073741824");
        }
        if !(100..=600_000).contains(&self.ledger_propose_timeout_ms) {
            return invalid("ledger_propose_timeout_ms must be 100..=600000");
        }
        if self.ledger_heartbeat_ms == 0
            || self.ledger_election_timeout_min_ms <= self.ledger_heartbeat_ms
            || self.ledger_election_timeout_max_ms <= self.ledger_election_timeout_min_ms
        {
            return invalid("need 0 < heartbeat < election_timeout_min < election_timeout_max");
        }
        Ok(())
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.service.validate()?;
        self.ledger.validate()
    }
}

impl Config {
    /// Defaults → `CARETRAIL_CONFIG` file → `CARETRAIL_*` environment.
    pub fn load() -> Result<Self, ConfigError> {
        caretrail_platform::config::load(None)
    }

    /// Defaults around the given service settings (tests, the all-in-one binary).
    pub fn new(service: ServiceSettings, ledger: LedgerSettings) -> Self {
        Self {
            service,
            auth: AuthSettings::default(),
            ledger,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_state_cache_size_reaches_the_store_and_a_tiny_one_is_refused() {
        let settings = LedgerSettings {
            ledger_state_cache_mb: 1024,
            ..LedgerSettings::default()
        };
        assert!(settings.validate().is_ok());
        assert_eq!(settings.store_options().state_cache_bytes, 1 << 30);

        let tiny = LedgerSettings {
            ledger_state_cache_mb: 8,
            ..LedgerSettings::default()
        };
        let err = tiny.validate().unwrap_err().to_string();
        assert!(err.contains("ledger_state_cache_mb"), "{err}");
    }

    #[test]
    fn the_index_generation_size_reaches_the_store_within_its_bounds() {
        let settings = LedgerSettings {
            ledger_index_generation_entries: 1 << 17,
            ..LedgerSettings::default()
        };
        assert!(settings.validate().is_ok());
        assert_eq!(settings.store_options().index_generation_entries, 1 << 17);
        assert_eq!(
            LedgerSettings::default()
                .store_options()
                .index_generation_entries,
            crate::storage::DEFAULT_GENERATION_ENTRIES
        );
        for bad in [0, 1023, (1 << 30) + 1] {
            let err = LedgerSettings {
                ledger_index_generation_entries: bad,
                ..LedgerSettings::default()
            }
            .validate()
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("ledger_index_generation_entries"),
                "{bad}: {err}"
            );
        }
    }
}
