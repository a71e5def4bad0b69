//! Raft traffic between ledger nodes: HTTP on the internal cluster port, bodies in postcard,
//! every request carrying the cluster secret and the sender's node id.
//!
//! | path | body | answer |
//! |---|---|---|
//! | `POST /cluster/raft/append` | `AppendEntriesRequest` | `Result<AppendEntriesResponse, RaftError>` |
//! | `POST /cluster/raft/vote` | `VoteRequest` | `Result<VoteResponse, RaftError>` |
//! | `POST /cluster/raft/snapshot` | `InstallSnapshotRequest` (one chunk) | `Result<InstallSnapshotResponse, RaftError<InstallSnapshotError>>` |
//!
//! [`Faults`] lets a test cut this node off from chosen peers in both directions (the server
//! side refuses their requests too), which is how partitions are injected.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::storage::{NodeId, TypeConfig};

/// Header naming the sending node.
pub const NODE_HEADER: &str = "x-caretrail-ledger-node";

/// Peers this node must neither talk to nor hear from (partition injection).
#[derive(Clone, Default)]
pub struct Faults {
    blocked: Arc<RwLock<HashSet<NodeId>>>,
}

impl Faults {
    pub fn set(&self, blocked: HashSet<NodeId>) {
        if let Ok(mut b) = self.blocked.write() {
            *b = blocked;
        }
    }

    pub fn is_blocked(&self, node: NodeId) -> bool {
        self.blocked
            .read()
            .map(|b| b.contains(&node))
            .unwrap_or(false)
    }

    pub fn blocked(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .blocked
            .read()
            .map(|b| b.iter().copied().collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }
}

/// Makes [`PeerClient`]s for openraft; also used to forward appends and reach admin APIs.
#[derive(Clone)]
pub struct Network {
    pub(crate) node_id: NodeId,
    pub(crate) http: reqwest::Client,
    pub(crate) secret: SecretString,
    pub(crate) faults: Faults,
}

impl Network {
    pub fn new(node_id: NodeId, secret: SecretString, faults: Faults) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            node_id,
            http,
            secret,
            faults,
        })
    }

    /// POSTs a postcard body to a peer and decodes the postcard answer (Raft RPCs).
    pub(crate) async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: NodeId,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let bytes = postcard::to_allocvec(body).map_err(|e| PeerError::Other(e.to_string()))?;
        let answer = self.send(target, addr, path, bytes, timeout).await?;
        postcard::from_bytes(&answer).map_err(|e| PeerError::Other(format!("bad answer: {e}")))
    }

    /// POSTs JSON and decodes a JSON answer (forwarded requests: their types use serde
    /// features a non-self-describing format cannot carry).
    pub(crate) async fn post_json<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: NodeId,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let bytes = serde_json::to_vec(body).map_err(|e| PeerError::Other(e.to_string()))?;
        let answer = self.send(target, addr, path, bytes, timeout).await?;
        serde_json::from_slice(&answer).map_err(|e| PeerError::Other(format!("bad answer: {e}")))
    }

    async fn send(
        &self,
        target: NodeId,
        addr: &str,
        path: &str,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Result<bytes::Bytes, PeerError> {
        if self.faults.is_blocked(target) {
            return Err(PeerError::Unreachable(format!(
                "node {target} is cut off (fault injection)"
            )));
        }
        let response = self
            .http
            .post(format!("http://{addr}{path}"))
            .bearer_auth(self.secret.expose_secret())
            .header(NODE_HEADER, self.node_id.to_string())
            .header("content-type", "application/octet-stream")
            .timeout(timeout)
            .body(bytes)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    PeerError::Unreachable(e.to_string())
                } else {
                    PeerError::Other(e.to_string())
                }
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| PeerError::Other(e.to_string()))?;
        if !status.is_success() {
            return Err(PeerError::Status(
                status.as_u16(),
                String::from_utf8_lossy(&body).chars().take(300).collect(),
            ));
        }
        Ok(body)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("peer answered {0}: {1}")]
    Status(u16, String),
    #[error("{0}")]
    Other(String),
}

impl PeerError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<NodeId, BasicNode, E> {
        match self {
            PeerError::Unreachable(m) => {
                RPCError::Unreachable(Unreachable::new(&std::io::Error::other(m)))
            }
            other => {
                RPCError::Network(NetworkError::new(&std::io::Error::other(other.to_string())))
            }
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerClient {
            network: self.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

/// openraft's connection to one peer.
pub struct PeerClient {
    network: Network,
    target: NodeId,
    addr: String,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        rpc: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<NodeId, E>> = self
            .network
            .post(self.target, &self.addr, path, rpc, option.hard_ttl())
            .await
            .map_err(PeerError::into_rpc)?;
        answer.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("/cluster/raft/append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("/cluster/raft/snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("/cluster/raft/vote", &rpc, &option).await
    }
}
