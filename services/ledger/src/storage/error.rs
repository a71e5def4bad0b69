//! Errors of the storage layer.

use caretrail_ledger_proofs::ProofError;
use openraft::{AnyError, StorageIOError};

use super::types::{NodeId, RaftStorageError};

/// Every failure of the ledger storage. Messages are one line.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded database failed (I/O, corruption detected by the engine, lock held).
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Stored bytes do not decode or violate an invariant (disk corruption or tampering).
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A snapshot stream is malformed, truncated or fails its checks.
    #[error("bad snapshot: {0}")]
    BadSnapshot(String),
    #[error("unknown tenant {0:?}")]
    UnknownTenant(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// The log writer thread stopped after an error; the store must be reopened.
    #[error("log writer stopped: {0}")]
    WriterStopped(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

macro_rules! engine_error {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Engine(e.to_string())
            }
        })*
    };
}

engine_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    redb::CompactionError,
);

impl From<postcard::Error> for StoreError {
    fn from(e: postcard::Error) -> Self {
        StoreError::Corrupt(format!("undecodable record: {e}"))
    }
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Engine(format!("blocking task failed: {e}"))
    }
}

impl StoreError {
    fn any(&self) -> AnyError {
        AnyError::new(self)
    }

    pub(crate) fn read_logs(self) -> RaftStorageError {
        StorageIOError::<NodeId>::read_logs(self.any()).into()
    }

    pub(crate) fn write_logs(self) -> RaftStorageError {
        StorageIOError::<NodeId>::write_logs(self.any()).into()
    }

    pub(crate) fn read_vote(self) -> RaftStorageError {
        StorageIOError::<NodeId>::read_vote(self.any()).into()
    }

    pub(crate) fn write_vote(self) -> RaftStorageError {
        StorageIOError::<NodeId>::write_vote(self.any()).into()
    }

    pub(crate) fn read_sm(self) -> RaftStorageError {
        StorageIOError::<NodeId>::read_state_machine(self.any()).into()
    }

    pub(crate) fn write_sm(self) -> RaftStorageError {
        StorageIOError::<NodeId>::write_state_machine(self.any()).into()
    }

    pub(crate) fn read_snapshot(self) -> RaftStorageError {
        StorageIOError::<NodeId>::read_snapshot(None, self.any()).into()
    }

    pub(crate) fn write_snapshot(self) -> RaftStorageError {
        StorageIOError::<NodeId>::write_snapshot(None, self.any()).into()
    }
}
