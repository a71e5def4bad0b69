//! Identity service: tenants, institutions and their signing keys, partner apps with OAuth2
//! client credentials, access tokens (EdDSA JWT, rotating keys, JWKS), revocation, and the
//! pseudonymous patient index.
//!
//! A library exposing [`Application::build`]; `main.rs` only loads config and runs it.

use std::{future::Future, sync::Arc, time::Duration};

use actix_web::web;
use caretrail_platform::{
    auth::{AuthSettings, KeySource, Verifier},
    config::{ConfigError, Validate},
    http::{Runner, resource},
};
use caretrail_runtime::{Infra, ServiceSettings};
use sea_orm::DatabaseConnection;
use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::Notify;
use utoipa::OpenApi;

pub mod access;
pub mod api;
pub mod certs;
pub mod entities;
pub mod error;
pub mod ledger_sync;
pub mod model;
pub mod rpc;
pub mod secrets;
pub mod seed;
pub mod tokens;

pub use error::IdentityError;

pub const SERVICE: &str = "identity";

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub service: ServiceSettings,
    #[serde(flatten)]
    pub auth: AuthSettings,
    /// 64 hex characters; seals custodial and signing keys at rest. From a Kubernetes Secret.
    pub master_key: Option<SecretString>,
    #[serde(default = "default_ttl")]
    pub access_token_ttl_secs: i64,
    /// How long a new token-signing key is published before it signs.
    #[serde(default = "default_activation")]
    pub token_key_activation_secs: i64,
    /// The public base URL of the gateway (discovery document).
    #[serde(default = "default_public_url")]
    pub public_base_url: String,
    /// Register tenants and institution keys on the ledger (off only for tests that run
    /// identity without a ledger).
    #[serde(default = "default_true")]
    pub ledger_sync: bool,
    /// Demo and acceptance deployments only: on a start where this file does not exist,
    /// create the demo tenants and write their credentials to it (`caretrail demo` reads it).
    #[serde(default)]
    pub seed_demo_file: Option<std::path::PathBuf>,
}

fn default_true() -> bool {
    true
}

fn default_ttl() -> i64 {
    900
}
fn default_activation() -> i64 {
    300
}
fn default_public_url() -> String {
    "http://127.0.0.1:8080".into()
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.service.validate()?;
        match &self.master_key {
            None => {
                return Err(ConfigError::Invalid(
                    "master_key is required (64 hex characters)".into(),
                ));
            }
            Some(k) => {
                secrets::MasterKey::from_hex(k).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            }
        }
        if !(60..=86_400).contains(&self.access_token_ttl_secs) {
            return Err(ConfigError::Invalid(
                "access_token_ttl_secs must be 60..=86400".into(),
            ));
        }
        if self.token_key_activation_secs < 0 {
            return Err(ConfigError::Invalid(
                "token_key_activation_secs must be ≥ 0".into(),
            ));
        }
        Ok(())
    }
}

impl Config {
    pub fn load() -> Result<Self, ConfigError> {
        caretrail_platform::config::load(None)
    }

    /// Defaults around the given service settings (tests, the all-in-one binary).
    pub fn new(service: ServiceSettings, master_key: SecretString) -> Self {
        Self {
            service,
            auth: AuthSettings::default(),
            master_key: Some(master_key),
            access_token_ttl_secs: default_ttl(),
            token_key_activation_secs: default_activation(),
            public_base_url: default_public_url(),
            ledger_sync: true,
            seed_demo_file: None,
        }
    }
}

/// What every handler gets.
pub struct State {
    pub db: DatabaseConnection,
    pub outbox: Arc<Notify>,
    pub master: secrets::MasterKey,
    pub tokens: Arc<tokens::TokenIssuer>,
    pub verifier: Verifier,
    pub config: Arc<Config>,
    /// Login attempts per client address and per account ([`throttle`]).
    pub logins: Arc<LoginThrottles>,
}

/// The buckets logins draw from.
pub struct LoginThrottles {
    /// Per client address (the gateway's `X-Forwarded-For`, else the peer), at the gateway's
    /// rate ([`caretrail_platform::throttle::Rate::CREDENTIAL_CHECKS_PER_ADDRESS`]).
    pub by_address: caretrail_platform::throttle::Throttle,
    /// Per tenant and username: 10 at once, then one every 6 s — above the lockout after 5
    /// failures, so the lockout speaks first for one account, the throttle for floods.
    pub by_account: caretrail_platform::throttle::Throttle,
}

impl Default for LoginThrottles {
    fn default() -> Self {
        use std::time::Duration;
        Self {
            by_address: caretrail_platform::throttle::Throttle::new(
                caretrail_platform::throttle::Rate::CREDENTIAL_CHECKS_PER_ADDRESS,
                100_000,
            ),
            by_account: caretrail_platform::throttle::Throttle::new(
                caretrail_platform::throttle::Rate {
                    burst: 10,
                    every: Duration::from_secs(6),
                },
                100_000,
            ),
        }
    }
}

pub struct Application {
    runner: Runner,
    state: web::Data<State>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let master = match &config.master_key {
            Some(k) => secrets::MasterKey::from_hex(k)?,
            None => anyhow::bail!("master_key is required"),
        };
        let mut infra =
            Infra::prepare::<caretrail_migrations::identity::Migrator>(SERVICE, &config.service)
                .await?;
        let tokens = Arc::new(tokens::TokenIssuer::new(
            infra.db.clone(),
            master.clone(),
            config.auth.token_issuer.clone(),
            chrono::Duration::seconds(config.access_token_ttl_secs),
            chrono::Duration::seconds(config.token_key_activation_secs),
        ));
        tokens.start().await?;
        let source = tokens.clone();
        let verifier = Verifier::new(
            config.auth.token_issuer.clone(),
            config.auth.token_leeway_secs,
            KeySource::Local(Arc::new(move || source.published())),
        );
        // Every replica hears every revocation (a queue of its own, gone when it stops) and
        // reloads the list from the database when it (re)joins the bus.
        let _ = infra
            .follow_revocations_from(&verifier, Arc::new(access::FromDatabase(infra.db.clone())))
            .await?;
        // And before serving, after subscribing, so nothing revoked in between is missed.
        verifier.apply(&access::in_force(&infra.db).await?);
        let state = web::Data::new(State {
            db: infra.db.clone(),
            outbox: infra.outbox.clone(),
            master,
            tokens: tokens.clone(),
            verifier: verifier.clone(),
            config: Arc::new(config.clone()),
            logins: Arc::new(LoginThrottles::default()),
        });
        infra.add_consumer(
            infra
                .bus
                .serve(
                    caretrail_contracts::identity::SERVICE,
                    rpc::handler(state.clone().into_inner()),
                )
                .await?,
        );
        if config.ledger_sync {
            infra.add_consumer(
                ledger_sync::start(state.clone().into_inner(), infra.bus.clone()).await?,
            );
        }
        if let Some(path) = &config.seed_demo_file
            && !path.exists()
        {
            let demo = seed::demo(&state, &config.public_base_url).await?;
            caretrail_platform::files::write_private(
                path,
                serde_json::to_string_pretty(&demo)?.as_bytes(),
            )?;
            tracing::info!(path = %path.display(), "created the demo tenants");
        }
        let verifier_data = web::Data::new(verifier.clone());
        let data = state.clone();
        let mut runner = infra.serve(config.service.http.clone(), move |cfg| {
            cfg.app_data(data.clone()).app_data(verifier_data.clone());
            routes(cfg);
        })?;
        // Key rotation runs on a timer: promote due keys, drop expired ones, republish.
        let stop = tokio_util::sync::CancellationToken::new();
        let ticker_stop = stop.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = ticker_stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                if let Err(error) = tokens.tick().await {
                    tracing::warn!(%error, "token key rotation tick failed");
                }
            }
        });
        runner.on_shutdown(move || async move {
            stop.cancel();
            let _ = ticker.await;
        });
        Ok(Self { runner, state })
    }

    pub fn port(&self) -> u16 {
        self.runner.port()
    }

    /// Shared state, for the dev seed and the bootstrap command.
    pub fn state(&self) -> web::Data<State> {
        self.state.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.runner.run_until_stopped().await
    }

    pub async fn run_until(self, stop: impl Future<Output = ()>) -> std::io::Result<()> {
        self.runner.run_until(stop).await
    }
}

fn routes(cfg: &mut web::ServiceConfig) {
    use api::*;
    cfg.service(
        resource("/v1/tenants")
            .post(tenants::create)
            .get(tenants::list),
    )
    .service(resource("/v1/tenants/{tenant_id}").get(tenants::get))
    .service(resource("/v1/tenants/{tenant_id}/suspend").post(tenants::suspend))
    .service(resource("/v1/tenants/{tenant_id}/resume").post(tenants::resume))
    .service(
        resource("/v1/tenants/{tenant_id}/institutions")
            .post(institutions::create)
            .get(institutions::list),
    )
    .service(
        resource("/v1/institutions/{institution_id}")
            .get(institutions::get)
            .patch(institutions::update),
    )
    .service(
        resource("/v1/institutions/{institution_id}/deactivate").post(institutions::deactivate),
    )
    .service(
        resource("/v1/institutions/{institution_id}/reactivate").post(institutions::reactivate),
    )
    .service(
        resource("/v1/tenants/{tenant_id}/apps")
            .post(apps::create)
            .get(apps::list),
    )
    .service(resource("/v1/apps/{app_id}/rotate-secret").post(apps::rotate_secret))
    .service(resource("/v1/apps/{app_id}/revoke").post(apps::revoke))
    .service(resource("/v1/institutions/{institution_id}/keys").post(keys::rotate))
    .service(resource("/v1/institutions/{institution_id}/keys/{key_id}/revoke").post(keys::revoke))
    .service(resource("/v1/certificates/{serial}/status").get(keys::status))
    .service(resource("/v1/tenants/{tenant_id}/ca").get(keys::ca))
    .service(
        resource("/v1/tenants/{tenant_id}/users")
            .post(users::create)
            .get(users::list),
    )
    .service(
        resource("/v1/tenants/{tenant_id}/users/{user_id}")
            .get(users::get)
            .patch(users::update)
            .delete(users::remove),
    )
    .service(resource("/v1/tenants/{tenant_id}/users/{user_id}/disable").post(users::disable))
    .service(resource("/v1/tenants/{tenant_id}/users/{user_id}/enable").post(users::enable))
    .service(
        resource("/v1/tenants/{tenant_id}/users/{user_id}/password-reset")
            .post(users::start_password_reset),
    )
    .service(resource("/v1/auth/login").post(sessions::login))
    .service(resource("/v1/auth/refresh").post(sessions::refresh))
    .service(resource("/v1/auth/logout").post(sessions::logout))
    .service(resource("/v1/auth/password-reset").post(sessions::reset_password))
    .service(resource("/v1/oauth/token").post(oauth::token))
    .service(resource("/v1/oauth/revoke").post(oauth::revoke))
    .service(resource("/v1/admin/token-keys/rotate").post(wellknown::rotate))
    .service(resource("/v1/patients").post(patients::register))
    .service(resource("/.well-known/jwks.json").get(wellknown::jwks))
    .service(resource("/.well-known/openid-configuration").get(wellknown::openid_configuration))
    .service(resource("/internal/revoked-tokens").get(wellknown::revoked));
}

use caretrail_platform::auth::BearerAuth;

#[derive(OpenApi)]
#[openapi(
    paths(
        api::tenants::create, api::tenants::list, api::tenants::get, api::tenants::suspend,
        api::tenants::resume,
        api::institutions::create, api::institutions::list, api::institutions::get,
        api::institutions::update, api::institutions::deactivate, api::institutions::reactivate,
        api::apps::create, api::apps::list, api::apps::rotate_secret, api::apps::revoke,
        api::keys::rotate, api::keys::revoke, api::keys::status, api::keys::ca,
        api::users::create, api::users::list, api::users::get, api::users::update,
        api::users::remove, api::users::disable, api::users::enable,
        api::users::start_password_reset,
        api::sessions::login, api::sessions::refresh, api::sessions::logout,
        api::sessions::reset_password,
        api::oauth::token, api::oauth::revoke,
        api::wellknown::jwks, api::wellknown::openid_configuration, api::wellknown::rotate,
        api::patients::register,
    ),
    components(schemas(caretrail_platform::Problem, caretrail_platform::FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "tenants", description = "Regional health bureaus subscribing to Caretrail"),
        (name = "institutions", description = "Health centres, hospitals and regulators of a tenant"),
        (name = "apps", description = "Partner applications (EMR/HIS, patient apps)"),
        (name = "users", description = "People who log in: physicians, administrators, auditors"),
        (name = "oauth", description = "Access tokens: client credentials, revocation, keys"),
        (name = "patients", description = "The pseudonymous patient index"),
    )
)]
struct ApiDoc;

/// This service's part of the public OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
