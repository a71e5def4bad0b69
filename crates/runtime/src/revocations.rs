//! Token revocations and cut-offs, fanned out to every replica that verifies tokens.
//!
//! Each replica consumes `identity.token.revoked` and `identity.tokens.cut_off` on a queue
//! of its own that disappears with it (every replica must hear every revocation). What was
//! published while that queue did not exist — before the replica started, or while its
//! broker connection was down — it asks identity for ([`RevocationSource`]) each time it
//! starts consuming again, and every [`RESYNC_INTERVAL`] in case a connection died silently.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use caretrail_bus::{Bus, BusError, ConsumerHandle, HandlerError, Subscription, handler_fn};
use caretrail_contracts::events::{RevocationsV1, TokenRevokedV1, TokensCutOffV1};
use caretrail_platform::auth::Verifier;
use tokio_util::sync::CancellationToken;

use crate::clients::IdentityClient;

/// Event names (after `<tenant>.identity.`) the followers bind.
pub const TOKEN_REVOKED: &str = "token.revoked";
pub const TOKENS_CUT_OFF: &str = "tokens.cut_off";

/// How often a replica reloads the whole list, whatever the bus says.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(30);
/// How long one load may take before it counts as failed.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a replica learns the revocations still in force.
#[async_trait]
pub trait RevocationSource: Send + Sync + 'static {
    async fn load(&self) -> Result<RevocationsV1, String>;
}

/// Identity over bus RPC (every service but identity and the gateway).
#[async_trait]
impl RevocationSource for IdentityClient {
    async fn load(&self) -> Result<RevocationsV1, String> {
        self.revocations().await.map_err(|e| e.to_string())
    }
}

/// A replica's follower: stop it with [`Following::shutdown`].
pub struct Following {
    consumer: ConsumerHandle,
    stop: CancellationToken,
    resync: tokio::task::JoinHandle<()>,
    loaded: Arc<AtomicBool>,
}

impl Following {
    /// Whether the list has been loaded from identity at least once (readiness).
    pub fn loaded(&self) -> Arc<AtomicBool> {
        self.loaded.clone()
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.resync.await;
        self.consumer.shutdown().await;
    }
}

async fn sync(source: &dyn RevocationSource, verifier: &Verifier, loaded: &AtomicBool) {
    match tokio::time::timeout(LOAD_TIMEOUT, source.load()).await {
        Ok(Ok(list)) => {
            verifier.apply(&list);
            if !loaded.swap(true, Ordering::AcqRel) {
                tracing::info!("revoked tokens loaded from identity");
            }
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "could not load revoked tokens from identity; retrying");
        }
        Err(_) => tracing::warn!("loading revoked tokens from identity timed out; retrying"),
    }
}

/// Follows revocations into `verifier`: the bus for what happens from now on, `source` for
/// what came before (at start, after each reconnection, and periodically).
pub async fn follow(
    bus: &dyn Bus,
    service: &str,
    verifier: Verifier,
    source: Arc<dyn RevocationSource>,
) -> Result<Following, BusError> {
    let loaded = Arc::new(AtomicBool::new(false));
    let queue = format!("{service}.revocations.{}", uuid::Uuid::new_v4().simple());
    let (hook_source, hook_verifier, hook_loaded) =
        (source.clone(), verifier.clone(), loaded.clone());
    let consumer = bus
        .subscribe(
            Subscription::new(queue)
                .bind(format!("*.identity.{TOKEN_REVOKED}"))
                .bind(format!("*.identity.{TOKENS_CUT_OFF}"))
                .ephemeral()
                .on_consuming(move || {
                    let (source, verifier, loaded) = (
                        hook_source.clone(),
                        hook_verifier.clone(),
                        hook_loaded.clone(),
                    );
                    async move { sync(source.as_ref(), &verifier, &loaded).await }
                }),
            handler_fn({
                let verifier = verifier.clone();
                move |d| {
                    let verifier = verifier.clone();
                    async move {
                        let reject = |e: BusError| HandlerError::Reject(e.to_string());
                        if d.event.name == TOKENS_CUT_OFF {
                            let c: TokensCutOffV1 = d.event.payload_as().map_err(reject)?;
                            verifier.cut_off(&c);
                        } else {
                            let r: TokenRevokedV1 = d.event.payload_as().map_err(reject)?;
                            verifier.revoke(&r.jti, r.expires_at);
                        }
                        Ok(())
                    }
                }
            }),
        )
        .await?;
    let stop = CancellationToken::new();
    let resync = tokio::spawn({
        let (stop, loaded) = (stop.clone(), loaded.clone());
        async move {
            // Until the first load succeeds, retry soon; then every RESYNC_INTERVAL.
            let mut delay = Duration::from_millis(500);
            loop {
                let wait = if loaded.load(Ordering::Acquire) {
                    RESYNC_INTERVAL
                } else {
                    delay
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                sync(source.as_ref(), &verifier, &loaded).await;
                delay = (delay * 2).min(RESYNC_INTERVAL);
            }
        }
    });
    Ok(Following {
        consumer,
        stop,
        resync,
        loaded,
    })
}
