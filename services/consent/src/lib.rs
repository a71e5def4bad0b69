//! Consent service: the classification policy, consent grants, referrals, revocation,
//! break-glass access and the decision API.
//!
//! * Decisions come from an in-memory index per tenant ([`index`], [`engine`]) built from
//!   the database and kept current by events: a revocation is in force on the replica that
//!   took it before it is acknowledged, and on every other replica within a second.
//! * Grants, revocations, referral transitions, break-glass declarations and policy changes
//!   are signed by the acting institution and anchored on the ledger (the shared anchoring
//!   queue); a grant is in force once anchored.
//!
//! A library exposing [`Application::build`]; `main.rs` only loads config and runs it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use caretrail_platform::{
    auth::Verifier,
    config::Validate,
    http::{Runner, resource},
};
use caretrail_runtime::Infra;
use caretrail_runtime::anchoring::Anchorer;
use caretrail_runtime::clients::{IdentityClient, LedgerClient, RecordsClient};
use sea_orm::DatabaseConnection;
use tokio::sync::Notify;
use utoipa::OpenApi;

pub mod api;
pub mod config;
pub mod engine;
pub mod entities;
pub mod error;
pub mod hooks;
pub mod index;
pub mod model;
pub mod policy;
pub mod rpc;

pub use config::{Config, ConsentSettings};
pub use error::ConsentError;

pub const SERVICE: &str = "consent";

/// Where the service finds the identity service's keys when `jwks_url` is not set.
const DEFAULT_JWKS_URL: &str = "http://127.0.0.1:8080/.well-known/jwks.json";

/// What every handler gets.
pub struct State {
    pub db: DatabaseConnection,
    pub outbox: Arc<Notify>,
    pub identity: IdentityClient,
    pub records: RecordsClient,
    pub engine: Arc<engine::Engine>,
    pub anchorer: Arc<Anchorer>,
    pub settings: ConsentSettings,
}

pub struct Application {
    runner: Runner,
    state: web::Data<State>,
}

impl Application {
    /// Connects and migrates the database, connects the bus, starts the decision RPC, the
    /// index follower and the anchorer, and binds the HTTP port (`http_port = 0` picks a
    /// free one).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let settings = config.consent.clone();
        let mut infra =
            Infra::prepare::<caretrail_migrations::consent::Migrator>(SERVICE, &config.service)
                .await?;
        let rpc_timeout = Duration::from_millis(settings.rpc_timeout_ms);
        let identity = IdentityClient::new(infra.bus.clone(), rpc_timeout);
        let anchorer = Arc::new(Anchorer::new(
            SERVICE,
            infra.db.clone(),
            identity.clone(),
            LedgerClient::new(infra.bus.clone(), rpc_timeout),
            infra.outbox.clone(),
            Arc::new(hooks::ConsentHooks),
        ));
        let engine = Arc::new(engine::Engine::new(infra.db.clone(), identity.clone()));
        // Follow changes before answering anything, so no change slips between.
        infra.add_consumer(engine::follow(infra.bus.as_ref(), engine.clone()).await?);
        infra.add_consumer(
            infra
                .bus
                .serve(
                    caretrail_contracts::consent::SERVICE,
                    rpc::handler(engine.clone()),
                )
                .await?,
        );
        let jwks = config
            .auth
            .jwks_url
            .clone()
            .unwrap_or_else(|| DEFAULT_JWKS_URL.to_string());
        let verifier = Verifier::from_settings(&config.auth, jwks);
        infra.follow_revocations(&verifier).await?;
        let state = web::Data::new(State {
            db: infra.db.clone(),
            outbox: infra.outbox.clone(),
            identity,
            records: RecordsClient::new(infra.bus.clone(), rpc_timeout),
            engine: engine.clone(),
            anchorer: anchorer.clone(),
            settings,
        });
        let stop = tokio_util::sync::CancellationToken::new();
        let anchoring = tokio::spawn(anchorer.run(stop.clone()));
        let reconciling = tokio::spawn(engine.run(stop.clone()));
        let data = state.clone();
        let verifier_data = web::Data::new(verifier);
        let mut runner = infra.serve(config.service.http.clone(), move |cfg| {
            cfg.app_data(data.clone()).app_data(verifier_data.clone());
            routes(cfg);
        })?;
        runner.on_shutdown(move || async move {
            stop.cancel();
            let _ = anchoring.await;
            let _ = reconciling.await;
        });
        Ok(Self { runner, state })
    }

    pub fn port(&self) -> u16 {
        self.runner.port()
    }

    /// Shared state (tests and benchmarks reach the engine through it).
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
    use api::{break_glass, decisions, grants, policy, referrals};
    cfg.service(resource("/v1/policy").get(policy::get).put(policy::put))
        .service(resource("/v1/policy/versions").get(policy::versions))
        .service(
            resource("/v1/grants")
                .post(grants::create)
                .get(grants::list),
        )
        .service(resource("/v1/grants/{grant_id}").get(grants::get))
        .service(resource("/v1/grants/{grant_id}/revoke").post(grants::revoke))
        .service(resource("/v1/grants/{grant_id}/fhir").get(grants::fhir))
        .service(
            resource("/v1/referrals")
                .post(referrals::create)
                .get(referrals::list),
        )
        .service(resource("/v1/referrals/{referral_id}").get(referrals::get))
        .service(resource("/v1/referrals/{referral_id}/accept").post(referrals::accept))
        .service(resource("/v1/referrals/{referral_id}/decline").post(referrals::decline))
        .service(resource("/v1/referrals/{referral_id}/complete").post(referrals::complete))
        .service(resource("/v1/referrals/{referral_id}/cancel").post(referrals::cancel))
        .service(
            resource("/v1/break-glass")
                .post(break_glass::declare)
                .get(break_glass::list),
        )
        .service(resource("/v1/decisions").post(decisions::decide));
}

use caretrail_platform::auth::BearerAuth;

#[derive(OpenApi)]
#[openapi(
    paths(
        api::policy::get, api::policy::versions, api::policy::put,
        api::grants::create, api::grants::list, api::grants::get, api::grants::revoke, api::grants::fhir,
        api::referrals::create, api::referrals::list, api::referrals::get,
        api::referrals::accept, api::referrals::decline, api::referrals::complete, api::referrals::cancel,
        api::break_glass::declare, api::break_glass::list,
        api::decisions::decide,
    ),
    components(schemas(caretrail_platform::Problem, caretrail_platform::FieldError)),
    modifiers(&BearerAuth),
    tags((name = "consent", description = "Classification policy, consent grants, referrals, revocation, break-glass access and the decision API")),
)]
struct ApiDoc;

/// This service's part of the public OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
