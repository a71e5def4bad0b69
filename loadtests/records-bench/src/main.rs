//! `caretrail-records-bench`: starts `caretrail serve` (release build) on the local object
//! directory and, with `--s3`, on an S3 server; uploads and downloads records of the given
//! sizes through the gateway for a gm and an intl tenant; samples the server's resident
//! memory during each transfer; measures the raw streaming cipher (encrypt + hash, decrypt +
//! hash) in this process; prints a Markdown report. See `loadtests/README.md`.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use caretrail_crypto::{DataKey, Hasher, StreamDecryptor, StreamEncryptor, Suite};
use clap::Parser;
use futures::StreamExt as _;
use serde_json::{Value, json};

const MIB: usize = 1024 * 1024;

/// Record throughput through the gateway, with the raw cipher speed for comparison.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The all-in-one binary (build it with `cargo build --release -p caretrail`).
    #[arg(long)]
    caretrail: Option<PathBuf>,
    /// Record sizes in MiB.
    #[arg(long, value_delimiter = ',', default_value = "1,256")]
    sizes_mib: Vec<usize>,
    /// Transfers per size for sizes ≤ 16 MiB (larger ones: `--large-repeat`).
    #[arg(long, default_value_t = 20)]
    small_repeat: usize,
    #[arg(long, default_value_t = 2)]
    large_repeat: usize,
    /// Also run against S3 (the `CARETRAIL_S3_*` settings of `infra/start-s3.sh` by default).
    #[arg(long)]
    s3: bool,
    #[arg(long, default_value = "http://127.0.0.1:3900")]
    s3_endpoint: String,
    #[arg(long, default_value = "garage")]
    s3_region: String,
    #[arg(long, default_value = "caretrail-test")]
    s3_bucket: String,
    /// Also transfer straight to the object store's own port (no gateway hop), to separate
    /// the gateway's share.
    #[arg(long)]
    direct: bool,
}

struct Server {
    child: Child,
    base: String,
    /// The object store's own port, from the server's start-up log.
    store: Option<String>,
    credentials: Value,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start(bin: &PathBuf, s3: Option<&Args>) -> Result<Server> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--seed-demo")
        .env("CARETRAIL_DATA_DIR", dir.path())
        .env("CARETRAIL_HTTP_PORT", port.to_string())
        .env("CARETRAIL_MAX_RECORD_BYTES", (8u64 << 30).to_string())
        .env("RUST_LOG", "warn,caretrail_platform::http=info")
        .env("CARETRAIL_LOG_FORMAT", "json")
        // Logs go to stdout (the `listening` lines name each service's port).
        .stdout(std::fs::File::create(dir.path().join("serve.out"))?)
        .stderr(std::fs::File::create(dir.path().join("serve.log"))?);
    if let Some(a) = s3 {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        cmd.env("CARETRAIL_STORAGE", "s3")
            .env("CARETRAIL_S3_ENDPOINT", &a.s3_endpoint)
            .env("CARETRAIL_S3_REGION", &a.s3_region)
            .env("CARETRAIL_S3_BUCKET", &a.s3_bucket)
            .env(
                "CARETRAIL_S3_ACCESS_KEY_ID",
                env("CARETRAIL_S3_ACCESS_KEY", "GK31c2f218a2e44f485b94239e"),
            )
            .env(
                "CARETRAIL_S3_SECRET_ACCESS_KEY",
                env(
                    "CARETRAIL_S3_SECRET_KEY",
                    "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835",
                ),
            );
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let base = format!("http://127.0.0.1:{port}");
    let creds = dir.path().join("dev-credentials.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await
            && r.status() == 200
            && creds.exists()
        {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the server did not become ready; see {}",
                dir.path().join("serve.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let credentials = serde_json::from_str(&std::fs::read_to_string(&creds)?)?;
    let store = std::fs::read_to_string(dir.path().join("serve.out"))?
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "listening" && l["service"] == "object-store")
        .and_then(|l| l["port"].as_u64())
        .map(|port| format!("http://127.0.0.1:{port}"));
    Ok(Server {
        child,
        base,
        store,
        credentials,
        _dir: dir,
    })
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples the server's RSS every 10 ms while a transfer runs; returns (baseline, peak) KiB.
struct RssProbe {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    baseline: u64,
    task: tokio::task::JoinHandle<()>,
}

impl RssProbe {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let baseline = rss_kib(pid);
        let peak = Arc::new(AtomicU64::new(baseline));
        let (s, p) = (stop.clone(), peak.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Self {
            stop,
            peak,
            baseline,
            task,
        }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        (self.baseline, self.peak.load(Ordering::Relaxed))
    }
}

async fn token(http: &reqwest::Client, base: &str, app: &Value) -> Result<String> {
    let resp: Value = http
        .post(format!("{base}/v1/oauth/token"))
        .basic_auth(
            app["client_id"].as_str().unwrap_or(""),
            app["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .json()
        .await?;
    Ok(resp["access_token"]
        .as_str()
        .context("no token")?
        .to_string())
}

fn pattern() -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(MIB);
    while v.len() < MIB {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(v)
}

struct Row {
    storage: &'static str,
    suite: Suite,
    size_mib: usize,
    upload_mbs: f64,
    download_mbs: f64,
    peak_rss_delta_mib: Option<f64>,
}

async fn transfers(
    server: &Server,
    target: &str,
    storage: &'static str,
    args: &Args,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .build()?;
    let chunk = pattern();
    let pid = server.child.id();
    for (t, suite) in [(0usize, Suite::Gm), (1, Suite::Intl)] {
        let app = &server.credentials["tenants"][t]["institutions"][0]["app"];
        let token = token(&http, &server.base, app).await?;
        let patient: Value = http
            .post(format!("{}/v1/patients", server.base))
            .bearer_auth(&token)
            .json(&json!({"identifier": format!("32040219800101{t}234")}))
            .send()
            .await?
            .json()
            .await?;
        let patient = patient["id"].as_str().context("patient")?.to_string();
        let metadata = json!({"patient": patient, "category": "imaging", "title": "bench", "encounter_date": "2026-11-01"}).to_string();
        for &size in &args.sizes_mib {
            let repeat = if size <= 16 {
                args.small_repeat
            } else {
                args.large_repeat
            };
            let (mut up_secs, mut down_secs) = (0.0, 0.0);
            let mut peak_delta: Option<f64> = None;
            for _ in 0..repeat {
                let probe = RssProbe::start(pid);
                let pieces = chunk.clone();
                let body = futures::stream::iter(
                    (0..size).map(move |_| Ok::<_, std::io::Error>(pieces.clone())),
                );
                let started = Instant::now();
                let resp = http
                    .post(format!("{target}/v1/records"))
                    .bearer_auth(&token)
                    .header("content-type", "application/dicom")
                    .header("caretrail-metadata", &metadata)
                    .header("content-length", (size * MIB).to_string())
                    .body(reqwest::Body::wrap_stream(body))
                    .send()
                    .await?;
                let status = resp.status();
                let out: Value = resp.json().await?;
                up_secs += started.elapsed().as_secs_f64();
                if status != 201 {
                    bail!("upload answered {status}: {out}");
                }
                let id = out["record"]["id"]
                    .as_str()
                    .context("record id")?
                    .to_string();
                let started = Instant::now();
                let resp = http
                    .get(format!("{target}/v1/records/{id}/content"))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                if resp.status() != 200 {
                    bail!("download answered {}", resp.status());
                }
                let mut stream = resp.bytes_stream();
                let mut n = 0usize;
                while let Some(piece) = stream.next().await {
                    n += piece?.len();
                }
                down_secs += started.elapsed().as_secs_f64();
                if n != size * MIB {
                    bail!("downloaded {n} bytes, expected {}", size * MIB);
                }
                let (base, peak) = probe.finish().await;
                let delta = peak.saturating_sub(base) as f64 / 1024.0;
                peak_delta = Some(peak_delta.map_or(delta, |d: f64| d.max(delta)));
            }
            let total = (size * repeat) as f64;
            rows.push(Row {
                storage,
                suite,
                size_mib: size,
                upload_mbs: total / up_secs,
                download_mbs: total / down_secs,
                peak_rss_delta_mib: peak_delta,
            });
            eprintln!("{storage} {suite} {size} MiB done");
        }
    }
    Ok(())
}

/// What the server does per byte, without any I/O: (encrypt + hash, decrypt + hash) MB/s.
fn raw_cipher(suite: Suite, mib: usize) -> Result<(f64, f64)> {
    let key = DataKey::generate(suite)?;
    let chunk = pattern();
    let mut sealed = Vec::with_capacity(mib * (MIB + MIB / 32));
    let started = Instant::now();
    let mut enc = StreamEncryptor::new(&key, b"bench")?;
    let mut hasher = Hasher::new(suite);
    sealed.extend_from_slice(enc.header());
    for _ in 0..mib {
        hasher.update(&chunk);
        enc.update(&chunk, &mut sealed)?;
    }
    enc.finish_into(&[], &mut sealed)?;
    let _ = hasher.finalize();
    let enc_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut dec = StreamDecryptor::new(&key, b"bench");
    let mut hasher = Hasher::new(suite);
    let mut plain = Vec::with_capacity(2 * MIB);
    for piece in sealed.chunks(MIB) {
        plain.clear();
        dec.update(piece, &mut plain)?;
        hasher.update(&plain);
    }
    dec.finish()?;
    let _ = hasher.finalize();
    let dec_secs = started.elapsed().as_secs_f64();
    Ok((mib as f64 / enc_secs, mib as f64 / dec_secs))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = match &args.caretrail {
        Some(p) => p.clone(),
        None => {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            PathBuf::from(target).join("release/caretrail")
        }
    };
    // Best of three: on a shared 2-core VM single runs vary by tens of percent.
    let mut raw = Vec::new();
    for suite in [Suite::Gm, Suite::Intl] {
        let mut best = (0.0f64, 0.0f64);
        for _ in 0..3 {
            let (e, d) = raw_cipher(suite, 256)?;
            best = (best.0.max(e), best.1.max(d));
        }
        raw.push((suite, best));
    }
    let mut rows = Vec::new();
    for (s3, storage, direct_name) in [
        (false, "local dir", "local dir, direct"),
        (true, "S3 (Garage)", "S3 (Garage), direct"),
    ] {
        if s3 && !args.s3 {
            continue;
        }
        let server = start(&bin, s3.then_some(&args)).await?;
        transfers(&server, &server.base, storage, &args, &mut rows).await?;
        if args.direct {
            let store = server
                .store
                .clone()
                .context("the object store's port is not in the server log")?;
            transfers(&server, &store, direct_name, &args, &mut rows).await?;
        }
    }

    println!(
        "## Records: upload and download through the gateway (\"direct\": to the object store's own port)\n"
    );
    println!(
        "Machine: {} cores. Client, gateway, services{} share it.\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        if args.s3 { " and the S3 server" } else { "" }
    );
    println!("Raw streaming cipher in one thread (256 MiB in memory, no I/O; best of 3):\n");
    println!("| suite | encrypt + hash MB/s | decrypt + hash MB/s |");
    println!("|---|---|---|");
    for (suite, (e, d)) in &raw {
        println!("| {suite} | {e:.0} | {d:.0} |");
    }
    println!(
        "\n| storage | suite | record | upload MB/s | % of raw | download MB/s | % of raw | peak server RSS growth |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let (e, d) = raw
            .iter()
            .find(|(s, _)| *s == r.suite)
            .map(|(_, v)| *v)
            .unwrap_or((f64::NAN, f64::NAN));
        println!(
            "| {} | {} | {} MiB | {:.0} | {:.0}% | {:.0} | {:.0}% | {} |",
            r.storage,
            r.suite,
            r.size_mib,
            r.upload_mbs,
            100.0 * r.upload_mbs / e,
            r.download_mbs,
            100.0 * r.download_mbs / d,
            r.peak_rss_delta_mib
                .map(|m| format!("{m:.1} MiB"))
                .unwrap_or_default(),
        );
    }
    Ok(())
}
