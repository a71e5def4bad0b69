//! `caretrail-ledger-bench`: starts a 3-node ledger cluster (`caretrail-ledger` processes with
//! durable storage) on loopback, drives N concurrent clients appending signed ~256-byte
//! entries, optionally grows the ledger (1M, 10M entries) and measures again, runs a 3-member
//! etcd 3.4 cluster with the same concurrency and value size in the same run, and prints a
//! Markdown report. See `loadtests/README.md`.

mod etcd;
mod ledger;
mod load;
mod preload;
mod procs;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use caretrail_crypto::Suite;
use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::ledger::{ClusterOptions, LedgerCluster, Tenant};
use crate::load::{PointResult, Timing, Workload, drive};
use crate::procs::CpuSample;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SuiteArg {
    Intl,
    Gm,
    Both,
    /// No ledger: only the etcd baseline.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetArg {
    /// Every client sends to the leader (the main numbers).
    Leader,
    /// Clients are spread over the three nodes; followers forward to the leader.
    All,
}

/// Ledger append benchmark against a 3-node loopback cluster, with an etcd 3.4 baseline.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Crypto suite(s) of the benchmark tenant: a fresh cluster per suite.
    #[arg(long, value_enum, default_value = "both")]
    suite: SuiteArg,
    /// Concurrent clients per point, each with one request in flight.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    clients: Vec<usize>,
    /// Measured seconds per point.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Seconds per point before measuring (requests completing then are not counted).
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Submissions per request (1: `POST /internal/ledger/entries`; more: `/internal/ledger/append`).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Ledger sizes to grow to (in large batches) and measure again at, e.g. `1M,10M`.
    #[arg(long, value_delimiter = ',', value_parser = parse_count)]
    preload: Vec<u64>,
    /// Submissions per preload request.
    #[arg(long, default_value_t = 2000)]
    preload_batch: u64,
    /// Preload requests in flight.
    #[arg(long, default_value_t = 4)]
    preload_inflight: usize,
    /// Threads signing preload batches while earlier ones are appended.
    #[arg(long, default_value_t = 1)]
    preload_sign_threads: usize,
    /// Do not run the etcd baseline.
    #[arg(long)]
    skip_etcd: bool,
    /// etcd 3.4 server binary (Debian package etcd-server).
    #[arg(long, default_value = "etcd")]
    etcd_bin: PathBuf,
    /// The ledger node binary (default: <CARGO_TARGET_DIR or ./target>/release/caretrail-ledger).
    #[arg(long)]
    ledger_bin: Option<PathBuf>,
    /// Payload bytes per entry (canonical JSON) and value bytes per etcd put.
    #[arg(long, default_value_t = 256)]
    payload_size: usize,
    /// Which nodes the clients send to.
    #[arg(long, value_enum, default_value = "leader")]
    target: TargetArg,
    /// Directory for the clusters' data (default: a temporary directory, removed at the end).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the data directories (only with --work-dir).
    #[arg(long)]
    keep_data: bool,
    /// Extra environment for every ledger node, e.g. `CARETRAIL_LEDGER_MAX_BATCH=4096`.
    #[arg(long = "ledger-env", value_parser = parse_env)]
    ledger_env: Vec<(String, String)>,
    /// Highest rate (entries/s) the pre-signed pool of a point is sized for
    /// (default: 60000 for intl, 12000 for gm). A point that runs out is cut short and marked.
    #[arg(long)]
    expect_rate: Option<u64>,
    /// Highest etcd put rate the pool of a point is sized for.
    #[arg(long, default_value_t = 40000)]
    etcd_expect_rate: u64,
    /// Threads that pre-sign a point's submissions (before timing).
    #[arg(long)]
    sign_threads: Option<usize>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

fn parse_count(s: &str) -> Result<u64, String> {
    let s = s.trim().to_ascii_lowercase();
    let (digits, mult) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1_000),
        Some('m') => (&s[..s.len() - 1], 1_000_000),
        _ => (s.as_str(), 1),
    };
    digits
        .replace('_', "")
        .parse::<u64>()
        .map(|n| n * mult)
        .map_err(|e| format!("{s:?}: {e}"))
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[derive(Debug, Clone, Serialize)]
struct Row {
    system: &'static str,
    suite: String,
    /// Entries in the tenant's log when the point started.
    entries_before: u64,
    /// The `--preload` size this point belongs to (0: the fresh ledger).
    step: u64,
    clients: usize,
    batch: usize,
    #[serde(flatten)]
    result: PointResult,
    /// Allocated bytes of the three data directories / 3 / entries (or puts) in the store.
    disk_per_entry: f64,
    /// CPU use during the point, percent of one core, by process.
    cpu: Vec<(String, f64)>,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: String,
    started_unix: u64,
    args: String,
    rows: Vec<Row>,
    notes: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    tokio::select! {
        r = run(args) => r,
        _ = tokio::signal::ctrl_c() => {
            // Returning drops the clusters, which kills their processes.
            Err(anyhow!("interrupted"))
        }
    }
}

fn default_ledger_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("release").join("caretrail-ledger")
}

/// Pool size for a point: enough for the expected rate over warm-up + duration, plus a
/// margin. `previous` is the rate of the point before (same system and suite): the next one,
/// with more clients, is assumed to reach at most 4× that.
fn pool_entries(
    expect_rate: u64,
    previous: Option<f64>,
    clients: usize,
    batch: usize,
    timing: &Timing,
) -> u64 {
    // Nothing commits through a 3-node quorum in under 0.5 ms, so one client does < 2000 req/s.
    let cap = (clients as u64) * 2000 * batch as u64;
    let mut rate = expect_rate.min(cap) as f64;
    if let Some(prev) = previous {
        rate = rate.min((prev * 4.0).max(2000.0));
    }
    let secs = (timing.warmup + timing.duration).as_secs_f64();
    ((rate * secs * 1.25).ceil() as u64).max(1000)
}

async fn run(args: Args) -> Result<()> {
    if args.clients.is_empty() || args.clients.contains(&0) {
        bail!("--clients needs positive numbers");
    }
    if args.batch == 0 || args.batch > 10_000 {
        bail!("--batch must be 1..=10000");
    }
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (work_dir, _temp) = match &args.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("caretrail-ledger-bench-")
                .tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let keep = args.keep_data && args.work_dir.is_some();
    let sign_threads = args.sign_threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let timing = |clients| Timing {
        clients,
        warmup: Duration::from_secs(args.warmup_secs),
        duration: Duration::from_secs(args.duration_secs),
    };
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(120))
        .build()?;
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    eprintln!("work dir: {}", work_dir.display());

    // ---- etcd baseline -------------------------------------------------------------------
    if !args.skip_etcd {
        let dir = work_dir.join("etcd");
        let mut cluster = etcd::EtcdCluster::start(&args.etcd_bin, &dir, http.clone())?;
        let leader = cluster.wait_ready(Duration::from_secs(60)).await?;
        eprintln!("etcd: 3 members up, leader is member {}", leader + 1);
        let mut puts = 0u64;
        let mut seq = 0u64;
        for &clients in &args.clients {
            cluster.check_alive()?;
            let leader = cluster.wait_ready(Duration::from_secs(30)).await?;
            let t = timing(clients);
            let previous = rows.last().map(|r| r.result.rate);
            let n = pool_entries(args.etcd_expect_rate, previous, clients, 1, &t);
            let bodies = cluster.bodies(seq, n, args.payload_size)?;
            seq += n;
            let urls = match args.target {
                TargetArg::Leader => vec![cluster.put_url(leader)],
                TargetArg::All => (0..3).map(|i| cluster.put_url(i)).collect(),
            };
            let pids = cluster.pids();
            let cpu0 = CpuSample::take(&pids);
            let t0 = Instant::now();
            let result = drive(
                &http,
                Workload {
                    urls,
                    bodies,
                    checker: etcd::checker(),
                },
                &t,
            )
            .await?;
            let cpu = cpu0.usage(&CpuSample::take(&pids), t0.elapsed().as_secs_f64());
            puts += result.total_ok;
            let disk = cluster.disk_bytes()? as f64 / 3.0 / puts.max(1) as f64;
            let row = Row {
                system: "etcd",
                suite: "-".into(),
                entries_before: puts - result.total_ok,
                step: 0,
                clients,
                batch: 1,
                result,
                disk_per_entry: disk,
                cpu,
            };
            eprintln!("{}", progress_line(&row));
            rows.push(row);
        }
        cluster.shutdown().await;
        if !keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    // ---- ledger --------------------------------------------------------------------------
    let suites: Vec<Suite> = match args.suite {
        SuiteArg::Intl => vec![Suite::Intl],
        SuiteArg::Gm => vec![Suite::Gm],
        SuiteArg::Both => vec![Suite::Intl, Suite::Gm],
        SuiteArg::None => Vec::new(),
    };
    let bin = args.ledger_bin.clone().unwrap_or_else(default_ledger_bin);
    let mut steps = vec![0u64];
    let mut preload = args.preload.clone();
    preload.sort_unstable();
    steps.extend(preload);
    for suite in suites {
        let dir = work_dir.join(format!("ledger-{suite}"));
        let mut cluster = LedgerCluster::start(
            &ClusterOptions {
                bin: &bin,
                dir: &dir,
                extra_env: &args.ledger_env,
            },
            http.clone(),
        )?;
        let leader = cluster
            .wait_ready(Duration::from_secs(120))
            .await
            .with_context(|| format!("node logs are in {}", dir.display()))?;
        eprintln!("ledger ({suite}): 3 nodes up, leader is node {leader}");
        let tenant =
            Tenant::register(&http, &cluster.base_url(leader)?, suite, args.payload_size).await?;
        let expect_rate = args.expect_rate.unwrap_or(match suite {
            Suite::Intl => 60_000,
            Suite::Gm => 12_000,
        });
        let mut entries = 1u64; // the key registration
        for &step in &steps {
            if step > entries {
                cluster.check_alive()?;
                let leader = cluster.agreed_leader().await?;
                let url = format!("{}/internal/ledger/append", cluster.base_url(leader)?);
                eprintln!("ledger ({suite}): preloading {} entries", step - entries);
                let stats = preload::preload(
                    &http,
                    &url,
                    tenant.clone(),
                    step - entries,
                    &preload::PreloadOptions {
                        batch: args.preload_batch,
                        inflight: args.preload_inflight,
                        sign_threads: args.preload_sign_threads,
                    },
                )
                .await?;
                entries += stats.ok;
                let note = format!(
                    "{suite}: preloaded {} entries to {entries} in {:.0} s ({:.0}/s, batches of {}, {} in flight){}",
                    stats.ok,
                    stats.secs,
                    stats.ok as f64 / stats.secs.max(1e-9),
                    args.preload_batch,
                    args.preload_inflight,
                    if stats.errors.is_empty() {
                        String::new()
                    } else {
                        format!("; refused: {:?}", stats.errors)
                    }
                );
                eprintln!("  {note}");
                notes.push(note);
            }
            for &clients in &args.clients {
                cluster.check_alive()?;
                let leader = cluster.agreed_leader().await?;
                let urls = match args.target {
                    TargetArg::Leader => {
                        vec![format!("{}{}", cluster.base_url(leader)?, path(args.batch))]
                    }
                    TargetArg::All => cluster
                        .nodes
                        .iter()
                        .map(|n| format!("http://127.0.0.1:{}{}", n.http_port, path(args.batch)))
                        .collect(),
                };
                let t = timing(clients);
                let previous = rows
                    .last()
                    .filter(|r| r.system == "ledger" && r.suite == suite.to_string())
                    .map(|r| r.result.rate);
                let n = pool_entries(expect_rate, previous, clients, args.batch, &t);
                let signing = Instant::now();
                let signer = tenant.clone();
                let batch = args.batch;
                let bodies =
                    tokio::task::spawn_blocking(move || signer.bodies(n, batch, sign_threads))
                        .await??;
                eprintln!(
                    "  {suite} {clients} clients: pre-signed {n} submissions in {:.1} s",
                    signing.elapsed().as_secs_f64()
                );
                let pids = cluster.pids();
                let cpu0 = CpuSample::take(&pids);
                let t0 = Instant::now();
                let result = drive(
                    &http,
                    Workload {
                        urls,
                        bodies,
                        checker: ledger::checker(args.batch as u64),
                    },
                    &t,
                )
                .await?;
                let cpu = cpu0.usage(&CpuSample::take(&pids), t0.elapsed().as_secs_f64());
                let before = entries;
                entries += result.total_ok;
                let disk = cluster.disk_bytes()? as f64 / 3.0 / entries as f64;
                let row = Row {
                    system: "ledger",
                    suite: suite.to_string(),
                    entries_before: before,
                    step,
                    clients,
                    batch: args.batch,
                    result,
                    disk_per_entry: disk,
                    cpu,
                };
                eprintln!("{}", progress_line(&row));
                rows.push(row);
                if let Ok(now) = cluster.agreed_leader().await
                    && now != leader
                {
                    let note = format!(
                        "{suite}: leadership moved from node {leader} to node {now} during the {clients}-client point"
                    );
                    eprintln!("  {note}");
                    notes.push(note);
                }
            }
        }
        cluster.shutdown().await;
        if !keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    let report = Report {
        machine: machine(),
        started_unix,
        args: std::env::args().collect::<Vec<_>>().join(" "),
        rows,
        notes,
    };
    println!("{}", markdown(&report, &args));
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn path(batch: usize) -> &'static str {
    if batch == 1 {
        "/internal/ledger/entries"
    } else {
        "/internal/ledger/append"
    }
}

fn progress_line(r: &Row) -> String {
    format!(
        "  {} {} size {} clients {} batch {}: {:.0}/s p50 {:.2} ms p99 {:.2} ms, {:.0} B/entry on disk, {:.0} B/response, errors {}{}; cpu {}",
        r.system,
        r.suite,
        r.entries_before,
        r.clients,
        r.batch,
        r.result.rate,
        r.result.p50_ms,
        r.result.p99_ms,
        r.disk_per_entry,
        r.result.response_bytes,
        r.result.errors_text(),
        if r.result.exhausted {
            format!(" (pool ran out after {:.1} s)", r.result.window_secs)
        } else {
            String::new()
        },
        cpu_text(&r.cpu)
    )
}

fn cpu_text(cpu: &[(String, f64)]) -> String {
    cpu.iter()
        .map(|(n, p)| format!("{n} {p:.0}%"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    format!("{cores} cores ({model})")
}

fn fmt_rate(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "-".into()
    }
}

fn fmt_ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "-".into()
    }
}

fn fmt_size(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000_000 {
        format!("{:.2}M", n as f64 / 1e6)
    } else if n >= 1000 {
        format!("{:.0}k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

fn markdown(report: &Report, args: &Args) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let etcd = |clients: usize| {
        report
            .rows
            .iter()
            .find(|r| r.system == "etcd" && r.clients == clients)
    };
    let _ = writeln!(
        out,
        "## Ledger append benchmark\n\n{}; 3 ledger nodes{} on loopback; {} s measured per point after {} s warm-up; {}-byte payloads; batch {}; clients send to the {}.\n",
        report.machine,
        if args.skip_etcd {
            ""
        } else {
            " and 3 etcd members (not at the same time)"
        },
        args.duration_secs,
        args.warmup_secs,
        args.payload_size,
        args.batch,
        match args.target {
            TargetArg::Leader => "leader",
            TargetArg::All => "three nodes in turn",
        }
    );
    let _ = writeln!(
        out,
        "| suite | entries before | clients | appends/s | p50 ms | p99 ms | disk B/entry | etcd puts/s | ratio | errors |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in report.rows.iter().filter(|r| r.system == "ledger") {
        let e = etcd(r.clients);
        let ratio = e
            .filter(|e| e.result.rate > 0.0)
            .map(|e| format!("{:.2}×", r.result.rate / e.result.rate))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}{} | {} | {} | {:.0} | {} | {} | {} |",
            r.suite,
            fmt_size(r.entries_before),
            r.clients,
            fmt_rate(r.result.rate),
            if r.result.exhausted { " †" } else { "" },
            fmt_ms(r.result.p50_ms),
            fmt_ms(r.result.p99_ms),
            r.disk_per_entry,
            e.map(|e| fmt_rate(e.result.rate))
                .unwrap_or_else(|| "-".into()),
            ratio,
            r.result.errors_text()
        );
    }
    let etcd_rows: Vec<&Row> = report.rows.iter().filter(|r| r.system == "etcd").collect();
    if !etcd_rows.is_empty() {
        let _ = writeln!(
            out,
            "\netcd 3.4 baseline (puts of {}-byte values to fresh keys through the v3 JSON gateway):\n",
            args.payload_size
        );
        let _ = writeln!(
            out,
            "| clients | puts/s | p50 ms | p99 ms | disk B/put | errors |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---|");
        for r in &etcd_rows {
            let _ = writeln!(
                out,
                "| {} | {}{} | {} | {} | {:.0} | {} |",
                r.clients,
                fmt_rate(r.result.rate),
                if r.result.exhausted { " †" } else { "" },
                fmt_ms(r.result.p50_ms),
                fmt_ms(r.result.p99_ms),
                r.disk_per_entry,
                r.result.errors_text()
            );
        }
    }
    let _ = writeln!(
        out,
        "\nCPU during each point (% of one core; 200 % = both cores; `other` = the rest of the machine) and mean response size:\n"
    );
    let _ = writeln!(
        out,
        "| system | suite | entries before | clients | CPU by process | response B/request |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---|---:|");
    for r in &report.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.0} |",
            r.system,
            r.suite,
            fmt_size(r.entries_before),
            r.clients,
            cpu_text(&r.cpu),
            r.result.response_bytes
        );
    }
    if report.rows.iter().any(|r| r.result.exhausted) {
        let _ = writeln!(
            out,
            "\n† the pre-signed pool ran out before the window ended: the rate is over the shorter window (raise --expect-rate)."
        );
    }
    let _ = writeln!(out, "\n### Against the targets\n");
    for line in targets(report) {
        let _ = writeln!(out, "- {line}");
    }
    if !report.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:\n");
        for n in &report.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    let _ = writeln!(out, "\nCommand: `{}`", report.args);
    out
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn targets(report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let ledger: Vec<&Row> = report
        .rows
        .iter()
        .filter(|r| r.system == "ledger")
        .collect();
    for (suite, target) in [("intl", 30_000.0), ("gm", 6_000.0)] {
        let rows: Vec<&&Row> = ledger.iter().filter(|r| r.suite == suite).collect();
        let Some(best) = rows
            .iter()
            .max_by(|a, b| a.result.rate.total_cmp(&b.result.rate))
        else {
            continue;
        };
        out.push(format!(
            "{suite} ≥ {target:.0} appends/s: best {:.0}/s ({} clients, batch {}, ledger at {}) — {}",
            best.result.rate,
            best.clients,
            best.batch,
            fmt_size(best.entries_before),
            verdict(best.result.rate >= target)
        ));
        for r in rows.iter().filter(|r| r.clients == 64) {
            out.push(format!(
                "{suite} p99 ≤ 25 ms at 64 clients (ledger at {}): {:.1} ms — {}",
                fmt_size(r.entries_before),
                r.result.p99_ms,
                verdict(r.result.p99_ms <= 25.0)
            ));
        }
        let ratios: Vec<(usize, f64)> = rows
            .iter()
            .filter(|r| r.step == 0)
            .filter_map(|r| {
                let e = report
                    .rows
                    .iter()
                    .find(|e| e.system == "etcd" && e.clients == r.clients)?;
                (e.result.rate > 0.0).then(|| (r.clients, r.result.rate / e.result.rate))
            })
            .collect();
        if !ratios.is_empty() {
            let worst = ratios
                .iter()
                .copied()
                .fold(f64::INFINITY, |m, (_, x)| m.min(x));
            out.push(format!(
                "{suite} ≥ 3× etcd's put rate: {} — {}",
                ratios
                    .iter()
                    .map(|(c, x)| format!("{x:.2}× at {c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                verdict(worst >= 3.0)
            ));
        }
        let worst_disk = rows.iter().map(|r| r.disk_per_entry).fold(0.0f64, f64::max);
        out.push(format!(
            "{suite} ≤ 1 KiB on disk per entry: worst {worst_disk:.0} B — {}",
            verdict(worst_disk <= 1024.0)
        ));
        // Flat cost: each grown size against the fresh ledger at the same concurrency.
        let sizes: std::collections::BTreeSet<u64> =
            rows.iter().map(|r| r.step).filter(|s| *s > 0).collect();
        for size in sizes {
            let pairs: Vec<String> = rows
                .iter()
                .filter(|r| r.step == size)
                .filter_map(|r| {
                    let fresh = rows
                        .iter()
                        .find(|f| f.clients == r.clients && f.step == 0)?;
                    (fresh.result.rate > 0.0).then(|| {
                        format!(
                            "{:.0} % of the fresh rate at {} clients (p99 {:.1} vs {:.1} ms)",
                            r.result.rate / fresh.result.rate * 100.0,
                            r.clients,
                            r.result.p99_ms,
                            fresh.result.p99_ms
                        )
                    })
                })
                .collect();
            if !pairs.is_empty() {
                out.push(format!(
                    "{suite} at {} entries: {}",
                    fmt_size(size),
                    pairs.join("; ")
                ));
            }
        }
    }
    out.push(
        "inclusion proof ≤ 50 µs at 10M entries: not measured here (the public proof endpoint needs a JWT; see the ledger's criterion bench)".into(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::parse_count;

    #[test]
    fn counts() {
        assert_eq!(parse_count("1M"), Ok(1_000_000));
        assert_eq!(parse_count("10m"), Ok(10_000_000));
        assert_eq!(parse_count("500k"), Ok(500_000));
        assert_eq!(parse_count("1_000"), Ok(1000));
        assert!(parse_count("x").is_err());
    }
}
