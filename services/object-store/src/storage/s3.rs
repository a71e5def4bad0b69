//! Any S3 API through aws-sdk-s3 (rustls + ring). Large objects go up as multipart uploads
//! with at most [`PARTS_IN_FLIGHT`] parts in flight, so memory stays near
//! `part size × (PARTS_IN_FLIGHT + 1)` whatever the object's size.

use std::collections::VecDeque;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use bytes::Bytes;
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;

use super::{ByteStream, ObjectStorage, ObjectWriter, StorageError, check_key};
use crate::config::StoreSettings;

/// Parts uploaded concurrently per object.
pub const PARTS_IN_FLIGHT: usize = 2;

pub struct S3Storage {
    client: Client,
    bucket: String,
    part_size: usize,
}

fn unavailable<E>(e: aws_sdk_s3::error::SdkError<E>) -> StorageError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StorageError::Unavailable(DisplayErrorContext(&e).to_string())
}

impl S3Storage {
    pub fn new(settings: &StoreSettings) -> Result<Self, StorageError> {
        let secret = |s: &Option<secrecy::SecretString>| {
            s.as_ref()
                .map(|v| v.expose_secret().to_string())
                .unwrap_or_default()
        };
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.s3_region.clone()))
            .credentials_provider(Credentials::new(
                secret(&settings.s3_access_key_id),
                secret(&settings.s3_secret_access_key),
                None,
                None,
                "caretrail-config",
            ))
            .force_path_style(settings.s3_force_path_style)
            .http_client(http);
        if let Some(endpoint) = &settings.s3_endpoint {
            builder = builder.endpoint_url(endpoint.clone());
        }
        Ok(Self {
            client: Client::from_conf(builder.build()),
            bucket: settings.s3_bucket.clone(),
            part_size: settings.s3_part_size_bytes,
        })
    }
}

struct S3Writer {
    client: Client,
    bucket: String,
    key: String,
    part_size: usize,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    next_part: i32,
    in_flight: VecDeque<JoinHandle<Result<CompletedPart, StorageError>>>,
    done: Vec<CompletedPart>,
    written: u64,
    finished: bool,
}

impl S3Writer {
    async fn upload_id(&mut self) -> Result<String, StorageError> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(unavailable)?;
        let id = created
            .upload_id()
            .ok_or_else(|| StorageError::Unavailable("no upload id in the reply".into()))?
            .to_string();
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    async fn send_part(&mut self, part: Vec<u8>) -> Result<(), StorageError> {
        let upload_id = self.upload_id().await?;
        let number = self.next_part;
        self.next_part += 1;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(number)
            .body(S3Body::from(part));
        self.in_flight.push_back(tokio::spawn(async move {
            let out = request.send().await.map_err(unavailable)?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build())
        }));
        while self.in_flight.len() > PARTS_IN_FLIGHT {
            self.collect_one().await?;
        }
        Ok(())
    }

    async fn collect_one(&mut self) -> Result<(), StorageError> {
        if let Some(handle) = self.in_flight.pop_front() {
            let part = handle
                .await
                .map_err(|e| StorageError::Unavailable(format!("part upload task: {e}")))??;
            self.done.push(part);
        }
        Ok(())
    }

    fn abort_in_background(&mut self) {
        for handle in self.in_flight.drain(..) {
            handle.abort();
        }
        if let (Some(upload_id), Ok(rt)) =
            (self.upload_id.take(), tokio::runtime::Handle::try_current())
        {
            let request = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(upload_id);
            rt.spawn(async move {
                if let Err(e) = request.send().await {
                    tracing::warn!(error = %DisplayErrorContext(&e), "aborting a multipart upload failed");
                }
            });
        }
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.buffer.extend_from_slice(&data);
        self.written += data.len() as u64;
        while self.buffer.len() >= self.part_size {
            let rest = self.buffer.split_off(self.part_size);
            let part = std::mem::replace(&mut self.buffer, rest);
            self.send_part(part).await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StorageError> {
        if self.upload_id.is_none() {
            let body = std::mem::take(&mut self.buffer);
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .body(S3Body::from(body))
                .send()
                .await
                .map_err(unavailable)?;
            self.finished = true;
            return Ok(self.written);
        }
        if !self.buffer.is_empty() {
            let last = std::mem::take(&mut self.buffer);
            self.send_part(last).await?;
        }
        while !self.in_flight.is_empty() {
            self.collect_one().await?;
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|p| p.part_number());
        let upload_id = self.upload_id().await?;
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(unavailable)?;
        self.finished = true;
        Ok(self.written)
    }

    async fn abort(mut self: Box<Self>) {
        self.abort_in_background();
        self.finished = true;
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if !self.finished {
            self.abort_in_background();
        }
    }
}

#[async_trait]
impl ObjectStorage for S3Storage {
    async fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StorageError> {
        check_key(key)?;
        Ok(Box::new(S3Writer {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            part_size: self.part_size,
            buffer: Vec::new(),
            upload_id: None,
            next_part: 1,
            in_flight: VecDeque::new(),
            done: Vec::new(),
            written: 0,
            finished: false,
        }))
    }

    async fn get(&self, key: &str) -> Result<ByteStream, StorageError> {
        self.fetch(key, None).await
    }

    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<ByteStream, StorageError> {
        self.fetch(key, Some(format!("bytes={start}-{end}"))).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

impl S3Storage {
    async fn fetch(&self, key: &str, range: Option<String>) -> Result<ByteStream, StorageError> {
        check_key(key)?;
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let missing = e
                    .as_service_error()
                    .map(|s| s.is_no_such_key() || s.code() == Some("NoSuchKey"))
                    .unwrap_or(false);
                return Err(if missing {
                    StorageError::NotFound
                } else {
                    unavailable(e)
                });
            }
        };
        let body = out.body;
        let stream = futures::stream::unfold(Some(body), |state| async move {
            let mut body = state?;
            match body.try_next().await {
                Ok(Some(bytes)) => Some((Ok(bytes), Some(body))),
                Ok(None) => None,
                Err(e) => Some((Err(StorageError::Unavailable(e.to_string())), None)),
            }
        });
        Ok(Box::pin(stream))
    }
}
