//! The snapshot handle openraft moves around (`TypeConfig::SnapshotData`).
//!
//! A snapshot of this node is only a manifest ([`super::snapshot`]); its stream is written to
//! a temporary file on the first read or seek, on a blocking thread, so that taking a snapshot
//! and the `get_current_snapshot` openraft calls at start cost nothing, and only a snapshot
//! that is sent to a follower is ever written out. A snapshot being received is a plain file.

use std::future::Future;
use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

use super::snapshot;
use super::state::SmShared;

/// Bytes of a snapshot: a stream being received, or one of this node's snapshots.
pub struct SnapshotData {
    state: State,
    /// A seek requested before the stream was written out.
    pending_seek: Option<SeekFrom>,
    /// Set when the handle is dropped, so that a write-out nobody will read stops.
    cancelled: Arc<AtomicBool>,
}

enum State {
    /// Not written out yet. Weak: a snapshot handle must not keep a closed state machine's
    /// database open.
    Manifest {
        shared: Weak<SmShared>,
        manifest: Arc<[u8]>,
    },
    Writing(JoinHandle<io::Result<std::fs::File>>),
    Ready(tokio::fs::File),
    Failed(io::ErrorKind, String),
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Manifest { .. } => "manifest",
            State::Writing(_) => "writing",
            State::Ready(_) => "ready",
            State::Failed(..) => "failed",
        };
        f.debug_struct("SnapshotData")
            .field("state", &state)
            .finish()
    }
}

impl SnapshotData {
    pub(crate) fn local(shared: &Arc<SmShared>, manifest: Arc<[u8]>) -> Self {
        Self {
            state: State::Manifest {
                shared: Arc::downgrade(shared),
                manifest,
            },
            pending_seek: None,
            cancelled: Arc::default(),
        }
    }

    pub(crate) fn received(file: tokio::fs::File) -> Self {
        Self {
            state: State::Ready(file),
            pending_seek: None,
            cancelled: Arc::default(),
        }
    }

    /// The stream as a file (a received one, or a snapshot written out now).
    pub(crate) async fn into_file(mut self) -> io::Result<tokio::fs::File> {
        std::future::poll_fn(|cx| self.poll_file(cx).map_ok(|_| ())).await?;
        let closed = State::Failed(io::ErrorKind::Other, "taken".into());
        match std::mem::replace(&mut self.state, closed) {
            State::Ready(file) => Ok(file),
            _ => Err(io::Error::other("snapshot not written out")),
        }
    }

    /// Writes the stream out if that has not happened yet; ready once the file is.
    fn poll_file(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut tokio::fs::File>> {
        loop {
            match &mut self.state {
                State::Manifest { shared, manifest } => {
                    let (shared, manifest) = (shared.upgrade(), manifest.clone());
                    let Some(shared) = shared else {
                        self.state = State::Failed(
                            io::ErrorKind::NotFound,
                            "the state machine of this snapshot is closed".into(),
                        );
                        continue;
                    };
                    let cancelled = self.cancelled.clone();
                    self.state = State::Writing(tokio::task::spawn_blocking(move || {
                        snapshot::stream_file(&shared, &manifest, &cancelled).map_err(|e| {
                            if cancelled.load(Ordering::Relaxed) {
                                tracing::debug!(error = %e, "a snapshot write-out was abandoned");
                            } else {
                                tracing::error!(error = %e, "writing out a snapshot to send failed");
                            }
                            io::Error::other(e.to_string())
                        })
                    }));
                }
                State::Writing(task) => {
                    let written = ready!(Pin::new(task).poll(cx))
                        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
                    self.state = match written {
                        Ok(file) => State::Ready(tokio::fs::File::from_std(file)),
                        Err(e) => State::Failed(e.kind(), e.to_string()),
                    };
                }
                State::Failed(kind, message) => {
                    return Poll::Ready(Err(io::Error::new(*kind, message.clone())));
                }
                State::Ready(_) => break,
            }
        }
        match &mut self.state {
            State::Ready(file) => Poll::Ready(Ok(file)),
            _ => Poll::Ready(Err(io::Error::other("snapshot not written out"))),
        }
    }
}

impl Drop for SnapshotData {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending_seek.is_some() {
            // A read after `start_seek` without `poll_complete`: finish the seek first.
            ready!(Pin::new(&mut *this).poll_complete(cx))?;
        }
        let file = ready!(this.poll_file(cx))?;
        Pin::new(file).poll_read(cx, buf)
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        match &mut this.state {
            State::Ready(file) if this.pending_seek.is_none() => {
                Pin::new(file).start_seek(position)
            }
            // Applied by `poll_complete` once the file exists.
            _ => {
                this.pending_seek = Some(position);
                Ok(())
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        let pending = this.pending_seek;
        let file = ready!(this.poll_file(cx))?;
        if let Some(position) = pending {
            Pin::new(&mut *file).start_seek(position)?;
            this.pending_seek = None;
        }
        let Some(file) = (match &mut this.state {
            State::Ready(file) => Some(file),
            _ => None,
        }) else {
            return Poll::Ready(Err(io::Error::other("snapshot not written out")));
        };
        Pin::new(file).poll_complete(cx)
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().state {
            State::Ready(file) => Pin::new(file).poll_write(cx, buf),
            _ => Poll::Ready(Err(read_only())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Ready(file) => Pin::new(file).poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Ready(file) => Pin::new(file).poll_shutdown(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "a snapshot of this node cannot be written to",
    )
}
