//! Ledger service: the append-only, replicated, per-tenant verifiable log — entries, Merkle
//! trees, signed checkpoints, witness cosignatures and proofs.
//!
//! A library exposing [`Application::build`]; `main.rs` only loads config and runs it.
//!
//! * [`storage`] — durable Raft log and state machine (redb, group commit, snapshots).
//! * [`node`] — openraft, the append pipeline (verify → batch → propose → receipt),
//!   forwarding to the leader.
//! * [`network`] / [`cluster`] — node-to-node HTTP on the internal cluster port, admin API.
//! * [`checkpoint`] / [`witness`] — signed checkpoints and cosignatures.
//! * [`api`] / [`rpc`] — the HTTP API and the bus RPC; [`publisher`] — `ledger.appended`.

use std::future::Future;
use std::net::TcpListener;
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
use openraft::{Raft, SnapshotPolicy};
use secrecy::{ExposeSecret, SecretString};
use utoipa::OpenApi;

pub mod api;
pub mod checkpoint;
pub mod cluster;
pub mod config;
pub mod error;
pub mod network;
pub mod node;
pub mod publisher;
pub mod readers;
pub mod rpc;
pub mod snapshots;
pub mod storage;
pub mod witness;

pub use config::{Bootstrap, Config, LedgerSettings};
pub use error::LedgerError;
pub use node::{LedgerNode, Receipt, SignedSubmission};

pub const SERVICE: &str = "ledger";

/// Where the service finds the identity service's keys when `jwks_url` is not set.
const DEFAULT_JWKS_URL: &str = "http://127.0.0.1:8080/.well-known/jwks.json";

pub struct Application {
    runner: Runner,
    node: Arc<LedgerNode>,
    cluster_port: u16,
}

fn random_secret() -> SecretString {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn raft_config(settings: &LedgerSettings) -> anyhow::Result<Arc<openraft::Config>> {
    let config = openraft::Config {
        cluster_name: "caretrail-ledger".into(),
        heartbeat_interval: settings.ledger_heartbeat_ms,
        election_timeout_min: settings.ledger_election_timeout_min_ms,
        election_timeout_max: settings.ledger_election_timeout_max_ms,
        // Taken by `snapshots::spawn`, which also counts the ledger entries in the log.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: settings.ledger_snapshot_keep_logs,
        ..Default::default()
    };
    Ok(Arc::new(config.validate()?))
}

impl Application {
    /// Opens (and checks) the node's storage, starts Raft and the cluster port, joins or forms
    /// the cluster per `ledger_bootstrap`, then serves the API (`http_port = 0` and
    /// `ledger_cluster_port = 0` pick free ports).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let settings = config.ledger.clone();
        let mut infra =
            Infra::prepare::<caretrail_migrations::ledger::Migrator>(SERVICE, &config.service)
                .await?;

        // The checkpoint keys first: entries are sealed at rest under a key derived from them.
        let single = settings.ledger_bootstrap == Bootstrap::Single;
        let keys = checkpoint::CheckpointKeys::load(&settings.checkpoint_key_file(), single)?;

        // Storage, checked before anything is served from it.
        let dir = settings.ledger_data_dir.clone();
        let mut options = settings.store_options();
        options.at_rest_key = Some(Arc::new(keys.at_rest_key()?));
        let (log, sm) =
            tokio::task::spawn_blocking(move || storage::open_with(&dir, &options)).await??;
        let view = sm.view();
        if settings.ledger_verify_on_start {
            let v = view.clone();
            let report = tokio::task::spawn_blocking(move || v.verify_store()).await??;
            if let Some(m) = report.first_mismatch {
                anyhow::bail!(
                    "the ledger store in {} failed verification ({m}); refusing to start — restore this node from a healthy peer",
                    settings.ledger_data_dir.display()
                );
            }
            tracing::info!(
                tenants = report.tenants,
                entries = report.entries,
                "ledger store verified"
            );
        }
        let checkpoints = Arc::new(checkpoint::Checkpoints::new(keys));
        let secret = settings
            .ledger_cluster_secret
            .clone()
            .unwrap_or_else(random_secret);

        // Cluster port and Raft.
        let listener = TcpListener::bind((
            settings.ledger_cluster_host.as_str(),
            settings.ledger_cluster_port,
        ))?;
        let cluster_port = listener.local_addr()?.port();
        let advertise = settings
            .ledger_advertise_addr
            .clone()
            .unwrap_or_else(|| format!("{}:{cluster_port}", settings.ledger_cluster_host));
        let faults = network::Faults::default();
        let net = network::Network::new(settings.ledger_node_id, secret.clone(), faults)?;
        let raft = Raft::new(
            settings.ledger_node_id,
            raft_config(&settings)?,
            net.clone(),
            log,
            sm,
        )
        .await?;
        let node = LedgerNode::new(
            settings.ledger_node_id,
            raft.clone(),
            view,
            net,
            checkpoints,
            settings.clone(),
            advertise.clone(),
        );
        let (cluster_server, cluster_handle) = cluster::start(
            listener,
            node.clone(),
            secret.clone(),
            settings.ledger_fault_injection,
        )?;
        let cluster_task = tokio::spawn(cluster_server);
        bootstrap(&node, &settings, &advertise, &secret).await?;

        // Bus: RPC server, `ledger.appended` publisher, token revocations.
        infra.add_consumer(infra.bus.serve(SERVICE, rpc::handler(node.clone())).await?);
        let jwks = config
            .auth
            .jwks_url
            .clone()
            .unwrap_or_else(|| DEFAULT_JWKS_URL.to_string());
        let verifier = Verifier::from_settings(&config.auth, jwks);
        infra.follow_revocations(&verifier).await?;
        let stop = tokio_util::sync::CancellationToken::new();
        let publisher = publisher::spawn(
            node.clone(),
            infra.db.clone(),
            infra.bus.clone(),
            stop.clone(),
        );
        let snapshotter = snapshots::spawn(
            raft.clone(),
            node.view.clone(),
            settings.ledger_snapshot_every,
            settings.ledger_snapshot_keep_logs,
            stop.clone(),
        );

        let check_node = node.clone();
        infra
            .health
            .register(Arc::new(FnCheck::new("raft", move || {
                let node = check_node.clone();
                async move {
                    match node.raft.metrics().borrow().current_leader {
                        Some(_) => Ok(()),
                        None => Err("no leader known".to_string()),
                    }
                }
            })));

        let node_data = web::Data::new(node.clone());
        let verifier_data = web::Data::new(verifier);
        let mut runner = infra.serve(config.service.http.clone(), move |cfg| {
            cfg.app_data(node_data.clone())
                .app_data(verifier_data.clone())
                .app_data(web::JsonConfig::default().limit(64 * 1024 * 1024));
            routes(cfg);
        })?;
        let shutdown_raft = raft.clone();
        runner.on_shutdown(move || async move {
            stop.cancel();
            let _ = publisher.await;
            let _ = snapshotter.await;
            cluster_handle.stop(true).await;
            let _ = cluster_task.await;
            if let Err(error) = shutdown_raft.shutdown().await {
                tracing::warn!(%error, "raft shutdown failed");
            }
        });
        tracing::info!(
            node_id = settings.ledger_node_id,
            cluster = %advertise,
            "ledger node started"
        );
        Ok(Self {
            runner,
            node,
            cluster_port,
        })
    }

    pub fn port(&self) -> u16 {
        self.runner.port()
    }

    /// The bound internal cluster port.
    pub fn cluster_port(&self) -> u16 {
        self.cluster_port
    }

    /// The node (tests, the all-in-one binary).
    pub fn node(&self) -> Arc<LedgerNode> {
        self.node.clone()
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

/// Forms or joins the cluster on first start (see [`Bootstrap`]).
async fn bootstrap(
    node: &LedgerNode,
    settings: &LedgerSettings,
    advertise: &str,
    secret: &SecretString,
) -> anyhow::Result<()> {
    if node.raft.is_initialized().await? {
        if settings.ledger_bootstrap == Bootstrap::Single {
            node.raft
                .wait(Some(Duration::from_secs(10)))
                .current_leader(settings.ledger_node_id, "single node leads")
                .await?;
        }
        return Ok(());
    }
    match settings.ledger_bootstrap {
        Bootstrap::None => Ok(()),
        Bootstrap::Single => {
            let members = [(settings.ledger_node_id, advertise.to_string())].into();
            node.raft.initialize(node::basic_nodes(&members)).await?;
            // Serve only once this node leads: a one-node ledger is ready at once.
            node.raft
                .wait(Some(Duration::from_secs(10)))
                .current_leader(settings.ledger_node_id, "single node leads")
                .await?;
            Ok(())
        }
        Bootstrap::Members => {
            let members = settings.initial_members()?;
            let lowest = members.keys().next().copied();
            if lowest != Some(settings.ledger_node_id) {
                return Ok(());
            }
            // A replaced node with an empty disk must not form a second cluster: ask the
            // peers first. (Re-initialising with the same members would write the same first
            // log entry, so even a race here cannot fork the log.)
            let http = reqwest::Client::new();
            for (id, addr) in members
                .iter()
                .filter(|(id, _)| **id != settings.ledger_node_id)
            {
                let status = http
                    .get(format!("http://{addr}/cluster/admin/status"))
                    .bearer_auth(secret.expose_secret())
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await;
                if let Ok(r) = status
                    && let Ok(s) = r.json::<node::NodeStatus>().await
                    && !s.members.is_empty()
                {
                    tracing::info!(
                        peer = id,
                        "peer already belongs to a cluster; waiting to be contacted"
                    );
                    return Ok(());
                }
            }
            tracing::info!(?members, "forming the ledger cluster");
            node.raft.initialize(node::basic_nodes(&members)).await?;
            Ok(())
        }
    }
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/ledger/checkpoint").get(api::latest_checkpoint))
        .service(resource("/v1/ledger/checkpoints/{size}").get(api::checkpoint_at))
        .service(resource("/v1/ledger/cosigned-checkpoint").get(api::cosigned_checkpoint))
        .service(resource("/v1/ledger/cosignatures").post(api::cosign))
        .service(resource("/v1/ledger/entries").get(api::entries))
        .service(resource("/v1/ledger/entries/{index}").get(api::entry))
        .service(resource("/v1/ledger/entries/{index}/bundle").get(api::bundle))
        .service(resource("/v1/ledger/proofs/inclusion").get(api::inclusion))
        .service(resource("/v1/ledger/proofs/consistency").get(api::consistency))
        .service(resource("/v1/ledger/keys").get(api::keys))
        .service(resource("/internal/ledger/append").post(api::internal_append))
        .service(resource("/internal/ledger/entries").post(api::internal_append_one))
        .service(resource("/internal/ledger/tenants").post(api::internal_register_tenant))
        .service(resource("/internal/ledger/status").get(api::internal_status));
}

use caretrail_platform::auth::BearerAuth;

#[derive(OpenApi)]
#[openapi(
    paths(
        api::latest_checkpoint, api::checkpoint_at, api::cosigned_checkpoint, api::cosign,
        api::entries, api::entry, api::bundle, api::inclusion, api::consistency, api::keys,
    ),
    components(schemas(caretrail_platform::Problem, caretrail_platform::FieldError)),
    modifiers(&BearerAuth),
    tags((name = "ledger", description = "The tenant's tamper-evident log: signed checkpoints, entries, inclusion and consistency proofs, witness cosignatures, proof bundles for `caretrail verify`."))
)]
struct ApiDoc;

/// This service's part of the public OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
