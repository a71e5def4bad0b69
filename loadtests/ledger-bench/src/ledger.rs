//! A 3-node ledger cluster of `caretrail-ledger` processes on loopback, a benchmark tenant with
//! a registered institution key, and signed submissions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use caretrail_crypto::{SignatureAlgorithm, SigningKey, Suite};
use caretrail_ledger_proofs::{Submission, canonical_json};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::load::{Checker, Outcome};
use crate::procs::{Procs, disk_usage, free_ports};

pub const NODES: u64 = 3;
const INSTITUTION: &str = "ins_bench";
const REGISTRAR: &str = "registrar";

pub struct NodeInfo {
    pub id: u64,
    pub http_port: u16,
    pub cluster_port: u16,
    pub data_dir: PathBuf,
}

pub struct LedgerCluster {
    // Dropped first: the processes die before anything else goes.
    procs: Procs,
    pub nodes: Vec<NodeInfo>,
    secret: String,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct NodeStatus {
    node_id: u64,
    state: String,
    leader: Option<u64>,
    #[serde(default)]
    members: std::collections::BTreeMap<String, String>,
}

pub struct ClusterOptions<'a> {
    pub bin: &'a Path,
    pub dir: &'a Path,
    /// Extra `KEY=VALUE` environment for every node (tuning).
    pub extra_env: &'a [(String, String)],
}

impl LedgerCluster {
    /// Writes the shared checkpoint keys and starts three nodes under `dir`.
    pub fn start(opts: &ClusterOptions<'_>, http: reqwest::Client) -> Result<Self> {
        if !opts.bin.is_file() {
            bail!(
                "ledger binary {} not found: build it with `cargo build --release -p caretrail-ledger` or pass --ledger-bin",
                opts.bin.display()
            );
        }
        std::fs::create_dir_all(opts.dir)?;
        let key_file = opts.dir.join("checkpoint-keys.pem");
        let pem = format!(
            "{}{}",
            SigningKey::generate(SignatureAlgorithm::Ed25519)?
                .to_pkcs8_pem()?
                .as_str(),
            SigningKey::generate(SignatureAlgorithm::Sm2)?
                .to_pkcs8_pem()?
                .as_str()
        );
        std::fs::write(&key_file, pem)?;
        let mut secret_bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut secret_bytes);
        let secret = format!("bench-{}", hex(&secret_bytes));

        let ports = free_ports(2 * NODES as usize)?;
        let nodes: Vec<NodeInfo> = (1..=NODES)
            .zip(ports.chunks(2))
            .map(|(id, p)| NodeInfo {
                id,
                http_port: p[0],
                cluster_port: p[1],
                data_dir: opts.dir.join(format!("node{id}")).join("ledger"),
            })
            .collect();
        let members = nodes
            .iter()
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.cluster_port))
            .collect::<Vec<_>>()
            .join(",");

        let mut procs = Procs::default();
        for n in &nodes {
            let node_dir = opts.dir.join(format!("node{}", n.id));
            std::fs::create_dir_all(&n.data_dir)?;
            let mut cmd = Command::new(opts.bin);
            // Nothing from the caller's CARETRAIL_* environment leaks into the nodes.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("CARETRAIL_") {
                    cmd.env_remove(k);
                }
            }
            cmd.env("RUST_LOG", "warn")
                .env("CARETRAIL_LOG_FORMAT", "json")
                .env("CARETRAIL_HTTP_HOST", "127.0.0.1")
                .env("CARETRAIL_HTTP_PORT", n.http_port.to_string())
                .env(
                    "CARETRAIL_DATABASE_URL",
                    format!(
                        "sqlite://{}?mode=rwc",
                        node_dir.join("service.db").display()
                    ),
                )
                .env("CARETRAIL_BUS_URL", "inprocess")
                .env("CARETRAIL_LEDGER_NODE_ID", n.id.to_string())
                .env("CARETRAIL_LEDGER_DATA_DIR", &n.data_dir)
                .env("CARETRAIL_LEDGER_CLUSTER_HOST", "127.0.0.1")
                .env("CARETRAIL_LEDGER_CLUSTER_PORT", n.cluster_port.to_string())
                .env("CARETRAIL_LEDGER_BOOTSTRAP", "members")
                .env("CARETRAIL_LEDGER_INITIAL_MEMBERS", &members)
                .env("CARETRAIL_LEDGER_CLUSTER_SECRET", &secret)
                .env("CARETRAIL_LEDGER_CHECKPOINT_KEY_FILE", &key_file)
                .env("CARETRAIL_LEDGER_VERIFY_ON_START", "false");
            for (k, v) in opts.extra_env {
                cmd.env(k, v);
            }
            procs.spawn(&format!("ledger-{}", n.id), cmd, &node_dir.join("node.log"))?;
        }
        Ok(Self {
            procs,
            nodes,
            secret,
            http,
        })
    }

    async fn status(&self, node: &NodeInfo) -> Result<NodeStatus> {
        let r = self
            .http
            .get(format!(
                "http://127.0.0.1:{}/cluster/admin/status",
                node.cluster_port
            ))
            .bearer_auth(&self.secret)
            .timeout(Duration::from_secs(2))
            .send()
            .await?
            .error_for_status()?;
        Ok(r.json().await?)
    }

    /// The leader's id, once every node knows the same leader of a 3-member cluster and the
    /// leader's service port answers `/readyz`.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        loop {
            self.procs.check_alive()?;
            if Instant::now() > deadline {
                bail!("the ledger cluster did not form in {timeout:?}: {last}");
            }
            match self.agreed_leader().await {
                Ok(leader) => {
                    let node = self.node(leader)?;
                    let ready = self
                        .http
                        .get(format!("http://127.0.0.1:{}/readyz", node.http_port))
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await;
                    match ready {
                        Ok(r) if r.status().is_success() => return Ok(leader),
                        Ok(r) => last = format!("leader {leader} /readyz: {}", r.status()),
                        Err(e) => last = format!("leader {leader} /readyz: {e}"),
                    }
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The leader every node agrees on, or why there is none.
    pub async fn agreed_leader(&self) -> Result<u64> {
        let mut leader = None;
        for n in &self.nodes {
            let s = self
                .status(n)
                .await
                .with_context(|| format!("node {} status", n.id))?;
            if s.members.len() != NODES as usize {
                bail!("node {} sees {} members", s.node_id, s.members.len());
            }
            let Some(l) = s.leader else {
                bail!("node {} ({}) knows no leader", s.node_id, s.state);
            };
            match leader {
                None => leader = Some(l),
                Some(prev) if prev != l => bail!("nodes disagree on the leader ({prev} / {l})"),
                Some(_) => {}
            }
        }
        leader.ok_or_else(|| anyhow!("no nodes"))
    }

    pub fn node(&self, id: u64) -> Result<&NodeInfo> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| anyhow!("no node {id}"))
    }

    pub fn base_url(&self, id: u64) -> Result<String> {
        Ok(format!("http://127.0.0.1:{}", self.node(id)?.http_port))
    }

    pub fn check_alive(&mut self) -> Result<()> {
        self.procs.check_alive()
    }

    pub fn pids(&self) -> Vec<(String, u32)> {
        self.procs.pids()
    }

    /// Bytes allocated by the three nodes' ledger data directories (Raft log, state machine,
    /// snapshots; not the service database, which holds only the event cursor).
    pub fn disk_bytes(&self) -> Result<u64> {
        let mut total = 0;
        for n in &self.nodes {
            total += disk_usage(&n.data_dir)?;
        }
        Ok(total)
    }

    pub async fn shutdown(&mut self) {
        self.procs.shutdown().await;
    }
}

/// The wire form of a submission (the ledger's service contract).
pub use caretrail_contracts::ledger::SubmissionIn;

#[derive(Serialize)]
struct AppendIn<'a> {
    submissions: &'a [SubmissionIn],
}

/// The benchmark tenant and its institution's signing key.
pub struct Tenant {
    pub id: String,
    pub suite: Suite,
    key: SigningKey,
    key_id: String,
    run: String,
    payload_size: usize,
    next_seq: AtomicU64,
}

impl Tenant {
    /// Registers the tenant with a fresh registrar key, then the institution key through a
    /// registrar-signed `institution.key_registered` entry.
    pub async fn register(
        http: &reqwest::Client,
        base: &str,
        suite: Suite,
        payload_size: usize,
    ) -> Result<Arc<Self>> {
        let mut run_bytes = [0u8; 6];
        rand::rngs::OsRng.fill_bytes(&mut run_bytes);
        let run = hex(&run_bytes);
        let id = format!("ten_bench_{suite}");
        let registrar = SigningKey::generate_for_suite(suite)?;
        let r = http
            .post(format!("{base}/internal/ledger/tenants"))
            .json(&serde_json::json!({
                "tenant": id,
                "suite": suite.to_string(),
                "registrar_key_pem": registrar.public_key().to_spki_pem(),
            }))
            .send()
            .await?;
        if !r.status().is_success() {
            let status = r.status();
            bail!("registering the tenant: {status}: {}", r.text().await?);
        }

        let key = SigningKey::generate_for_suite(suite)?;
        let key_id = key.key_id().to_hex();
        let payload = canonical_json(&serde_json::json!({
            "algorithm": key.algorithm().as_str(),
            "institution": INSTITUTION,
            "key_id": key_id,
            "public_key": B64.encode(key.public_key().to_spki_der()),
        }))?;
        let sub = Submission {
            tenant: id.clone(),
            kind: "institution.key_registered".into(),
            submitter: REGISTRAR.into(),
            request_id: format!("bench-{run}-keyreg"),
            key_id: registrar.key_id().to_hex(),
            payload,
        };
        let body = wire(&sub, &registrar)?;
        let r = http
            .post(format!("{base}/internal/ledger/entries"))
            .json(&body)
            .send()
            .await?;
        if r.status().as_u16() != 201 {
            let status = r.status();
            bail!(
                "registering the institution key: {status}: {}",
                r.text().await?
            );
        }
        Ok(Arc::new(Self {
            id,
            suite,
            key,
            key_id,
            run,
            payload_size,
            next_seq: AtomicU64::new(0),
        }))
    }

    /// Reserves `n` fresh sequence numbers (each one a unique request id).
    pub fn reserve(&self, n: u64) -> u64 {
        self.next_seq.fetch_add(n, Ordering::Relaxed)
    }

    /// A signed `record.anchored` submission with a ~`payload_size`-byte canonical JSON payload
    /// (record id, content hash, padding).
    pub fn submission(&self, seq: u64) -> Result<SubmissionIn> {
        let mut digest = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut digest);
        let record = format!("rec_{}_{seq:012}", self.run);
        let hash = hex(&digest);
        let base = serde_json::json!({ "padding": "", "record": record, "sha256": hash });
        let base_len = canonical_json(&base)?.len();
        let padding = "x".repeat(self.payload_size.saturating_sub(base_len));
        let payload = canonical_json(
            &serde_json::json!({ "padding": padding, "record": record, "sha256": hash }),
        )?;
        let sub = Submission {
            tenant: self.id.clone(),
            kind: "record.anchored".into(),
            submitter: INSTITUTION.into(),
            request_id: format!("bench-{}-{seq}", self.run),
            key_id: self.key_id.clone(),
            payload,
        };
        wire(&sub, &self.key)
    }

    /// Request bodies for `entries` fresh submissions, `batch` per request (`batch == 1`: the
    /// single-entry endpoint's body), signed on `threads` threads.
    pub fn bodies(&self, entries: u64, batch: usize, threads: usize) -> Result<Vec<Vec<u8>>> {
        let batch = batch.max(1) as u64;
        let requests = entries.div_ceil(batch);
        let first = self.reserve(requests * batch);
        let threads = threads.max(1) as u64;
        let per_thread = requests.div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let lo = (t * per_thread).min(requests);
                    let hi = ((t + 1) * per_thread).min(requests);
                    scope.spawn(move || -> Result<Vec<Vec<u8>>> {
                        (lo..hi)
                            .map(|r| self.body(first + r * batch, batch))
                            .collect()
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(usize::try_from(requests).unwrap_or(0));
            for h in handles {
                out.extend(
                    h.join()
                        .map_err(|_| anyhow!("a signing thread panicked"))??,
                );
            }
            Ok(out)
        })
    }

    /// One request body holding submissions `first .. first + batch`.
    pub fn body(&self, first: u64, batch: u64) -> Result<Vec<u8>> {
        if batch == 1 {
            return Ok(serde_json::to_vec(&self.submission(first)?)?);
        }
        let subs = (first..first + batch)
            .map(|s| self.submission(s))
            .collect::<Result<Vec<_>>>()?;
        Ok(serde_json::to_vec(&AppendIn { submissions: &subs })?)
    }
}

fn wire(sub: &Submission, key: &SigningKey) -> Result<SubmissionIn> {
    let signature = sub.sign(key)?;
    Ok(SubmissionIn {
        tenant: sub.tenant.clone(),
        kind: sub.kind.clone(),
        submitter: sub.submitter.clone(),
        request_id: sub.request_id.clone(),
        key_id: sub.key_id.clone(),
        payload: B64.encode(&sub.payload),
        signature: B64.encode(signature),
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// responses (only the fields the benchmark checks; the rest is skipped)

#[derive(Deserialize)]
struct ReceiptSlim {
    #[allow(dead_code)]
    index: u64,
    #[serde(default)]
    duplicate: bool,
}

#[derive(Deserialize)]
struct FailureSlim {
    code: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ResultSlim {
    Receipt(ReceiptSlim),
    Error(FailureSlim),
}

#[derive(Deserialize)]
struct AppendOutSlim {
    results: Vec<ResultSlim>,
}

#[derive(Deserialize)]
struct ProblemSlim {
    #[serde(default)]
    code: Option<String>,
}

fn problem(status: u16, body: &[u8], entries: u64) -> Outcome {
    let code = serde_json::from_slice::<ProblemSlim>(body)
        .ok()
        .and_then(|p| p.code)
        .unwrap_or_default();
    Outcome {
        ok: 0,
        errors: vec![(format!("http {status} {code}"), entries)],
    }
}

/// Checks `POST /internal/ledger/entries` (201 + receipt) or `/internal/ledger/append`
/// (200 + one result per submission). A duplicate receipt counts as an error: every request
/// id is fresh, so it would mean the benchmark measured a no-op.
pub fn checker(batch: u64) -> Checker {
    Arc::new(move |status, body| {
        let mut out = Outcome::default();
        if batch == 1 {
            if status != 201 {
                return problem(status, body, 1);
            }
            match serde_json::from_slice::<ReceiptSlim>(body) {
                Ok(r) if !r.duplicate => out.ok = 1,
                Ok(_) => out.errors.push(("duplicate".into(), 1)),
                Err(_) => out.errors.push(("unparsable receipt".into(), 1)),
            }
            return out;
        }
        if status != 200 {
            return problem(status, body, batch);
        }
        match serde_json::from_slice::<AppendOutSlim>(body) {
            Ok(a) => {
                for r in a.results {
                    match r {
                        ResultSlim::Receipt(r) if !r.duplicate => out.ok += 1,
                        ResultSlim::Receipt(_) => out.errors.push(("duplicate".into(), 1)),
                        ResultSlim::Error(e) => out.errors.push((e.code, 1)),
                    }
                }
            }
            Err(_) => out.errors.push(("unparsable results".into(), batch)),
        }
        out
    })
}
