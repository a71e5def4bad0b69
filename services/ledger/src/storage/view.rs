//! Read access to the ledger state: tenants, entries, roots, proofs, and the full-store
//! verification that detects tampering with the files.
//!
//! Every [`TenantTree`] reads from one redb read transaction (MVCC), so its size, entries and
//! tree nodes are mutually consistent however many appends land meanwhile. Proofs read
//! O(log n) stored perfect-subtree nodes ([`NodeSource`]); nothing is loaded into memory.
//! All calls block on disk reads: call them from a blocking thread in async code.

use std::cell::OnceCell;
use std::fmt;
use std::sync::Arc;

use caretrail_crypto::{HASH_LEN, HashValue, Suite};
use caretrail_ledger_proofs::{
    CompactRange, Entry, NodeId as TreeNodeId, NodeSource, ProofError, consistency_proof,
    inclusion_proof, leaf_hash, node_hash, root_at,
};
use redb::{ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable};

use super::at_rest::{AtRestKey, from_store};
use super::error::{Result, StoreError};
use super::generations::{IndexTables, ScanHint};
use super::schema::{
    COSIGS, CosigRecord, EntriesRead, KEYS, KeyRecord, MIN_UPPER_LEVEL, NODES, TENANTS,
    TenantRecord, decode, read_entries, read_tenants, stores_level,
};
use super::state::{SmShared, read_applied};
use super::tree_cache::{CachedNodes, TreeCache};
use super::types::{LogId, StoredMembership};

/// A tenant's log as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantInfo {
    pub tenant: String,
    pub suite: Suite,
    /// Number of entries (tree size).
    pub size: u64,
    pub origin: String,
    pub checkpoint_key: String,
    /// SubjectPublicKeyInfo DER of the registrar key.
    pub registrar_key: Vec<u8>,
    pub registrar_key_id: String,
}

impl TenantInfo {
    fn new(tenant: String, record: &TenantRecord) -> Self {
        Self {
            tenant,
            suite: record.suite,
            size: record.size,
            origin: record.origin.clone(),
            checkpoint_key: record.checkpoint_key.clone(),
            registrar_key: record.registrar_key.clone(),
            registrar_key_id: record.registrar_key_id.clone(),
        }
    }
}

/// Read handle on the ledger state (cheap to clone; follows snapshot installs).
#[derive(Clone)]
pub struct LedgerView {
    shared: Arc<SmShared>,
}

impl LedgerView {
    pub(crate) fn new(shared: Arc<SmShared>) -> Self {
        Self { shared }
    }

    /// Last applied log id and membership.
    pub fn applied(&self) -> Result<(Option<LogId>, StoredMembership)> {
        read_applied(&self.shared.db())
    }

    /// All tenants, by id.
    pub fn tenants(&self) -> Result<Vec<TenantInfo>> {
        Ok(read_tenants(&self.shared.db().begin_read()?)?
            .into_iter()
            .map(|(tenant, record)| TenantInfo::new(tenant, &record))
            .collect())
    }

    pub fn tenant(&self, tenant: &str) -> Result<Option<TenantInfo>> {
        let db = self.shared.db();
        let txn = db.begin_read()?;
        let table = txn.open_table(TENANTS)?;
        match table.get(tenant)? {
            Some(v) => {
                let record: TenantRecord = decode(v.value())?;
                Ok(Some(TenantInfo::new(tenant.to_string(), &record)))
            }
            None => Ok(None),
        }
    }

    /// Ledger entries (all tenants) in the state now, and in the last snapshot taken or
    /// installed (or at start, if there is none).
    pub fn entry_counts(&self) -> (u64, u64) {
        self.shared.counts.get()
    }

    /// Tree nodes held in memory for proofs (all tenants).
    pub fn cached_tree_nodes(&self) -> CachedNodes {
        self.shared.tree_cache.counts()
    }

    /// Empties the in-memory tree nodes: proofs read everything from the store (benchmarks,
    /// tests) until [`Self::reload_cached_tree_nodes`].
    #[doc(hidden)]
    pub fn forget_cached_tree_nodes(&self) {
        self.shared.tree_cache.clear();
    }

    /// Drops the in-memory leaf hashes only (benchmarks of proofs without them).
    #[doc(hidden)]
    pub fn forget_cached_leaf_hashes(&self) {
        self.shared.tree_cache.clear_leaves();
    }

    /// Whether the tree nodes are still being loaded into memory (after a start or a
    /// snapshot install).
    pub fn loading_tree_nodes(&self) -> bool {
        self.shared.tree_cache.loading()
    }

    /// Waits until the tree nodes being loaded into memory are in.
    #[doc(hidden)]
    pub fn wait_tree_nodes_loaded(&self) {
        self.shared.tree_cache.wait_loaded();
    }

    /// Loads the in-memory tree nodes again, as opening the store does, and waits for them.
    #[doc(hidden)]
    pub fn reload_cached_tree_nodes(&self) {
        self.shared.load_tree_cache();
        self.shared.tree_cache.wait_loaded();
    }

    /// A consistent read view of one tenant's log and tree.
    pub fn tree(&self, tenant: &str) -> Result<TenantTree> {
        let db = self.shared.db();
        let txn = db.begin_read()?;
        let record: TenantRecord = {
            let table = txn.open_table(TENANTS)?;
            let v = table
                .get(tenant)?
                .ok_or_else(|| StoreError::UnknownTenant(tenant.to_string()))?;
            decode(v.value())?
        };
        Ok(TenantTree {
            tree_cache: Arc::clone(&self.shared.tree_cache),
            at_rest: self.shared.at_rest.clone(),
            no: record.no,
            info: TenantInfo::new(tenant.to_string(), &record),
            txn,
            entries: OnceCell::new(),
            nodes: OnceCell::new(),
            indexes: OnceCell::new(),
            keys: OnceCell::new(),
            cosigs: OnceCell::new(),
        })
    }

    /// Recomputes every tenant's leaf hashes and tree nodes from the stored entries and
    /// compares them, and the indexes, with what is stored. Stops at the first mismatch.
    ///
    /// This detects any change to stored entries, nodes or indexes that is not a consistent
    /// rewrite of a tenant's whole tree; a consistent rewrite changes the root, which only a
    /// signed checkpoint held elsewhere can reveal.
    pub fn verify_store(&self) -> Result<VerifyReport> {
        let db = self.shared.db();
        let txn = db.begin_read()?;
        let tenants = txn.open_table(TENANTS)?;
        let tables = VerifyTables {
            nodes: txn.open_table(NODES)?,
            indexes: IndexTables::open(&txn)?,
            at_rest: self.shared.at_rest.clone(),
        };
        let mut report = VerifyReport::default();
        for item in tenants.iter()? {
            let (k, v) = item?;
            let tenant = k.value().to_string();
            report.tenants += 1;
            let record: TenantRecord = match decode(v.value()) {
                Ok(r) => r,
                Err(e) => {
                    report.first_mismatch = Some(Mismatch::new(
                        &tenant,
                        None,
                        format!("tenant record does not decode: {e}"),
                    ));
                    return Ok(report);
                }
            };
            let entries = read_entries(&txn, record.no)?;
            if let Some(m) =
                tables.verify_tenant(&tenant, &record, entries.as_ref(), &mut report.entries)?
            {
                report.first_mismatch = Some(m);
                return Ok(report);
            }
        }
        Ok(report)
    }
}

/// Outcome of [`LedgerView::verify_store`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub tenants: u64,
    /// Entries checked.
    pub entries: u64,
    pub first_mismatch: Option<Mismatch>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.first_mismatch.is_none()
    }
}

/// Where stored data disagrees with what its entries imply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub tenant: String,
    /// The entry concerned, when there is one.
    pub index: Option<u64>,
    pub problem: String,
}

impl Mismatch {
    fn new(tenant: &str, index: Option<u64>, problem: String) -> Self {
        Self {
            tenant: tenant.to_string(),
            index,
            problem,
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "tenant {:?} entry {i}: {}", self.tenant, self.problem),
            None => write!(f, "tenant {:?}: {}", self.tenant, self.problem),
        }
    }
}

struct VerifyTables {
    nodes: ReadOnlyTable<(u32, u8, u64), [u8; HASH_LEN]>,
    indexes: IndexTables,
    at_rest: Option<Arc<AtRestKey>>,
}

impl VerifyTables {
    fn verify_tenant(
        &self,
        tenant: &str,
        record: &TenantRecord,
        entries: Option<&EntriesRead>,
        entries_checked: &mut u64,
    ) -> Result<Option<Mismatch>> {
        let no = record.no;
        let suite = record.suite;
        let at =
            |index: u64, problem: String| Ok(Some(Mismatch::new(tenant, Some(index), problem)));
        let mut range = CompactRange::new(suite);
        let mut node_count = 0u64;
        let mut request_count = 0u64;
        // Entries come in index order, so each is indexed in the generation of the one before
        // or a newer one.
        let mut hint = ScanHint::default();
        for item in entries
            .map(|t| t.range(0u64..))
            .transpose()?
            .into_iter()
            .flatten()
        {
            let (k, v) = item?;
            let index = k.value();
            let expected = range.size();
            if index != expected {
                return at(
                    expected,
                    format!("entry is missing (next stored is {index})"),
                );
            }
            let bytes = match from_store(self.at_rest.as_deref(), tenant, index, v.value()) {
                Ok(b) => b,
                Err(e) => return at(index, format!("stored entry does not open: {e}")),
            };
            let bytes = bytes.as_ref();
            let entry = match Entry::decode(bytes) {
                Ok(e) => e,
                Err(e) => return at(index, format!("stored entry does not decode: {e}")),
            };
            if entry.tenant != tenant || entry.index != index {
                return at(
                    index,
                    format!(
                        "stored entry claims tenant {:?} index {}",
                        entry.tenant, entry.index
                    ),
                );
            }
            let leaf = leaf_hash(suite, bytes);
            for (id, hash) in range.append(leaf)? {
                if !stores_level(id.level) {
                    continue;
                }
                node_count += 1;
                match self.nodes.get((no, id.level, id.index))? {
                    None => {
                        return at(
                            index,
                            format!("tree node ({}, {}) is missing", id.level, id.index),
                        );
                    }
                    Some(stored) if stored.value() != *hash.as_bytes() => {
                        let what = if id.level == 0 {
                            "stored leaf hash differs from the hash of the stored entry".to_string()
                        } else {
                            format!(
                                "stored tree node ({}, {}) differs from the recomputed one",
                                id.level, id.index
                            )
                        };
                        return at(index, what);
                    }
                    Some(_) => {}
                }
            }
            if self.indexes.leaf_scanning(no, leaf.as_bytes(), &mut hint)? != Some(index) {
                return at(index, "leaf-hash index does not point at this entry".into());
            }
            if !entry.request_id.is_empty() {
                request_count += 1;
                let got = self.indexes.request_scanning(
                    no,
                    entry.submitter.as_str(),
                    entry.request_id.as_str(),
                    &mut hint,
                )?;
                if got != Some(index) {
                    return at(
                        index,
                        "request-id index does not point at this entry".into(),
                    );
                }
            }
            *entries_checked += 1;
        }
        let whole = |problem: String| Ok(Some(Mismatch::new(tenant, None, problem)));
        if range.size() != record.size {
            return whole(format!(
                "the tenant record says {} entries, {} are stored",
                record.size,
                range.size()
            ));
        }
        let stored_nodes = self
            .nodes
            .range((no, 0u8, 0u64)..=(no, u8::MAX, u64::MAX))?
            .count() as u64;
        if stored_nodes != node_count {
            return whole(format!(
                "{stored_nodes} tree nodes are stored, the entries imply {node_count}"
            ));
        }
        let stored_leaves = self.indexes.count_leaves(no)?;
        if stored_leaves != range.size() {
            return whole(format!(
                "{stored_leaves} leaf-hash index rows for {} entries",
                range.size()
            ));
        }
        let stored_requests = self.indexes.count_requests(no)?;
        if stored_requests != request_count {
            return whole(format!(
                "{stored_requests} request-id index rows for {request_count} entries with request ids"
            ));
        }
        Ok(None)
    }
}

/// One tenant's log and Merkle tree as of one read transaction. Implements [`NodeSource`], so
/// the `caretrail_ledger_proofs` proof functions run directly on the store.
pub struct TenantTree {
    tree_cache: Arc<TreeCache>,
    /// Opens entries sealed at rest.
    at_rest: Option<Arc<AtRestKey>>,
    no: u32,
    info: TenantInfo,
    txn: ReadTransaction,
    // Opened on first use: the append path's key check and receipts each need only a few,
    // and opening a table is a lookup of its own.
    entries: OnceCell<EntriesRead>,
    nodes: OnceCell<ReadOnlyTable<(u32, u8, u64), [u8; HASH_LEN]>>,
    indexes: OnceCell<IndexTables>,
    keys: OnceCell<KeysTable>,
    cosigs: OnceCell<CosigsTable>,
}

type KeysTable = ReadOnlyTable<(u32, &'static str, &'static str), &'static [u8]>;
type CosigsTable = ReadOnlyTable<(u32, u64, &'static str), &'static [u8]>;

fn opened<'a, K: redb::Key + 'static, V: redb::Value + 'static>(
    cell: &'a OnceCell<ReadOnlyTable<K, V>>,
    txn: &ReadTransaction,
    definition: redb::TableDefinition<'_, K, V>,
) -> Result<&'a ReadOnlyTable<K, V>> {
    if let Some(table) = cell.get() {
        return Ok(table);
    }
    let table = txn.open_table(definition)?;
    Ok(cell.get_or_init(|| table))
}

/// A registered institution key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstitutionKey {
    pub institution: String,
    pub key_id: String,
    /// SubjectPublicKeyInfo DER.
    pub public_key: Vec<u8>,
    pub registered_index: u64,
    pub revoked_index: Option<u64>,
}

/// A witness cosignature as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCosignature {
    pub size: u64,
    pub witness: String,
    pub root: HashValue,
    pub line: String,
}

impl TenantTree {
    pub fn info(&self) -> &TenantInfo {
        &self.info
    }

    /// Tree size (number of entries) as of this view.
    pub fn size(&self) -> u64 {
        self.info.size
    }

    fn check_size(&self, size: u64) -> Result<()> {
        if size > self.info.size {
            return Err(StoreError::NotFound(format!(
                "tree size {size} (tenant {:?} has {} entries)",
                self.info.tenant, self.info.size
            )));
        }
        Ok(())
    }

    fn check_index(&self, index: u64) -> Result<()> {
        if index >= self.info.size {
            return Err(StoreError::NotFound(format!(
                "entry {index} (tenant {:?} has {} entries)",
                self.info.tenant, self.info.size
            )));
        }
        Ok(())
    }

    /// Root of the whole tree as of this view.
    pub fn root(&self) -> Result<HashValue> {
        root_at(self, self.info.size)
    }

    /// Root of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<HashValue> {
        self.check_size(size)?;
        root_at(self, size)
    }

    /// The stored canonical encoding of entry `index`, checked against its stored leaf hash
    /// (a tampered entry is reported, not served).
    pub fn entry_bytes(&self, index: u64) -> Result<Vec<u8>> {
        self.check_index(index)?;
        let stored = self.entries_table()?.get(index)?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "tenant {:?}: entry {index} is missing",
                self.info.tenant
            ))
        })?;
        let bytes = from_store(
            self.at_rest.as_deref(),
            &self.info.tenant,
            index,
            stored.value(),
        )?
        .into_owned();
        if leaf_hash(self.info.suite, &bytes) != self.node(0, index)? {
            return Err(StoreError::Corrupt(format!(
                "tenant {:?}: entry {index} does not match its leaf hash",
                self.info.tenant
            )));
        }
        Ok(bytes)
    }

    fn entries_table(&self) -> Result<&EntriesRead> {
        if let Some(table) = self.entries.get() {
            return Ok(table);
        }
        let table = read_entries(&self.txn, self.no)?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "tenant {:?}: its entries table is missing",
                self.info.tenant
            ))
        })?;
        Ok(self.entries.get_or_init(|| table))
    }

    /// Entry `index`, decoded (and checked as in [`Self::entry_bytes`]).
    pub fn entry(&self, index: u64) -> Result<Entry> {
        let bytes = self.entry_bytes(index)?;
        Entry::decode(&bytes).map_err(|e| {
            StoreError::Corrupt(format!(
                "tenant {:?}: entry {index} does not decode: {e}",
                self.info.tenant
            ))
        })
    }

    /// Entries `[start, end)` (clamped to the tree size).
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Entry>> {
        let end = end.min(self.info.size);
        (start..end).map(|i| self.entry(i)).collect()
    }

    /// Stored leaf hash of entry `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<HashValue> {
        self.check_index(index)?;
        self.node(0, index)
    }

    /// Index of the entry with this leaf hash.
    pub fn index_of_leaf(&self, leaf: &HashValue) -> Result<Option<u64>> {
        if leaf.suite() != self.info.suite {
            return Ok(None);
        }
        Ok(self
            .indexes()?
            .leaf(self.no, leaf.as_bytes())?
            .filter(|i| *i < self.info.size))
    }

    /// Index of the entry appended for (submitter, request id).
    pub fn index_of_request(&self, submitter: &str, request_id: &str) -> Result<Option<u64>> {
        Ok(self
            .indexes()?
            .request(self.no, submitter, request_id)?
            .filter(|i| *i < self.info.size))
    }

    fn indexes(&self) -> Result<&IndexTables> {
        if let Some(indexes) = self.indexes.get() {
            return Ok(indexes);
        }
        let opened = IndexTables::open(&self.txn)?;
        Ok(self.indexes.get_or_init(|| opened))
    }

    /// RFC 9162 inclusion proof of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<HashValue>> {
        self.check_size(size)?;
        inclusion_proof(self, index, size)
    }

    /// Inclusion proof by leaf hash: the entry's index and the proof.
    pub fn inclusion_proof_by_leaf(
        &self,
        leaf: &HashValue,
        size: u64,
    ) -> Result<(u64, Vec<HashValue>)> {
        let index = self
            .index_of_leaf(leaf)?
            .ok_or_else(|| StoreError::NotFound(format!("leaf hash {leaf}")))?;
        Ok((index, self.inclusion_proof(index, size)?))
    }

    /// A key of `institution` (as of this view; `revoked_index` tells if and where it ended).
    pub fn key(&self, institution: &str, key_id: &str) -> Result<Option<InstitutionKey>> {
        Ok(super::keys::lookup(
            opened(&self.keys, &self.txn, KEYS)?,
            self.no,
            institution,
            key_id,
        )?
        .map(|r| InstitutionKey::new(institution.to_string(), key_id.to_string(), r)))
    }

    /// Every registered key of the tenant (or of one institution), ordered by institution and
    /// key id.
    pub fn keys(&self, institution: Option<&str>) -> Result<Vec<InstitutionKey>> {
        let mut out = Vec::new();
        for item in opened(&self.keys, &self.txn, KEYS)?.range((self.no, "", "")..)? {
            let (k, v) = item?;
            let (no, inst, key_id) = k.value();
            if no != self.no {
                break;
            }
            if institution.is_some_and(|i| i != inst) {
                continue;
            }
            let record: KeyRecord = decode(v.value())?;
            out.push(InstitutionKey::new(
                inst.to_string(),
                key_id.to_string(),
                record,
            ));
        }
        Ok(out)
    }

    /// Witness cosignatures recorded for the checkpoint of `size` entries.
    pub fn cosignatures(&self, size: u64) -> Result<Vec<StoredCosignature>> {
        let mut out = Vec::new();
        for item in opened(&self.cosigs, &self.txn, COSIGS)?.range((self.no, size, "")..)? {
            let (k, v) = item?;
            let (no, at, witness) = k.value();
            if no != self.no || at != size {
                break;
            }
            let record: CosigRecord = decode(v.value())?;
            out.push(StoredCosignature {
                size: at,
                witness: witness.to_string(),
                root: HashValue::new(self.info.suite, record.root),
                line: record.line,
            });
        }
        Ok(out)
    }

    /// The largest tree size that has at least one witness cosignature.
    pub fn latest_cosigned_size(&self) -> Result<Option<u64>> {
        let mut range = opened(&self.cosigs, &self.txn, COSIGS)?
            .range((self.no, 0u64, "")..(self.no, u64::MAX, ""))?;
        match range.next_back() {
            Some(item) => Ok(Some(item?.0.value().1)),
            None => Ok(None),
        }
    }

    /// RFC 9162 consistency proof between the trees of `old_size` and `new_size` entries.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<HashValue>> {
        self.check_size(new_size)?;
        consistency_proof(self, old_size, new_size)
    }
}

/// The nodes below [`MIN_UPPER_LEVEL`] of one block of `2^MIN_UPPER_LEVEL` leaves (the last
/// block may be incomplete), recomputed from its leaf hashes (kept in memory, or one range read
/// of adjacent keys): levels 1–4 are not stored, and level-0 siblings read one by one would
/// each land on a different page once the store outgrows memory.
struct LowerBlock {
    block: u64,
    /// `levels[l]` holds the block's nodes at level `l` (level 0 = its leaf hashes).
    levels: Vec<Vec<[u8; HASH_LEN]>>,
}

impl LowerBlock {
    fn of(level: u8, index: u64) -> u64 {
        index >> (MIN_UPPER_LEVEL - level)
    }

    fn get(&self, level: u8, index: u64) -> Option<[u8; HASH_LEN]> {
        let first = self.block << (MIN_UPPER_LEVEL - level);
        let row = self.levels.get(usize::from(level))?;
        row.get(usize::try_from(index.checked_sub(first)?).ok()?)
            .copied()
    }
}

/// The row of nodes above `row` (pairs hashed; an odd last node has no parent yet).
fn parents(suite: Suite, row: &[[u8; HASH_LEN]]) -> Vec<[u8; HASH_LEN]> {
    row.chunks_exact(2)
        .map(|pair| {
            *node_hash(
                suite,
                &HashValue::new(suite, pair[0]),
                &HashValue::new(suite, pair[1]),
            )
            .as_bytes()
        })
        .collect()
}

impl TenantTree {
    fn lower_block(&self, block: u64) -> Result<LowerBlock> {
        let width = 1u64 << MIN_UPPER_LEVEL;
        let first = block.saturating_mul(width);
        let end = first.saturating_add(width).min(self.info.size);
        let count = end.saturating_sub(first);
        let leaves = match usize::try_from(count)
            .ok()
            .and_then(|n| self.tree_cache.leaf_run(self.no, first, n))
        {
            Some(leaves) => leaves,
            None => {
                let mut leaves = Vec::with_capacity(width as usize);
                for item in opened(&self.nodes, &self.txn, NODES)?
                    .range((self.no, 0u8, first)..(self.no, 0u8, end))?
                {
                    leaves.push(item?.1.value());
                }
                leaves
            }
        };
        if leaves.len() as u64 != count {
            return Err(StoreError::Corrupt(format!(
                "tenant {:?}: leaf hashes {first}..{end} are incomplete",
                self.info.tenant,
            )));
        }
        let mut levels = vec![leaves];
        for _ in 1..MIN_UPPER_LEVEL {
            let below = levels.last().map_or(&[][..], Vec::as_slice);
            levels.push(parents(self.info.suite, below));
        }
        Ok(LowerBlock { block, levels })
    }
}

impl NodeSource for TenantTree {
    type Error = StoreError;

    fn suite(&self) -> Suite {
        self.info.suite
    }

    /// Upper levels come from memory; levels 1–4, and leaf hashes that share a block with
    /// another requested node (a proof's lowest siblings), are recomputed from that block's
    /// leaf hashes.
    fn nodes(&self, ids: &[TreeNodeId]) -> Result<Vec<HashValue>> {
        let in_block = |id: &TreeNodeId, block: u64| {
            id.level < MIN_UPPER_LEVEL && LowerBlock::of(id.level, id.index) == block
        };
        let mut block: Option<LowerBlock> = None;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if id.level < MIN_UPPER_LEVEL {
                let b = LowerBlock::of(id.level, id.index);
                let loaded = block.as_ref().is_some_and(|k| k.block == b);
                if !loaded
                    && (!stores_level(id.level)
                        || ids.iter().filter(|o| in_block(o, b)).count() >= 2)
                {
                    block = Some(self.lower_block(b)?);
                }
                if let Some(hash) = block
                    .as_ref()
                    .filter(|k| k.block == b)
                    .and_then(|k| k.get(id.level, id.index))
                {
                    out.push(HashValue::new(self.info.suite, hash));
                    continue;
                }
            }
            out.push(self.node(id.level, id.index)?);
        }
        Ok(out)
    }

    fn node(&self, level: u8, index: u64) -> Result<HashValue> {
        if !stores_level(level) {
            // Only nodes of complete subtrees within the tree's size exist.
            return self
                .lower_block(LowerBlock::of(level, index))?
                .get(level, index)
                .map(|hash| HashValue::new(self.info.suite, hash))
                .ok_or_else(|| ProofError::NodeUnavailable { level, index }.into());
        }
        if self.tree_cache.caches(level)
            && let Some(hash) = self.tree_cache.get(self.no, level, index)
        {
            return Ok(HashValue::new(self.info.suite, hash));
        }
        match opened(&self.nodes, &self.txn, NODES)?.get((self.no, level, index))? {
            Some(g) => Ok(HashValue::new(self.info.suite, g.value())),
            None => Err(ProofError::NodeUnavailable { level, index }.into()),
        }
    }
}

impl InstitutionKey {
    fn new(institution: String, key_id: String, record: KeyRecord) -> Self {
        Self {
            institution,
            key_id,
            public_key: record.public_key,
            registered_index: record.registered_index,
            revoked_index: record.revoked_index,
        }
    }
}
