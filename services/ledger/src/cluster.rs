//! The internal cluster port: Raft RPCs between nodes, requests forwarded to the leader, and
//! the operator's admin API. Every request must carry `Authorization: Bearer <cluster
//! secret>`; nothing here is reachable through the gateway.
//!
//! Admin API (JSON):
//!
//! | method and path | does |
//! |---|---|
//! | `GET /cluster/admin/status` | leader, term, last log id, applied index, members, per-follower lag |
//! | `POST /cluster/admin/init` `{"members": {"1": "host:port", …}}` | forms a new cluster (once; empty = this node alone) |
//! | `POST /cluster/admin/learners` `{"node_id": 4, "addr": "host:port"}` | adds a non-voting member that catches up |
//! | `POST /cluster/admin/membership` `{"voters": [1,2,4], "retain": false}` | changes the voters (joint consensus) |
//! | `POST /cluster/admin/snapshot` | builds a snapshot now (and purges the log) |
//! | `GET /cluster/admin/verify` | recomputes every stored leaf and tree node (tamper check) |
//! | `POST /cluster/admin/faults` `{"blocked": [2]}` | partition tests only (`ledger_fault_injection`) |
//!
//! Learner and membership changes go to the leader; a follower relays them.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use openraft::BasicNode;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::network::NODE_HEADER;
use crate::node::{ClusterRequest, LedgerNode, basic_nodes};
use crate::storage::{NodeId, TypeConfig};

/// Largest cluster request body (an AppendEntries batch or a snapshot chunk).
const MAX_BODY: usize = 64 * 1024 * 1024;

struct ClusterState {
    node: Arc<LedgerNode>,
    secret: SecretString,
    fault_injection: bool,
}

/// The request carries the cluster secret.
#[allow(clippy::result_large_err)]
fn check_secret(req: &HttpRequest, state: &ClusterState) -> Result<(), HttpResponse> {
    let presented = caretrail_platform::auth::bearer(req).unwrap_or("");
    if constant_time_eq(
        presented.as_bytes(),
        state.secret.expose_secret().as_bytes(),
    ) {
        Ok(())
    } else {
        Err(problem(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the cluster secret is missing or wrong",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn problem(status: actix_web::http::StatusCode, code: &str, detail: &str) -> HttpResponse {
    caretrail_platform::Problem::new(status, code, Some(detail.to_string())).to_response()
}

/// Checks the cluster secret and, for Raft traffic, that the sender is not cut off.
// The error is the response itself; handlers return it as is.
#[allow(clippy::result_large_err)]
fn authorize(req: &HttpRequest, state: &ClusterState) -> Result<(), HttpResponse> {
    check_secret(req, state)?;
    let sender = req
        .headers()
        .get(NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<NodeId>().ok());
    if let Some(sender) = sender
        && state.node.network.faults.is_blocked(sender)
    {
        return Err(problem(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "partitioned",
            "fault injection: this peer is cut off",
        ));
    }
    Ok(())
}

#[allow(clippy::result_large_err)]
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, HttpResponse> {
    postcard::from_bytes(body).map_err(|e| {
        problem(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("undecodable body: {e}"),
        )
    })
}

fn encoded<T: Serialize>(value: &T) -> HttpResponse {
    match postcard::to_allocvec(value) {
        Ok(bytes) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(bytes),
        Err(e) => {
            tracing::error!(error = %e, "encoding a cluster answer failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// Authorises, decodes a Raft RPC, hands it to the local Raft and encodes its answer.
async fn raft_rpc<Req, Resp, F, Fut>(
    req: &HttpRequest,
    body: &[u8],
    state: &ClusterState,
    call: F,
) -> HttpResponse
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(openraft::Raft<TypeConfig>, Req) -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    if let Err(r) = authorize(req, state) {
        return r;
    }
    match decode::<Req>(body) {
        Ok(rpc) => encoded(&call(state.node.raft.clone(), rpc).await),
        Err(r) => r,
    }
}

async fn raft_append(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ClusterState>,
) -> HttpResponse {
    raft_rpc(
        &req,
        &body,
        &state,
        |raft, rpc: AppendEntriesRequest<TypeConfig>| async move { raft.append_entries(rpc).await },
    )
    .await
}

async fn raft_vote(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ClusterState>,
) -> HttpResponse {
    raft_rpc(
        &req,
        &body,
        &state,
        |raft, rpc: VoteRequest<NodeId>| async move { raft.vote(rpc).await },
    )
    .await
}

async fn raft_snapshot(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ClusterState>,
) -> HttpResponse {
    raft_rpc(&req, &body, &state, |raft, rpc: InstallSnapshotRequest<TypeConfig>| async move {
        raft.install_snapshot(rpc).await
    })
    .await
}

async fn forward(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ClusterState>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let request: ClusterRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return problem(
                actix_web::http::StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("undecodable body: {e}"),
            );
        }
    };
    HttpResponse::Ok().json(state.node.handle_as_leader(request).await)
}

async fn status(req: HttpRequest, state: web::Data<ClusterState>) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    HttpResponse::Ok().json(state.node.status())
}

#[derive(Debug, Deserialize, Serialize)]
pub struct InitIn {
    /// Node id → cluster address; empty forms a one-node cluster of this node.
    #[serde(default)]
    pub members: BTreeMap<NodeId, String>,
}

async fn init(
    req: HttpRequest,
    state: web::Data<ClusterState>,
    body: web::Json<InitIn>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let mut members = body.into_inner().members;
    if members.is_empty() {
        members.insert(state.node.id, state.node.advertise.clone());
    }
    match state.node.raft.initialize(basic_nodes(&members)).await {
        Ok(()) => HttpResponse::Ok().json(state.node.status()),
        Err(e) => problem(
            actix_web::http::StatusCode::CONFLICT,
            "not_allowed",
            &format!("cannot initialise: {e}"),
        ),
    }
}

#[derive(Debug, Deserialize, Serialize)]
pub struct LearnerIn {
    pub node_id: NodeId,
    pub addr: String,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct MembershipIn {
    pub voters: BTreeSet<NodeId>,
    /// Keep removed voters as learners.
    #[serde(default)]
    pub retain: bool,
}

/// Runs a membership change here if leader, else relays the same request to the leader.
async fn on_leader<T: Serialize>(
    state: &ClusterState,
    path: &str,
    body: &T,
) -> Option<HttpResponse> {
    let (leader, addr) = match state.node.leader().await {
        Ok(l) => l,
        Err(e) => {
            return Some(problem(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                &e.code,
                &e.message,
            ));
        }
    };
    if leader == state.node.id {
        return None;
    }
    let relayed = state
        .node
        .network
        .http
        .post(format!("http://{addr}{path}"))
        .bearer_auth(state.secret.expose_secret())
        .timeout(Duration::from_secs(120))
        .json(body)
        .send()
        .await;
    Some(match relayed {
        Ok(r) => {
            let status = actix_web::http::StatusCode::from_u16(r.status().as_u16())
                .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
            let content_type = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_string();
            match r.bytes().await {
                Ok(b) => HttpResponse::build(status)
                    .content_type(content_type)
                    .body(b),
                Err(e) => problem(
                    actix_web::http::StatusCode::BAD_GATEWAY,
                    "unavailable",
                    &format!("relaying to the leader failed: {e}"),
                ),
            }
        }
        Err(e) => problem(
            actix_web::http::StatusCode::BAD_GATEWAY,
            "unavailable",
            &format!("relaying to the leader failed: {e}"),
        ),
    })
}

async fn add_learner(
    req: HttpRequest,
    state: web::Data<ClusterState>,
    body: web::Json<LearnerIn>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let body = body.into_inner();
    if let Some(r) = on_leader(&state, "/cluster/admin/learners", &body).await {
        return r;
    }
    match state
        .node
        .raft
        .add_learner(body.node_id, BasicNode::new(body.addr), true)
        .await
    {
        Ok(_) => HttpResponse::Ok().json(state.node.status()),
        Err(e) => problem(
            actix_web::http::StatusCode::CONFLICT,
            "membership_refused",
            &e.to_string(),
        ),
    }
}

async fn change_membership(
    req: HttpRequest,
    state: web::Data<ClusterState>,
    body: web::Json<MembershipIn>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let body = body.into_inner();
    if body.voters.is_empty() {
        return problem(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_request",
            "voters must not be empty",
        );
    }
    if let Some(r) = on_leader(&state, "/cluster/admin/membership", &body).await {
        return r;
    }
    match state
        .node
        .raft
        .change_membership(body.voters, body.retain)
        .await
    {
        Ok(_) => HttpResponse::Ok().json(state.node.status()),
        Err(e) => problem(
            actix_web::http::StatusCode::CONFLICT,
            "membership_refused",
            &e.to_string(),
        ),
    }
}

async fn snapshot(req: HttpRequest, state: web::Data<ClusterState>) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    match state.node.raft.trigger().snapshot().await {
        Ok(()) => HttpResponse::Accepted().json(state.node.status()),
        Err(e) => problem(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &e.to_string(),
        ),
    }
}

#[derive(Debug, Serialize)]
struct VerifyOut {
    ok: bool,
    tenants: u64,
    entries: u64,
    problems: Vec<String>,
}

async fn verify(req: HttpRequest, state: web::Data<ClusterState>) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let view = state.node.view.clone();
    match tokio::task::spawn_blocking(move || view.verify_store()).await {
        Ok(Ok(report)) => HttpResponse::Ok().json(VerifyOut {
            ok: report.is_ok(),
            tenants: report.tenants,
            entries: report.entries,
            problems: report
                .first_mismatch
                .iter()
                .map(ToString::to_string)
                .collect(),
        }),
        Ok(Err(e)) => HttpResponse::Ok().json(VerifyOut {
            ok: false,
            tenants: 0,
            entries: 0,
            problems: vec![e.to_string()],
        }),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

#[derive(Debug, Deserialize, Serialize)]
pub struct FaultsIn {
    pub blocked: HashSet<NodeId>,
}

async fn faults(
    req: HttpRequest,
    state: web::Data<ClusterState>,
    body: web::Json<FaultsIn>,
) -> HttpResponse {
    // Checked before the secret so that a production node does not even admit it exists.
    if !state.fault_injection {
        return problem(
            actix_web::http::StatusCode::NOT_FOUND,
            "not_found",
            "fault injection is disabled",
        );
    }
    if let Err(r) = check_secret(&req, &state) {
        return r;
    }
    state.node.network.faults.set(body.into_inner().blocked);
    tracing::warn!(blocked = ?state.node.network.faults.blocked(), "fault injection changed");
    HttpResponse::Ok().json(serde_json::json!({ "blocked": state.node.network.faults.blocked() }))
}

/// Starts the cluster port's server on `listener`.
pub fn start(
    listener: TcpListener,
    node: Arc<LedgerNode>,
    secret: SecretString,
    fault_injection: bool,
) -> std::io::Result<(actix_web::dev::Server, ServerHandle)> {
    let state = web::Data::new(ClusterState {
        node,
        secret,
        fault_injection,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .app_data(web::JsonConfig::default().limit(1024 * 1024))
            .route("/cluster/raft/append", web::post().to(raft_append))
            .route("/cluster/raft/vote", web::post().to(raft_vote))
            .route("/cluster/raft/snapshot", web::post().to(raft_snapshot))
            .route("/cluster/forward", web::post().to(forward))
            .route("/cluster/admin/status", web::get().to(status))
            .route("/cluster/admin/init", web::post().to(init))
            .route("/cluster/admin/learners", web::post().to(add_learner))
            .route(
                "/cluster/admin/membership",
                web::post().to(change_membership),
            )
            .route("/cluster/admin/snapshot", web::post().to(snapshot))
            .route("/cluster/admin/verify", web::get().to(verify))
            .route("/cluster/admin/faults", web::post().to(faults))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    let handle = server.handle();
    Ok((server, handle))
}
