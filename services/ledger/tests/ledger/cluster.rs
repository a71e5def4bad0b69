//! Three ledger nodes as separate processes (`caretrail-ledger`) on loopback: replication,
//! `kill -9` of the leader during concurrent appends, catch-up by snapshot, and a partition
//! whose minority side cannot commit (fault injection in the cluster network layer).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use caretrail_contracts::auth::Role;
use caretrail_crypto::{SigningKey, Suite};
use caretrail_ledger::api::SubmissionIn;
use caretrail_ledger::storage::keys::{KIND_KEY_REGISTERED, REGISTRAR};
use caretrail_ledger_proofs::canonical_json;
use serde_json::{Value, json};

use crate::service::{INS_A, TEN_A, anchored, jwks_url, signed, token};

const SECRET: &str = "cluster-secret-for-tests-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct NodeProc {
    id: u64,
    http: u16,
    cluster: u16,
    dir: PathBuf,
    child: Option<Child>,
}

struct Cluster {
    nodes: Vec<NodeProc>,
    members: String,
    key_file: PathBuf,
    _root: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Cluster {
    fn start(n: u64) -> Self {
        let root = tempfile::tempdir().unwrap();
        let keys = caretrail_ledger::checkpoint::CheckpointKeys::generate().unwrap();
        let key_file = root.path().join("checkpoint-keys.pem");
        std::fs::write(&key_file, keys.to_pem().unwrap()).unwrap();
        let nodes: Vec<NodeProc> = (1..=n)
            .map(|id| NodeProc {
                id,
                http: free_port(),
                cluster: free_port(),
                dir: root.path().join(format!("node-{id}")),
                child: None,
            })
            .collect();
        let members = nodes
            .iter()
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.cluster))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            nodes,
            members,
            key_file,
            _root: root,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let node = &self.nodes[i];
        std::fs::create_dir_all(&node.dir).unwrap();
        let log = std::fs::File::create(node.dir.join("node.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_caretrail-ledger"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn,caretrail_ledger=info")
            .env("CARETRAIL_LOG_FORMAT", "json")
            .env("CARETRAIL_HTTP_HOST", "127.0.0.1")
            .env("CARETRAIL_HTTP_PORT", node.http.to_string())
            .env(
                "CARETRAIL_DATABASE_URL",
                format!("sqlite://{}?mode=rwc", node.dir.join("ledger.db").display()),
            )
            .env("CARETRAIL_BUS_URL", "inprocess")
            .env("CARETRAIL_JWKS_URL", jwks_url())
            .env("CARETRAIL_LEDGER_NODE_ID", node.id.to_string())
            .env("CARETRAIL_LEDGER_DATA_DIR", node.dir.join("ledger"))
            .env("CARETRAIL_LEDGER_CLUSTER_HOST", "127.0.0.1")
            .env("CARETRAIL_LEDGER_CLUSTER_PORT", node.cluster.to_string())
            .env("CARETRAIL_LEDGER_BOOTSTRAP", "members")
            .env("CARETRAIL_LEDGER_INITIAL_MEMBERS", &self.members)
            .env("CARETRAIL_LEDGER_CLUSTER_SECRET", SECRET)
            .env("CARETRAIL_LEDGER_CHECKPOINT_KEY_FILE", &self.key_file)
            .env("CARETRAIL_LEDGER_SNAPSHOT_EVERY", "200")
            .env("CARETRAIL_LEDGER_SNAPSHOT_KEEP_LOGS", "0")
            .env("CARETRAIL_LEDGER_PROPOSE_TIMEOUT_MS", "3000")
            .env("CARETRAIL_LEDGER_HEARTBEAT_MS", "100")
            .env("CARETRAIL_LEDGER_ELECTION_TIMEOUT_MIN_MS", "300")
            .env("CARETRAIL_LEDGER_ELECTION_TIMEOUT_MAX_MS", "600")
            .env("CARETRAIL_LEDGER_FAULT_INJECTION", "true")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[i].child = Some(child);
    }

    fn kill(&mut self, i: usize) {
        // SIGKILL: no shutdown code runs.
        let mut child = self.nodes[i].child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].http)
    }

    fn all_logs(&self) -> String {
        (0..self.nodes.len())
            .map(|i| format!("--- node {}\n{}", self.nodes[i].id, self.log(i)))
            .collect()
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].dir.join("node.log")).unwrap_or_default()
    }

    async fn status(&self, i: usize) -> Option<Value> {
        let r = self
            .http
            .get(format!(
                "http://127.0.0.1:{}/cluster/admin/status",
                self.nodes[i].cluster
            ))
            .bearer_auth(SECRET)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    async fn admin(&self, i: usize, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("http://127.0.0.1:{}{path}", self.nodes[i].cluster))
            .bearer_auth(SECRET)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Waits until one of `among` reports itself leader; returns its position.
    async fn leader(&self, among: &[usize], within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            for &i in among {
                if let Some(s) = self.status(i).await
                    && s["state"] == "Leader"
                {
                    return i;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader among {among:?} within {within:?}; logs:\n{}",
                among
                    .iter()
                    .map(|&i| self.log(i))
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn post(&self, i: usize, path: &str, body: &Value) -> (u16, Value) {
        match self
            .http
            .post(format!("{}{path}", self.base(i)))
            .json(body)
            .send()
            .await
        {
            Ok(r) => {
                let s = r.status().as_u16();
                (s, r.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, json!({"transport": e.to_string()})),
        }
    }

    async fn get(&self, i: usize, path: &str) -> (u16, Value) {
        let t = token(TEN_A, None, vec![Role::Auditor]);
        // A node that is (re)starting refuses connections: report it as status 0.
        let Ok(r) = self
            .http
            .get(format!("{}{path}", self.base(i)))
            .bearer_auth(t)
            .send()
            .await
        else {
            return (0, Value::Null);
        };
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn tree_size(&self, i: usize) -> u64 {
        let (_, cp) = self.get(i, "/v1/ledger/checkpoint").await;
        cp["tree_size"].as_u64().unwrap_or(0)
    }

    async fn wait_size(&self, i: usize, size: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.tree_size(i).await < size {
            assert!(
                Instant::now() < deadline,
                "node {} did not reach size {size}; log:\n{}",
                self.nodes[i].id,
                self.log(i)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Registers the tenant and an institution key (through `via`); returns the key.
    async fn setup_tenant(&self, via: usize) -> SigningKey {
        let registrar = SigningKey::generate_for_suite(Suite::Intl).unwrap();
        let (s, b) = self
            .post(
                via,
                "/internal/ledger/tenants",
                &json!({"tenant": TEN_A, "suite": "intl", "registrar_key_pem": registrar.public_key().to_spki_pem()}),
            )
            .await;
        assert_eq!(s, 204, "{b}\n{}", self.all_logs());
        let inst = SigningKey::generate_for_suite(Suite::Intl).unwrap();
        let public = inst.public_key();
        let payload = canonical_json(&json!({
            "algorithm": public.algorithm().as_str(),
            "institution": INS_A,
            "key_id": public.key_id().to_hex(),
            "public_key": base64::engine::general_purpose::STANDARD.encode(public.to_spki_der()),
        }))
        .unwrap();
        let sub = signed(
            TEN_A,
            KIND_KEY_REGISTERED,
            REGISTRAR,
            "key-1",
            &registrar,
            payload,
        );
        let (s, b) = self.append(via, &sub).await;
        assert_eq!(s, 201, "{b}");
        inst
    }

    async fn append(&self, i: usize, sub: &SubmissionIn) -> (u16, Value) {
        self.post(
            i,
            "/internal/ledger/entries",
            &serde_json::to_value(sub).unwrap(),
        )
        .await
    }

    async fn wait_formed(&self) -> usize {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        let leader = self.leader(&all, Duration::from_secs(30)).await;
        // Every node knows the leader.
        let deadline = Instant::now() + Duration::from_secs(10);
        for i in all {
            loop {
                // The cluster port answers before the service port is bound: wait for both.
                let ready = self
                    .http
                    .get(format!("{}/readyz", self.base(i)))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready
                    && let Some(s) = self.status(i).await
                    && s["leader"].as_u64().is_some()
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {i} never learned the leader"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        leader
    }
}

/// Acknowledged appends: request id → (index, leaf hash).
type Acked = Arc<Mutex<HashMap<String, (u64, String)>>>;

fn spawn_clients(
    cluster: &Arc<tokio::sync::RwLock<Cluster>>,
    key: &SigningKey,
    clients: usize,
    stop: tokio_util::sync::CancellationToken,
) -> (Acked, tokio::task::JoinSet<()>) {
    let acked: Acked = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let secret = key.to_secret_bytes();
    let alg = key.algorithm();
    for c in 0..clients {
        let cluster = cluster.clone();
        let acked = acked.clone();
        let stop = stop.clone();
        let key = SigningKey::from_secret_bytes(alg, &secret).unwrap();
        tasks.spawn(async move {
            let mut n = 0u64;
            while !stop.is_cancelled() {
                n += 1;
                let id = (c as u64) * 1_000_000 + n;
                let sub = anchored(TEN_A, INS_A, &key, id);
                let cl = cluster.read().await;
                let live: Vec<usize> = (0..cl.nodes.len())
                    .filter(|&i| cl.nodes[i].child.is_some())
                    .collect();
                let target = live[(id as usize) % live.len()];
                let (s, b) = cl.append(target, &sub).await;
                drop(cl);
                if s == 201 {
                    acked.lock().unwrap().insert(
                        sub.request_id.clone(),
                        (
                            b["index"].as_u64().unwrap(),
                            b["leaf_hash"].as_str().unwrap().to_string(),
                        ),
                    );
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }
    (acked, tasks)
}

async fn entries_by_index(cluster: &Cluster, i: usize, size: u64) -> BTreeMap<u64, Value> {
    let mut out = BTreeMap::new();
    let mut start = 0;
    while start < size {
        let (s, page) = cluster
            .get(i, &format!("/v1/ledger/entries?start={start}&limit=1000"))
            .await;
        assert_eq!(s, 200, "{page}");
        for e in page["entries"].as_array().unwrap() {
            out.insert(e["index"].as_u64().unwrap(), e.clone());
        }
        start += 1000;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_during_appends_loses_nothing_acknowledged() {
    caretrail_platform::telemetry::init_for_tests();
    let cluster = Cluster::start(3);
    let leader = cluster.wait_formed().await;
    // Set up through a follower: it forwards to the leader.
    let follower = (leader + 1) % 3;
    let key = cluster.setup_tenant(follower).await;
    let cluster = Arc::new(tokio::sync::RwLock::new(cluster));

    let stop = tokio_util::sync::CancellationToken::new();
    let (acked, mut clients) = spawn_clients(&cluster, &key, 8, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // kill -9 the leader while the clients append.
    let (killed, elapsed) = {
        let mut cl = cluster.write().await;
        let leader = cl.leader(&[0, 1, 2], Duration::from_secs(5)).await;
        cl.kill(leader);
        let killed_at = Instant::now();
        let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        drop(cl);
        let cl = cluster.read().await;
        cl.leader(&survivors, Duration::from_secs(10)).await;
        (leader, killed_at.elapsed())
    };
    eprintln!(
        "new leader elected {elapsed:?} after kill -9 of node {}",
        killed + 1
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "a new leader took {elapsed:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    while clients.join_next().await.is_some() {}

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "too few appends acknowledged: {}",
        acked.len()
    );
    eprintln!("{} appends acknowledged across the kill", acked.len());
    let cl = cluster.read().await;
    let survivors: Vec<usize> = (0..3).filter(|&i| i != killed).collect();
    let max_index = acked.values().map(|(i, _)| *i).max().unwrap();
    for &i in &survivors {
        cl.wait_size(i, max_index + 1, Duration::from_secs(10))
            .await;
    }
    let size = cl.tree_size(survivors[0]).await;
    cl.wait_size(survivors[1], size, Duration::from_secs(10))
        .await;

    // Every acknowledged append is on every survivor, at its index, with its leaf hash.
    for &i in &survivors {
        let entries = entries_by_index(&cl, i, size).await;
        for (request_id, (index, leaf)) in &acked {
            let e = entries
                .get(index)
                .unwrap_or_else(|| panic!("entry {index} missing"));
            assert_eq!(e["request_id"], request_id.as_str());
            assert_eq!(e["leaf_hash"], leaf.as_str());
        }
    }
    // Identical roots at the same size.
    let roots: Vec<Value> = {
        let mut r = Vec::new();
        for &i in &survivors {
            r.push(cl.get(i, &format!("/v1/ledger/checkpoints/{size}")).await.1["root"].clone());
        }
        r
    };
    assert_eq!(roots[0], roots[1]);

    // Compact the survivors' logs, then restart the killed node: it catches up by snapshot.
    for &i in &survivors {
        let (s, _) = cl.admin(i, "/cluster/admin/snapshot", &json!({})).await;
        assert_eq!(s, 202);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for &i in &survivors {
        loop {
            let st = cl.status(i).await.unwrap();
            if st["purged_index"].as_u64().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "no purge on node {i}: {st}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(cl);
    cluster.write().await.spawn(killed);
    let cl = cluster.read().await;
    cl.wait_size(killed, size, Duration::from_secs(30)).await;
    let (_, cp) = cl
        .get(killed, &format!("/v1/ledger/checkpoints/{size}"))
        .await;
    assert_eq!(cp["root"], roots[0]);
    let st = cl.status(killed).await.unwrap();
    assert!(
        st["snapshot_index"].as_u64().is_some(),
        "not caught up by snapshot: {st}"
    );
    let (s, report) = {
        let r = cl
            .http
            .get(format!(
                "http://127.0.0.1:{}/cluster/admin/verify",
                cl.nodes[killed].cluster
            ))
            .bearer_auth(SECRET)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!((s, &report["ok"]), (200, &json!(true)), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minority_side_cannot_commit() {
    caretrail_platform::telemetry::init_for_tests();
    let cluster = Cluster::start(3);
    let leader = cluster.wait_formed().await;
    let key = cluster.setup_tenant(leader).await;
    let (s, _) = cluster
        .append(leader, &anchored(TEN_A, INS_A, &key, 1))
        .await;
    assert_eq!(s, 201);
    let before = cluster.tree_size(leader).await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let id = |i: usize| cluster.nodes[i].id;

    // Cut the leader off from both followers, in both directions.
    let (s, _) = cluster
        .admin(
            leader,
            "/cluster/admin/faults",
            &json!({"blocked": followers.iter().map(|&i| id(i)).collect::<Vec<_>>()}),
        )
        .await;
    assert_eq!(s, 200);
    for &f in &followers {
        let (s, _) = cluster
            .admin(
                f,
                "/cluster/admin/faults",
                &json!({"blocked": [id(leader)]}),
            )
            .await;
        assert_eq!(s, 200);
    }

    // The old leader cannot commit: the append fails (outcome unknown) and its tree stays.
    let minority = anchored(TEN_A, INS_A, &key, 2);
    let (s, body) = cluster.append(leader, &minority).await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(cluster.tree_size(leader).await, before);

    // The majority elects a leader of its own and commits.
    let new_leader = cluster.leader(&followers, Duration::from_secs(10)).await;
    let majority = anchored(TEN_A, INS_A, &key, 3);
    let (s, body) = cluster.append(new_leader, &majority).await;
    assert_eq!(s, 201, "{body}\n{}", cluster.all_logs());
    assert_eq!(
        cluster.tree_size(leader).await,
        before,
        "the minority applied an entry"
    );
    // The receipt can be followed up at once on the other majority node (read-your-writes).
    let other = followers
        .iter()
        .copied()
        .find(|&f| f != new_leader)
        .unwrap();
    let (s, e) = cluster
        .get(other, &format!("/v1/ledger/entries/{}", body["index"]))
        .await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["leaf_hash"], body["leaf_hash"]);

    // Heal: the old leader follows and converges; the minority's entry was never committed.
    for i in 0..3 {
        let (s, _) = cluster
            .admin(i, "/cluster/admin/faults", &json!({"blocked": []}))
            .await;
        assert_eq!(s, 200);
    }
    let size = cluster.tree_size(new_leader).await;
    cluster
        .wait_size(leader, size, Duration::from_secs(15))
        .await;
    let (_, a) = cluster
        .get(leader, &format!("/v1/ledger/checkpoints/{size}"))
        .await;
    let (_, b) = cluster
        .get(new_leader, &format!("/v1/ledger/checkpoints/{size}"))
        .await;
    assert_eq!(a["root"], b["root"]);
    let entries = entries_by_index(&cluster, leader, size).await;
    assert!(
        entries
            .values()
            .any(|e| e["request_id"] == majority.request_id.as_str())
    );
    assert!(
        !entries
            .values()
            .any(|e| e["request_id"] == minority.request_id.as_str())
    );

    // A retry with the same request id now commits exactly once.
    let (s, body) = cluster.append(new_leader, &minority).await;
    assert_eq!(s, 201, "{body}\n{}", cluster.all_logs());
    let (s, again) = cluster.append(leader, &minority).await;
    assert_eq!(s, 201, "{again}\n{}", cluster.all_logs());
    assert_eq!(again["index"], body["index"]);
    assert_eq!(again["duplicate"], true);
}
