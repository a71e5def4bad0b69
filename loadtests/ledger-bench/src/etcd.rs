//! A 3-member etcd cluster on loopback (Debian `etcd-server` 3.4) driven through its v3
//! HTTP/JSON gateway, as the baseline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore as _;
use serde::Deserialize;
use tokio::process::Command;

use crate::ledger::hex;
use crate::load::{Checker, Outcome};
use crate::procs::{Procs, disk_usage, free_ports};

const MEMBERS: usize = 3;

pub struct EtcdCluster {
    procs: Procs,
    client_ports: Vec<u16>,
    data_dirs: Vec<PathBuf>,
    http: reqwest::Client,
    run: String,
}

#[derive(Deserialize)]
struct Header {
    member_id: String,
}

#[derive(Deserialize)]
struct StatusOut {
    header: Header,
    #[serde(default)]
    leader: Option<String>,
}

impl EtcdCluster {
    pub fn start(bin: &Path, dir: &Path, http: reqwest::Client) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ports = free_ports(2 * MEMBERS)?;
        let (client_ports, peer_ports): (Vec<u16>, Vec<u16>) =
            ports.chunks(2).map(|p| (p[0], p[1])).unzip();
        let mut token = [0u8; 6];
        rand::rngs::OsRng.fill_bytes(&mut token);
        let run = hex(&token);
        let initial = peer_ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("e{}=http://127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut procs = Procs::default();
        let mut data_dirs = Vec::new();
        for i in 0..MEMBERS {
            let name = format!("e{}", i + 1);
            let data = dir.join(&name);
            let client = format!("http://127.0.0.1:{}", client_ports[i]);
            let peer = format!("http://127.0.0.1:{}", peer_ports[i]);
            let mut cmd = Command::new(bin);
            cmd.args(["--name", &name])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &format!("bench-{run}")])
                // Room for every put of a long run (the default quota is 2 GiB).
                .args(["--quota-backend-bytes", "8589934592"])
                .args(["--logger", "zap", "--log-level", "warn"]);
            // The Debian service reads ETCD_* variables; none may leak in.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("ETCD_") {
                    cmd.env_remove(k);
                }
            }
            procs.spawn(&name, cmd, &dir.join(format!("{name}.log")))?;
            data_dirs.push(data);
        }
        Ok(Self {
            procs,
            client_ports,
            data_dirs,
            http,
            run,
        })
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.client_ports[i])
    }

    /// The index of the leader member, once all members agree on one.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        loop {
            self.procs.check_alive()?;
            if Instant::now() > deadline {
                bail!("the etcd cluster did not form in {timeout:?}: {last}");
            }
            match self.leader().await {
                Ok(Some(i)) => return Ok(i),
                Ok(None) => last = "no agreed leader".into(),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn leader(&self) -> Result<Option<usize>> {
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for i in 0..MEMBERS {
            let s: StatusOut = self
                .http
                .post(format!("{}/v3/maintenance/status", self.url(i)))
                .json(&serde_json::json!({}))
                .timeout(Duration::from_secs(2))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            ids.push(s.header.member_id);
            leaders.push(s.leader.unwrap_or_default());
        }
        let first = leaders[0].clone();
        if first.is_empty() || first == "0" || leaders.iter().any(|l| *l != first) {
            return Ok(None);
        }
        Ok(ids.iter().position(|id| *id == first))
    }

    pub fn put_url(&self, member: usize) -> String {
        format!("{}/v3/kv/put", self.url(member))
    }

    /// `n` put bodies with fresh keys and `value_size`-byte random values.
    pub fn bodies(&self, first: u64, n: u64, value_size: usize) -> Result<Vec<Vec<u8>>> {
        let mut value = vec![0u8; value_size];
        rand::thread_rng().fill_bytes(&mut value);
        let value = B64.encode(&value);
        (first..first + n)
            .map(|seq| {
                let key = B64.encode(format!("bench/{}/{seq:012}", self.run));
                Ok(serde_json::to_vec(
                    &serde_json::json!({ "key": key, "value": value }),
                )?)
            })
            .collect()
    }

    pub fn disk_bytes(&self) -> Result<u64> {
        let mut total = 0;
        for d in &self.data_dirs {
            total += disk_usage(d)?;
        }
        Ok(total)
    }

    pub fn pids(&self) -> Vec<(String, u32)> {
        self.procs.pids()
    }

    pub fn check_alive(&mut self) -> Result<()> {
        self.procs.check_alive()
    }

    pub async fn shutdown(&mut self) {
        self.procs.shutdown().await;
    }
}

/// A put succeeded when the gateway answers 200 with a response header.
pub fn checker() -> Checker {
    Arc::new(|status, body| {
        if status == 200 && body.windows(8).any(|w| w == b"\"header\"") {
            Outcome {
                ok: 1,
                errors: Vec::new(),
            }
        } else {
            let mut text = String::from_utf8_lossy(body).into_owned();
            text.truncate(60);
            Outcome {
                ok: 0,
                errors: vec![(format!("http {status} {text}"), 1)],
            }
        }
    })
}
