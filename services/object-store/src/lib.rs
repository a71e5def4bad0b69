//! Object-store service: medical records' metadata and encrypted contents.
//!
//! * Upload streams the body through the crypto crate's chunked AEAD with a fresh data key,
//!   hashing the plaintext with the tenant's suite on the way, into a [`storage`] backend (a
//!   local directory or any S3 API); the data key is wrapped under the tenant's current KEK
//!   ([`keys`]), the metadata row and the anchor entry are committed together, and the
//!   manifest is anchored on the ledger ([`anchor`]) — the reply carries the receipt.
//! * Reads ask for a decision ([`decide`]) and anchor every content access and refusal.
//! * Erasure destroys the wrapped data key (crypto-shredding) and deletes the object.
//!
//! A library exposing [`Application::build`]; `main.rs` only loads config and runs it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use caretrail_platform::{
    auth::Verifier,
    config::Validate,
    health::FnCheck,
    http::{Runner, resource},
};
use caretrail_runtime::Infra;
use caretrail_runtime::clients::{ConsentClient, IdentityClient, LedgerClient};
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;
use tokio::sync::Notify;
use utoipa::OpenApi;

pub mod access;
pub mod anchor;
pub mod api;
pub mod config;
pub mod content;
pub mod decide;
pub mod entities;
pub mod entries;
pub mod error;
pub mod keys;
pub mod model;
pub mod rewrap;
pub mod rpc;
pub mod storage;

pub use config::{Config, DecisionSource, StorageKind, StoreSettings};
pub use error::ObjectStoreError;

pub const SERVICE: &str = "object-store";

/// Where the service finds the identity service's keys when `jwks_url` is not set.
const DEFAULT_JWKS_URL: &str = "http://127.0.0.1:8080/.well-known/jwks.json";

/// What every handler gets.
pub struct State {
    pub db: DatabaseConnection,
    pub outbox: Arc<Notify>,
    pub storage: Arc<dyn storage::ObjectStorage>,
    pub keks: keys::KekStore,
    pub identity: IdentityClient,
    pub decider: decide::Decider,
    pub anchorer: Arc<anchor::Anchorer>,
    pub rewrap: rewrap::Rewrap,
    pub settings: StoreSettings,
}

pub struct Application {
    runner: Runner,
    state: web::Data<State>,
}

fn kms(settings: &StoreSettings) -> anyhow::Result<Arc<dyn keys::Kms>> {
    let keyring = match (&settings.keyring_file, &settings.keyring) {
        (Some(path), _) => keys::Keyring::from_file(path)?,
        (None, Some(inline)) => keys::Keyring::from_json(inline.expose_secret())?,
        (None, None) => anyhow::bail!("no keyring configured"),
    };
    Ok(Arc::new(keyring))
}

impl Application {
    /// Connects and migrates the database, connects the bus and storage, starts the
    /// anchorer and binds the HTTP port (`http_port = 0` picks a free one).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let settings = config.store.clone();
        let storage: Arc<dyn storage::ObjectStorage> = match settings.storage {
            StorageKind::Local => Arc::new(storage::LocalStorage::new(&settings.objects_dir)?),
            StorageKind::S3 => Arc::new(storage::S3Storage::new(&settings)?),
        };
        let kms = kms(&settings)?;
        let mut infra = Infra::prepare::<caretrail_migrations::object_store::Migrator>(
            SERVICE,
            &config.service,
        )
        .await?;
        let rpc_timeout = Duration::from_millis(settings.rpc_timeout_ms);
        let identity = IdentityClient::new(infra.bus.clone(), rpc_timeout);
        let anchorer = Arc::new(anchor::Anchorer::new(
            SERVICE,
            infra.db.clone(),
            identity.clone(),
            LedgerClient::new(infra.bus.clone(), rpc_timeout),
            infra.outbox.clone(),
            Arc::new(anchor::RecordHooks),
        ));
        let decider = match settings.decisions {
            DecisionSource::Consent => {
                decide::Decider::Consent(ConsentClient::new(infra.bus.clone(), rpc_timeout))
            }
            DecisionSource::OwnerOnly => decide::Decider::OwnerOnly,
        };
        let jwks = config
            .auth
            .jwks_url
            .clone()
            .unwrap_or_else(|| DEFAULT_JWKS_URL.to_string());
        let verifier = Verifier::from_settings(&config.auth, jwks);
        infra.follow_revocations(&verifier).await?;
        let check_storage = storage.clone();
        infra
            .health
            .register(Arc::new(FnCheck::new("storage", move || {
                let storage = check_storage.clone();
                async move { storage.check().await.map_err(|e| e.to_string()) }
            })));
        let state = web::Data::new(State {
            db: infra.db.clone(),
            outbox: infra.outbox.clone(),
            storage,
            keks: keys::KekStore::new(infra.db.clone(), kms),
            identity,
            decider,
            anchorer: anchorer.clone(),
            rewrap: rewrap::Rewrap::default(),
            settings,
        });
        infra.add_consumer(
            infra
                .bus
                .serve(
                    caretrail_contracts::records::SERVICE,
                    rpc::handler(state.clone().into_inner()),
                )
                .await?,
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let worker = tokio::spawn(anchorer.run(stop.clone()));
        let data = state.clone();
        let verifier_data = web::Data::new(verifier);
        let mut runner = infra.serve(config.service.http.clone(), move |cfg| {
            cfg.app_data(data.clone()).app_data(verifier_data.clone());
            routes(cfg);
        })?;
        runner.on_shutdown(move || async move {
            stop.cancel();
            let _ = worker.await;
        });
        Ok(Self { runner, state })
    }

    pub fn port(&self) -> u16 {
        self.runner.port()
    }

    /// Shared state (tests inspect the database and storage through it).
    pub fn state(&self) -> web::Data<State> {
        self.state.clone()
    }

    /// Serves until SIGTERM/SIGINT, then drains requests and consumers.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.runner.run_until_stopped().await
    }

    /// Serves until `stop` resolves (tests, the all-in-one binary).
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> std::io::Result<()> {
        self.runner.run_until(stop).await
    }
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/records").post(api::upload))
        .service(
            resource("/v1/records/{record_id}")
                .get(api::get)
                .delete(api::erase),
        )
        .service(resource("/v1/records/{record_id}/content").get(api::content))
        .service(resource("/v1/records/{record_id}/receipt").get(api::receipt))
        .service(resource("/v1/patients/{patient_id}/records").get(api::list))
        .service(resource("/v1/admin/keys").get(api::keys))
        .service(resource("/v1/admin/keys/rotate").post(api::rotate));
}

use caretrail_platform::auth::BearerAuth;

#[derive(OpenApi)]
#[openapi(
    paths(api::upload, api::get, api::content, api::receipt, api::list, api::erase, api::keys, api::rotate),
    components(schemas(caretrail_platform::Problem, caretrail_platform::FieldError)),
    modifiers(&BearerAuth),
    tags((name = "records", description = "Medical records: encrypted storage, consented reads, receipts, crypto-shredding")),
)]
struct ApiDoc;

/// This service's part of the public OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
