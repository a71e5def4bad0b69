//! The leaf-hash and request-id indexes, split into generations.
//!
//! Both are keyed by random values (a hash, a client's request id). In one B-tree each,
//! every append's two inserts land on random leaf pages, so each dirties pages of its own, and
//! the more pages the trees have, the more of their branch pages each transaction copies too:
//! the apply cost per entry grew from 19 µs at 100k entries to ~50 µs at 10M
//! (docs/PERFORMANCE.md, "2026-12-02: the cluster at 10M entries").
//!
//! Here new keys go to the tables of the *active* generation, which takes at most
//! [`DEFAULT_GENERATION_ENTRIES`] entries; a full generation is sealed (never written again)
//! and the next one begins. An insert costs what it costs in a tree of one generation,
//! whatever the size of the ledger.
//!
//! Lookups probe the generations newest first. The append path looks up every request id
//! (idempotency), so each sealed generation has a Bloom filter of its request keys, written to
//! `request_filters` when it is sealed and held in memory: a request id never seen before (the
//! usual case) costs one cache line per sealed generation instead of a B-tree read. The active
//! generation's filter lives in memory and is rebuilt from its table at open. Which generation
//! is active follows from `request_filters`: the one after the last sealed.
//!
//! A filter only ever answers "maybe" for a key it was given, so a lookup never misses a key
//! that is stored; a filter that does not cover its table (a count mismatch) is rebuilt from
//! the table at open. Leaf-hash lookups (proofs by leaf hash, reads) probe every generation's
//! table; none is on the append path.
//!
//! Generation 0's tables are format 4's `leaves` and `requests`, so a format-4 store is read
//! as it is: its whole index becomes generation 0, sealed at the first append.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;

use caretrail_crypto::{HASH_LEN, Suite};
use redb::{
    ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};

use super::error::{Result, StoreError};
use super::schema::open_if_exists;

/// Entries per generation of the two indexes, unless [`super::StoreOptions`] says otherwise.
/// A generation's request filter takes 10 bits per entry (1.25 MiB); at open, the active
/// generation's filter is rebuilt from its table (0.2–0.3 s when it is full, file cached).
pub const DEFAULT_GENERATION_ENTRIES: u64 = 1 << 20;

/// Sealed generations' request filters: generation number → [`Bloom::encode`].
pub(crate) const REQUEST_FILTERS: TableDefinition<u32, &[u8]> =
    TableDefinition::new("request_filters");

pub(crate) type LeafKey = (u32, [u8; HASH_LEN]);
pub(crate) type RequestKey = (u32, &'static str, &'static str);

fn leaves_name(generation: u32) -> String {
    if generation == 0 {
        "leaves".into()
    } else {
        format!("leaves_{generation}")
    }
}

fn requests_name(generation: u32) -> String {
    if generation == 0 {
        "requests".into()
    } else {
        format!("requests_{generation}")
    }
}

fn leaves_table(name: &str) -> TableDefinition<'_, LeafKey, u64> {
    TableDefinition::new(name)
}

fn requests_table(name: &str) -> TableDefinition<'_, RequestKey, u64> {
    TableDefinition::new(name)
}

/// Creates generation 0's tables and the filters table (a new store).
pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(leaves_table(&leaves_name(0)))?;
    txn.open_table(requests_table(&requests_name(0)))?;
    txn.open_table(REQUEST_FILTERS)?;
    Ok(())
}

/// The active generation's number: the one after the last sealed.
fn active_generation(filters: &impl ReadableTable<u32, &'static [u8]>) -> Result<u32> {
    match filters.last()? {
        None => Ok(0),
        Some((last, _)) => last.value().checked_add(1).ok_or_else(|| {
            StoreError::Corrupt("request_filters: generation number overflow".into())
        }),
    }
}

/// What identifies a request key to the filters: SHA-256 of the key, as two words.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyHash(u64, u64);

pub(crate) fn request_hash(no: u32, submitter: &str, request_id: &str) -> KeyHash {
    // Length-prefixed, so that no two keys share an encoding. SHA-256 rather than a faster
    // hash: the filters are stored, and their hash must never change between builds.
    let mut buf = Vec::with_capacity(12 + submitter.len() + request_id.len());
    buf.extend_from_slice(&no.to_be_bytes());
    buf.extend_from_slice(&(submitter.len() as u32).to_be_bytes());
    buf.extend_from_slice(submitter.as_bytes());
    buf.extend_from_slice(&(request_id.len() as u32).to_be_bytes());
    buf.extend_from_slice(request_id.as_bytes());
    let digest = caretrail_crypto::hash(Suite::Intl, &buf);
    let bytes = digest.as_bytes();
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    };
    KeyHash(word(0), word(8))
}

/// A blocked Bloom filter: each key sets [`Bloom::PROBES`] bits of one 512-bit block (one
/// cache line), chosen by the two words of its [`KeyHash`]. At 10 bits per key, about 1 % of
/// absent keys are reported as "maybe".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bloom {
    blocks: Vec<[u64; 8]>,
    keys: u64,
}

const FILTER_MAGIC: &[u8; 8] = b"CTBLOOM\x01";

impl Bloom {
    const BITS_PER_KEY: u64 = 10;
    const PROBES: u64 = 7;

    /// An empty filter sized for `keys` keys.
    pub(crate) fn for_keys(keys: u64) -> Self {
        let blocks = (keys.max(1) * Self::BITS_PER_KEY).div_ceil(512);
        Self {
            blocks: vec![[0u64; 8]; blocks as usize],
            keys: 0,
        }
    }

    /// Keys inserted.
    pub(crate) fn keys(&self) -> u64 {
        self.keys
    }

    fn block(&self, h: KeyHash) -> usize {
        // Multiply-shift maps the word onto the blocks without a division's bias or cost.
        ((u128::from(h.0) * self.blocks.len() as u128) >> 64) as usize
    }

    fn bits(h: KeyHash) -> impl Iterator<Item = (usize, u64)> {
        (0..Self::PROBES).map(move |i| {
            let bit = (h.1 >> (i * 9)) & 511;
            ((bit >> 6) as usize, 1u64 << (bit & 63))
        })
    }

    pub(crate) fn insert(&mut self, h: KeyHash) {
        let at = self.block(h);
        if let Some(block) = self.blocks.get_mut(at) {
            for (word, mask) in Self::bits(h) {
                block[word] |= mask;
            }
        }
        self.keys += 1;
    }

    /// `false` only if the key was never inserted.
    pub(crate) fn may_contain(&self, h: KeyHash) -> bool {
        match self.blocks.get(self.block(h)) {
            Some(block) => Self::bits(h).all(|(word, mask)| block[word] & mask != 0),
            None => true,
        }
    }

    /// `"CTBLOOM" 0x01 ‖ u64le keys ‖ u64le words, 8 per block`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.blocks.len() * 64);
        out.extend_from_slice(FILTER_MAGIC);
        out.extend_from_slice(&self.keys.to_le_bytes());
        for word in self.blocks.iter().flatten() {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |what: &str| StoreError::Corrupt(format!("request filter: {what}"));
        let rest = bytes
            .strip_prefix(FILTER_MAGIC.as_slice())
            .ok_or_else(|| bad("bad magic"))?;
        let (keys, body) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| bad("truncated"))?;
        if body.is_empty() || body.len() % 64 != 0 {
            return Err(bad("size is not a whole number of blocks"));
        }
        let blocks = body
            .chunks_exact(64)
            .map(|chunk| {
                let mut block = [0u64; 8];
                for (word, bytes) in block.iter_mut().zip(chunk.chunks_exact(8)) {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(bytes);
                    *word = u64::from_le_bytes(w);
                }
                block
            })
            .collect();
        Ok(Self {
            blocks,
            keys: u64::from_le_bytes(*keys),
        })
    }
}

/// Which generation is active and the request filters, as the append path keeps them in
/// memory (one per state machine, loaded from its database; see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Generations {
    capacity: u64,
    active: u32,
    /// Rows in the active generation's leaf-hash table (one per entry).
    active_entries: u64,
    active_filter: Bloom,
    /// Filters of the sealed generations, by number.
    sealed: Vec<Bloom>,
}

impl Generations {
    /// The state of an empty database.
    pub(crate) fn empty(capacity: u64) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            active: 0,
            active_entries: 0,
            active_filter: Bloom::for_keys(capacity),
            sealed: Vec::new(),
        }
    }

    /// Reads the generations of `db`; rebuilds the active generation's filter (and any sealed
    /// one that does not match its table) from the table.
    pub(crate) fn load(db: &redb::Database, capacity: u64) -> Result<Self> {
        let capacity = capacity.max(1);
        let txn = db.begin_read()?;
        let filters = txn.open_table(REQUEST_FILTERS)?;
        let active = active_generation(&filters)?;
        let mut sealed = Vec::with_capacity(active as usize);
        for generation in 0..active {
            let requests = open_if_exists(&txn, requests_table(&requests_name(generation)))?;
            let rows = match &requests {
                Some(t) => t.len()?,
                None => 0,
            };
            let stored = filters
                .get(generation)?
                .map(|bytes| Bloom::decode(bytes.value()))
                .transpose();
            match stored {
                Ok(Some(filter)) if filter.keys() >= rows => sealed.push(filter),
                found => {
                    let problem = match found {
                        Err(e) => e.to_string(),
                        Ok(None) => "missing".into(),
                        Ok(Some(f)) => format!("covers {} of {rows} keys", f.keys()),
                    };
                    tracing::warn!(
                        generation,
                        problem,
                        "a sealed request filter is unusable; rebuilt from its table"
                    );
                    sealed.push(build_filter(requests.as_ref(), rows)?);
                }
            }
        }
        let requests = open_if_exists(&txn, requests_table(&requests_name(active)))?;
        let rows = match &requests {
            Some(t) => t.len()?,
            None => 0,
        };
        let active_filter = build_filter(requests.as_ref(), rows.max(capacity))?;
        let active_entries = match open_if_exists(&txn, leaves_table(&leaves_name(active)))? {
            Some(t) => t.len()?,
            None => 0,
        };
        Ok(Self {
            capacity,
            active,
            active_entries,
            active_filter,
            sealed,
        })
    }
}

/// A filter of every key in `requests`, sized for at least `size_for` keys.
fn build_filter(
    requests: Option<&redb::ReadOnlyTable<RequestKey, u64>>,
    size_for: u64,
) -> Result<Bloom> {
    let mut filter = Bloom::for_keys(size_for);
    if let Some(table) = requests {
        for item in table.iter()? {
            let (key, _) = item?;
            let (no, submitter, request_id) = key.value();
            filter.insert(request_hash(no, submitter, request_id));
        }
    }
    Ok(filter)
}

/// The indexes as one write transaction writes them: inserts go to the active generation,
/// which is sealed (and the next one opened) when full.
pub(crate) struct IndexWriter<'t> {
    txn: &'t WriteTransaction,
    leaves: Table<'t, LeafKey, u64>,
    requests: Table<'t, RequestKey, u64>,
    /// Sealed generations' request tables, opened when a filter answered "maybe".
    sealed_requests: HashMap<u32, Table<'t, RequestKey, u64>>,
}

impl<'t> IndexWriter<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction, generations: &Generations) -> Result<Self> {
        Ok(Self {
            txn,
            leaves: txn.open_table(leaves_table(&leaves_name(generations.active)))?,
            requests: txn.open_table(requests_table(&requests_name(generations.active)))?,
            sealed_requests: HashMap::new(),
        })
    }

    /// Index of the entry appended for (tenant no, submitter, request id), if any. `h` is
    /// [`request_hash`] of the key, computed once for this lookup and the key's insert.
    pub(crate) fn find_request(
        &mut self,
        generations: &Generations,
        no: u32,
        submitter: &str,
        request_id: &str,
        h: KeyHash,
    ) -> Result<Option<u64>> {
        if generations.active_filter.may_contain(h)
            && let Some(index) = self.requests.get((no, submitter, request_id))?
        {
            return Ok(Some(index.value()));
        }
        for (generation, filter) in generations.sealed.iter().enumerate().rev() {
            if !filter.may_contain(h) {
                continue;
            }
            let generation = generation as u32;
            let table = match self.sealed_requests.entry(generation) {
                Slot::Occupied(slot) => slot.into_mut(),
                Slot::Vacant(slot) => slot.insert(
                    self.txn
                        .open_table(requests_table(&requests_name(generation)))?,
                ),
            };
            if let Some(index) = table.get((no, submitter, request_id))? {
                return Ok(Some(index.value()));
            }
        }
        Ok(None)
    }

    /// Indexes entry `index` of tenant `no`, with its (submitter, request id, [`request_hash`])
    /// if it has a request id. On error the transaction must be dropped and `generations`
    /// reloaded ([`Generations::load`]): it may already count the insert.
    pub(crate) fn insert(
        &mut self,
        generations: &mut Generations,
        no: u32,
        leaf: &[u8; HASH_LEN],
        request: Option<(&str, &str, KeyHash)>,
        index: u64,
    ) -> Result<()> {
        self.leaves.insert((no, *leaf), index)?;
        if let Some((submitter, request_id, h)) = request {
            self.requests.insert((no, submitter, request_id), index)?;
            generations.active_filter.insert(h);
        }
        generations.active_entries += 1;
        if generations.active_entries >= generations.capacity {
            self.seal(generations)?;
        }
        Ok(())
    }

    fn seal(&mut self, generations: &mut Generations) -> Result<()> {
        let sealing = generations.active;
        let next = sealing
            .checked_add(1)
            .ok_or_else(|| StoreError::Engine("no index generation numbers left".into()))?;
        self.txn
            .open_table(REQUEST_FILTERS)?
            .insert(sealing, generations.active_filter.encode().as_slice())?;
        self.leaves = self.txn.open_table(leaves_table(&leaves_name(next)))?;
        let sealed_requests = std::mem::replace(
            &mut self.requests,
            self.txn.open_table(requests_table(&requests_name(next)))?,
        );
        self.sealed_requests.insert(sealing, sealed_requests);
        let filter = std::mem::replace(
            &mut generations.active_filter,
            Bloom::for_keys(generations.capacity),
        );
        generations.sealed.push(filter);
        generations.active = next;
        generations.active_entries = 0;
        tracing::info!(
            sealed = sealing,
            "index generation sealed; new leaf-hash and request-id keys go to the next"
        );
        Ok(())
    }
}

/// Every generation's tables, for reads (a read transaction's view), oldest first.
pub(crate) struct IndexTables {
    leaves: Vec<redb::ReadOnlyTable<LeafKey, u64>>,
    requests: Vec<redb::ReadOnlyTable<RequestKey, u64>>,
}

/// Where a scan in index order found its last key: a tenant's entries are indexed in order,
/// so the next one is in the same generation or a newer one.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ScanHint {
    leaves: usize,
    requests: usize,
}

/// Looks a key up in `tables[start..]`, then in the older ones; returns the value and the
/// position of the table that held it.
fn find_from<T>(
    tables: &[T],
    start: usize,
    get: impl Fn(&T) -> Result<Option<u64>>,
) -> Result<Option<(u64, usize)>> {
    let start = start.min(tables.len());
    let newer = tables.iter().enumerate().skip(start);
    let older = tables.iter().enumerate().take(start);
    for (at, table) in newer.chain(older) {
        if let Some(index) = get(table)? {
            return Ok(Some((index, at)));
        }
    }
    Ok(None)
}

impl IndexTables {
    pub(crate) fn open(txn: &ReadTransaction) -> Result<Self> {
        let active = match open_if_exists(txn, REQUEST_FILTERS)? {
            Some(filters) => active_generation(&filters)?,
            None => 0,
        };
        let mut leaves = Vec::new();
        let mut requests = Vec::new();
        for generation in 0..=active {
            if let Some(t) = open_if_exists(txn, leaves_table(&leaves_name(generation)))? {
                leaves.push(t);
            }
            if let Some(t) = open_if_exists(txn, requests_table(&requests_name(generation)))? {
                requests.push(t);
            }
        }
        Ok(Self { leaves, requests })
    }

    /// Newest generation first: recent entries are the ones most asked for.
    pub(crate) fn leaf(&self, no: u32, leaf: &[u8; HASH_LEN]) -> Result<Option<u64>> {
        for table in self.leaves.iter().rev() {
            if let Some(index) = table.get((no, *leaf))? {
                return Ok(Some(index.value()));
            }
        }
        Ok(None)
    }

    pub(crate) fn request(
        &self,
        no: u32,
        submitter: &str,
        request_id: &str,
    ) -> Result<Option<u64>> {
        for table in self.requests.iter().rev() {
            if let Some(index) = table.get((no, submitter, request_id))? {
                return Ok(Some(index.value()));
            }
        }
        Ok(None)
    }

    /// [`Self::leaf`] for a scan of a tenant's entries in index order: starts where the
    /// previous key was found, so a lookup usually probes one generation, not all of them.
    pub(crate) fn leaf_scanning(
        &self,
        no: u32,
        leaf: &[u8; HASH_LEN],
        hint: &mut ScanHint,
    ) -> Result<Option<u64>> {
        let found = find_from(&self.leaves, hint.leaves, |table| {
            Ok(table.get((no, *leaf))?.map(|g| g.value()))
        })?;
        Ok(found.map(|(index, at)| {
            hint.leaves = at;
            index
        }))
    }

    /// [`Self::request`] for a scan in index order (see [`Self::leaf_scanning`]).
    pub(crate) fn request_scanning(
        &self,
        no: u32,
        submitter: &str,
        request_id: &str,
        hint: &mut ScanHint,
    ) -> Result<Option<u64>> {
        let found = find_from(&self.requests, hint.requests, |table| {
            Ok(table.get((no, submitter, request_id))?.map(|g| g.value()))
        })?;
        Ok(found.map(|(index, at)| {
            hint.requests = at;
            index
        }))
    }

    /// Leaf-hash rows of tenant `no`, all generations.
    pub(crate) fn count_leaves(&self, no: u32) -> Result<u64> {
        let mut count = 0u64;
        for table in &self.leaves {
            count += table
                .range((no, [0u8; HASH_LEN])..=(no, [0xffu8; HASH_LEN]))?
                .count() as u64;
        }
        Ok(count)
    }

    /// Request-id rows of tenant `no`, all generations.
    pub(crate) fn count_requests(&self, no: u32) -> Result<u64> {
        let mut count = 0u64;
        for table in &self.requests {
            for item in table.range((no, "", "")..)? {
                let (key, _) = item?;
                if key.value().0 != no {
                    break;
                }
                count += 1;
            }
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys(n: u64, salt: &str) -> Vec<KeyHash> {
        (0..n)
            .map(|i| request_hash(1, "hospital-a", &format!("{salt}-{i}")))
            .collect()
    }

    #[test]
    fn a_filter_never_misses_a_key_it_was_given_and_rarely_claims_one_it_was_not() {
        let mut filter = Bloom::for_keys(20_000);
        for h in keys(20_000, "in") {
            filter.insert(h);
        }
        assert!(
            keys(20_000, "in")
                .into_iter()
                .all(|h| filter.may_contain(h))
        );
        let false_positives = keys(20_000, "out")
            .into_iter()
            .filter(|h| filter.may_contain(*h))
            .count();
        // ~1 % expected at 10 bits per key; 3 % would mean the probes are not independent.
        assert!(false_positives < 600, "{false_positives} of 20000");
        assert!(false_positives > 0, "a filter this full must err sometimes");
    }

    #[test]
    fn the_key_hash_separates_the_fields_of_a_request_key() {
        let a = request_hash(1, "ab", "c");
        let b = request_hash(1, "a", "bc");
        let c = request_hash(2, "ab", "c");
        assert_ne!((a.0, a.1), (b.0, b.1));
        assert_ne!((a.0, a.1), (c.0, c.1));
    }

    #[test]
    fn a_filter_survives_encoding_and_damaged_bytes_are_refused() {
        let mut filter = Bloom::for_keys(1_000);
        for h in keys(1_000, "k") {
            filter.insert(h);
        }
        let bytes = filter.encode();
        assert_eq!(Bloom::decode(&bytes).unwrap(), filter);
        assert!(Bloom::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Bloom::decode(&bytes[..16]).is_err());
        let mut wrong_magic = bytes.clone();
        wrong_magic[0] ^= 1;
        assert!(Bloom::decode(&wrong_magic).is_err());
    }
}
