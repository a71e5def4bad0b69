//! Objects as files under one directory: written to a temporary name, fsync'd, renamed, and
//! the directory fsync'd, so a crash never leaves a half-written object under its name.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use super::{ByteStream, ObjectStorage, ObjectWriter, StorageError, check_key};

pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}

struct LocalWriter {
    file: Option<tokio::fs::File>,
    temp: PathBuf,
    target: PathBuf,
    written: u64,
}

#[async_trait]
impl ObjectWriter for LocalWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| StorageError::Unavailable("writer already closed".into()))?;
        file.write_all(&data).await?;
        self.written += data.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StorageError> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| StorageError::Unavailable("writer already closed".into()))?;
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&self.temp, &self.target).await?;
        if let Some(dir) = self.target.parent() {
            sync_dir(dir).await?;
        }
        Ok(self.written)
    }

    async fn abort(mut self: Box<Self>) {
        self.file.take();
        let _ = tokio::fs::remove_file(&self.temp).await;
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[async_trait]
impl ObjectStorage for LocalStorage {
    async fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StorageError> {
        let target = self.path(key)?;
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let temp = target.with_extension(format!("partial-{}", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::File::create(&temp).await?;
        Ok(Box::new(LocalWriter {
            file: Some(file),
            temp,
            target,
            written: 0,
        }))
    }

    async fn get(&self, key: &str) -> Result<ByteStream, StorageError> {
        let file = match tokio::fs::File::open(self.path(key)?).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
                .map(|r| r.map_err(StorageError::from))
                .boxed(),
        )
    }

    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<ByteStream, StorageError> {
        use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
        let mut file = match tokio::fs::File::open(self.path(key)?).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound);
            }
            Err(e) => return Err(e.into()),
        };
        file.seek(std::io::SeekFrom::Start(start)).await?;
        let limited = file.take(end.saturating_sub(start).saturating_add(1));
        Ok(
            tokio_util::io::ReaderStream::with_capacity(limited, 256 * 1024)
                .map(|r| r.map_err(StorageError::from))
                .boxed(),
        )
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    sync_dir(dir).await?;
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn check(&self) -> Result<(), StorageError> {
        tokio::fs::metadata(&self.root).await?;
        Ok(())
    }
}
