//! The start-up sequence every service shares: connect and migrate its database, connect
//! the bus, start the outbox relay, register readiness checks, serve HTTP, and on shutdown
//! drain requests, stop consumers, flush the outbox and close connections — in that order.

use std::sync::Arc;

use actix_web::web;
use caretrail_bus::{Bus, BusSettings, ConsumerHandle, outbox::Relay};
use caretrail_db::{DbSettings, sea_orm::DatabaseConnection};
use caretrail_platform::{
    config::{ConfigError, HttpSettings, LogFormat, Validate},
    health::{FnCheck, Health},
    http::{Runner, ServerParts},
    metrics::Metrics,
};
use sea_orm_migration::MigratorTrait;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Settings every service has; services flatten this into their own `Config`.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceSettings {
    #[serde(flatten)]
    pub http: HttpSettings,
    #[serde(flatten)]
    pub db: DbSettings,
    #[serde(flatten)]
    pub bus: BusSettings,
    #[serde(default)]
    pub log_format: LogFormat,
}

impl Validate for ServiceSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate()?;
        self.db
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.bus
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

/// A service's connections, before it serves.
pub struct Infra {
    pub service: &'static str,
    pub db: DatabaseConnection,
    pub bus: Arc<dyn Bus>,
    /// Wake the outbox relay after committing events.
    pub outbox: Arc<Notify>,
    pub health: Health,
    pub metrics: Metrics,
    cancel: CancellationToken,
    relay: tokio::task::JoinHandle<()>,
    consumers: Vec<ConsumerHandle>,
    revocations: Vec<revocations::Following>,
}

impl Infra {
    pub async fn prepare<M: MigratorTrait>(
        service: &'static str,
        settings: &ServiceSettings,
    ) -> anyhow::Result<Self> {
        settings.validate()?;
        let db = caretrail_db::connect_and_migrate::<M>(&settings.db).await?;
        if caretrail_db::role_bypasses_rls(&db).await? {
            tracing::warn!(
                service,
                "the database role bypasses row-level security (superuser or BYPASSRLS); \
                 tenant isolation then rests on query filters alone — use a plain role in production"
            );
        }
        let bus = caretrail_bus::connect(&settings.bus).await?;
        let metrics = Metrics::new(service)?;
        let health = Health::new();
        let db_check = db.clone();
        health.register(Arc::new(FnCheck::new("database", move || {
            let db = db_check.clone();
            async move { caretrail_db::ping(&db).await.map_err(|e| e.to_string()) }
        })));
        let bus_check = bus.clone();
        health.register(Arc::new(FnCheck::new("bus", move || {
            let bus = bus_check.clone();
            async move { bus.ping().await.map_err(|e| e.to_string()) }
        })));
        let cancel = CancellationToken::new();
        let relay = Relay::new(db.clone(), bus.clone());
        let outbox = relay.notifier();
        let relay = relay.spawn(cancel.child_token());
        Ok(Self {
            service,
            db,
            bus,
            outbox,
            health,
            metrics,
            cancel,
            relay,
            consumers: Vec::new(),
            revocations: Vec::new(),
        })
    }

    /// Keeps a consumer so that shutdown stops it after HTTP has drained.
    pub fn add_consumer(&mut self, consumer: ConsumerHandle) {
        self.consumers.push(consumer);
    }

    /// Keeps `verifier`'s revocations in step with identity's (over the bus, and by asking
    /// identity over RPC at start, after reconnecting and periodically).
    pub async fn follow_revocations(
        &mut self,
        verifier: &caretrail_platform::auth::Verifier,
    ) -> Result<(), caretrail_bus::BusError> {
        let source =
            clients::IdentityClient::new(self.bus.clone(), std::time::Duration::from_secs(5));
        self.follow_revocations_from(verifier, Arc::new(source))
            .await
            .map(drop)
    }

    /// [`Infra::follow_revocations`] with another source (identity reads its own database);
    /// returns whether the list has been loaded yet.
    pub async fn follow_revocations_from(
        &mut self,
        verifier: &caretrail_platform::auth::Verifier,
        source: Arc<dyn revocations::RevocationSource>,
    ) -> Result<Arc<std::sync::atomic::AtomicBool>, caretrail_bus::BusError> {
        let following =
            revocations::follow(self.bus.as_ref(), self.service, verifier.clone(), source).await?;
        let loaded = following.loaded();
        self.revocations.push(following);
        Ok(loaded)
    }

    /// Binds the HTTP listener and returns the runner that serves until shutdown.
    pub fn serve<F>(self, http: HttpSettings, configure: F) -> std::io::Result<Runner>
    where
        F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
    {
        let (port, server) = caretrail_platform::http::start(ServerParts {
            service: self.service,
            settings: http,
            health: self.health.clone(),
            metrics: self.metrics.clone(),
            configure,
        })?;
        let mut runner = Runner::new(port, server, self.health.clone(), self.cancel.clone());
        let Infra {
            db,
            relay,
            consumers,
            revocations,
            cancel,
            service,
            ..
        } = self;
        runner.on_shutdown(move || async move {
            for following in revocations {
                following.shutdown().await;
            }
            for consumer in consumers {
                consumer.shutdown().await;
            }
            cancel.cancel();
            if let Err(error) = relay.await {
                tracing::warn!(%error, "outbox relay ended abnormally");
            }
            if let Err(error) = db.close().await {
                tracing::warn!(%error, "closing the database pool failed");
            }
            tracing::info!(service, "stopped");
        });
        Ok(runner)
    }
}

pub mod anchoring;
pub mod clients;
#[cfg(feature = "testing")]
pub mod testing;

pub mod revocations;
