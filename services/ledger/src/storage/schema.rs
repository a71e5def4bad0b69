//! Tables of the state machine database (`state.redb`) and their record types.
//!
//! Tenants are numbered (`u32`, in registration order, identical on every replica because it
//! is assigned while applying the log) so that the per-entry keys stay short.
//!
//! | table | key | value |
//! |---|---|---|
//! | `sm_meta` | `"format"`, `"last_applied"`, `"membership"`, `"next_tenant_no"` | postcard |
//! | `tenants` | tenant id | `TenantRecord` (postcard: number, suite, size, origin, checkpoint key) |
//! | `entries_<tenant no>` | index | the canonical entry encoding (the Merkle leaf input) |
//! | `nodes` | (tenant no, level, index) | hash of the perfect subtree: level 0 (leaf hashes) and levels ≥ [`MIN_UPPER_LEVEL`] |
//! | `leaves`, `leaves_<g>` | (tenant no, leaf hash) | index |
//! | `requests`, `requests_<g>` | (tenant no, submitter, request id) | index |
//! | `request_filters` | generation g | Bloom filter of the sealed generation g's request keys |
//! | `keys` | (tenant no, institution, key id) | `KeyRecord` (derived from key entries, see [`super::keys`]) |
//! | `cosigs` | (tenant no, tree size, witness key name) | `CosigRecord` (witness cosignatures) |
//!
//! Entries, most of the bytes, have a table per tenant so that every append goes to the end of
//! its table: in one table keyed (tenant no, index), tenants appending at once insert in the
//! middle of it, and the B-tree's split pages stay about half full (format 2 measured 795
//! instead of 521 bytes per entry with 8 tenants). A tenant's table is created by its first
//! entry.
//!
//! The leaf-hash and request-id indexes are split into generations of up to 1M entries
//! (format 5), so that their random-key inserts cost the same whatever the ledger's size
//! ([`super::generations`]); generation 0 is named as format 4's single tables were.
//!
//! Levels 1–4 of the tree are not stored (format 4): each is the hash of at most 16 leaf
//! hashes of one block of 32, recomputed in a few µs from that block's leaf hashes, which a
//! proof reads anyway. Storing them cost ~0.94 B-tree inserts and ~85 B of pages per entry.

use caretrail_crypto::{HASH_LEN, HashValue, Suite};
use caretrail_ledger_proofs::{CompactRange, NodeId as TreeNodeId, root as merkle_root};
use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition, TableError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{Result, StoreError};

pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
pub(crate) const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
/// Format 2's one table of every tenant's entries (moved into per-tenant tables on open).
pub(crate) const ENTRIES_V2: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("entries");
pub(crate) const NODES: TableDefinition<(u32, u8, u64), [u8; HASH_LEN]> =
    TableDefinition::new("nodes");
pub(crate) const KEYS: TableDefinition<(u32, &str, &str), &[u8]> = TableDefinition::new("keys");
pub(crate) const COSIGS: TableDefinition<(u32, u64, &str), &[u8]> = TableDefinition::new("cosigs");

pub(crate) const KEY_LAST_APPLIED: &str = "last_applied";
pub(crate) const KEY_MEMBERSHIP: &str = "membership";
pub(crate) const KEY_NEXT_TENANT_NO: &str = "next_tenant_no";
pub(crate) const KEY_FORMAT: &str = "format";
/// Set (to `1`) once every stored entry is sealed at rest ([`super::at_rest`]).
pub(crate) const KEY_SEALED_AT_REST: &str = "sealed_at_rest";

/// Layout version of `state.redb`, stored under [`KEY_FORMAT`]; formats 2 to 5 are converted
/// when opened, any other version is refused rather than misread. Format 6: entries may be
/// sealed at rest ([`super::at_rest`]; a format-5 build would misread them).
pub(crate) const FORMAT_VERSION: u32 = 6;

/// Lowest tree level above the leaves that `nodes` stores (a level-5 node covers 32 entries).
pub(crate) const MIN_UPPER_LEVEL: u8 = 5;

/// Whether `nodes` holds the nodes of `level` (the others are recomputed from leaf hashes).
pub(crate) fn stores_level(level: u8) -> bool {
    level == 0 || level >= MIN_UPPER_LEVEL
}

/// First leaf of the block of `2^MIN_UPPER_LEVEL` leaves that holds leaf `index`.
pub(crate) fn block_start(index: u64) -> u64 {
    index & !((1u64 << MIN_UPPER_LEVEL) - 1)
}

/// Name of tenant `no`'s entries table.
pub(crate) fn entries_table_name(no: u32) -> String {
    format!("entries_{no}")
}

/// Definition of the entries table named `name` ([`entries_table_name`]).
pub(crate) fn entries_table(name: &str) -> TableDefinition<'_, u64, &'static [u8]> {
    TableDefinition::new(name)
}

pub(crate) type EntriesRead = ReadOnlyTable<u64, &'static [u8]>;

/// Tenant `no`'s entries table, or `None` while it has no entries.
pub(crate) fn read_entries(txn: &ReadTransaction, no: u32) -> Result<Option<EntriesRead>> {
    open_if_exists(txn, entries_table(&entries_table_name(no)))
}

/// The table `definition` as of `txn`, or `None` if it was never created (tables created on
/// first use: a tenant's entries, the index generations).
pub(crate) fn open_if_exists<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    definition: TableDefinition<'_, K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>> {
    match txn.open_table(definition) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What is stored per tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TenantRecord {
    pub no: u32,
    pub suite: Suite,
    /// Number of entries (the tree size).
    pub size: u64,
    pub origin: String,
    pub checkpoint_key: String,
    /// SubjectPublicKeyInfo DER of the registrar key (signs the key entries).
    pub registrar_key: Vec<u8>,
    /// Hex key id of the registrar key.
    pub registrar_key_id: String,
}

/// Every registered tenant, by id, with what is stored for it.
pub(crate) fn read_tenants(txn: &ReadTransaction) -> Result<Vec<(String, TenantRecord)>> {
    let table = txn.open_table(TENANTS)?;
    let mut out = Vec::new();
    for item in table.iter()? {
        let (k, v) = item?;
        out.push((k.value().to_string(), decode(v.value())?));
    }
    Ok(out)
}

/// A registered institution key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// SubjectPublicKeyInfo DER.
    pub public_key: Vec<u8>,
    /// Index of the `institution.key_registered` entry.
    pub registered_index: u64,
    /// Index of the `institution.key_revoked` entry, if revoked.
    pub revoked_index: Option<u64>,
}

/// A witness cosignature of the checkpoint at one tree size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CosigRecord {
    /// Root hash the witness cosigned.
    pub root: [u8; HASH_LEN],
    /// The signed-note signature line (`— <name> <base64>`).
    pub line: String,
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| StoreError::Engine(format!("encoding failed: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    Ok(postcard::from_bytes(bytes)?)
}

/// The perfect subtrees covering `[0, size)`, largest first: the nodes of a tree's frontier.
pub(crate) fn frontier_ids(size: u64) -> Vec<TreeNodeId> {
    let mut ids = Vec::with_capacity(size.count_ones() as usize);
    let mut pos = 0u64;
    for level in (0..64u8).rev() {
        let width = 1u64 << level;
        if size & width != 0 {
            ids.push(TreeNodeId::new(level, pos >> level));
            pos += width;
        }
    }
    ids
}

/// Rebuilds a tenant's [`CompactRange`] from its stored frontier nodes; those at levels 1–4
/// lie in the last, incomplete block and are recomputed from its leaf hashes.
pub(crate) fn load_frontier(
    nodes: &impl ReadableTable<(u32, u8, u64), [u8; HASH_LEN]>,
    tenant: &str,
    record: &TenantRecord,
) -> Result<CompactRange> {
    let missing = |level: u8, index: u64| {
        StoreError::Corrupt(format!(
            "tenant {tenant:?}: tree node ({level}, {index}) is missing"
        ))
    };
    let last_block = block_start(record.size);
    let mut last_leaves: Option<Vec<[u8; HASH_LEN]>> = None;
    let mut hashes = Vec::new();
    for id in frontier_ids(record.size) {
        if stores_level(id.level) {
            let bytes = nodes
                .get((record.no, id.level, id.index))?
                .ok_or_else(|| missing(id.level, id.index))?
                .value();
            hashes.push(HashValue::new(record.suite, bytes));
            continue;
        }
        let leaves = match &mut last_leaves {
            Some(leaves) => leaves,
            slot @ None => {
                let mut read = Vec::new();
                for item in
                    nodes.range((record.no, 0u8, last_block)..(record.no, 0u8, record.size))?
                {
                    read.push(item?.1.value());
                }
                slot.insert(read)
            }
        };
        let first = (id.index << id.level)
            .checked_sub(last_block)
            .and_then(|f| usize::try_from(f).ok())
            .ok_or_else(|| missing(id.level, id.index))?;
        let covered: Vec<HashValue> = leaves
            .get(first..first + (1usize << id.level))
            .ok_or_else(|| missing(id.level, id.index))?
            .iter()
            .map(|h| HashValue::new(record.suite, *h))
            .collect();
        // A perfect subtree's hash is the RFC 9162 root of its leaves.
        hashes.push(merkle_root(record.suite, &covered)?);
    }
    Ok(CompactRange::from_parts(record.suite, record.size, hashes)?)
}
