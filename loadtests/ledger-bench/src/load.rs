//! The closed-loop driver shared by the ledger and etcd runs: `clients` tasks, each with one
//! request in flight at a time, taking prepared request bodies from a shared pool; latency is
//! measured client-side from send to the complete response.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

/// What one response committed.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Entries (or puts) that the response confirms as committed.
    pub ok: u64,
    /// Entries the response refused, by error code.
    pub errors: Vec<(String, u64)>,
}

/// Judges a response: HTTP status and body → what it committed.
pub type Checker = Arc<dyn Fn(u16, &[u8]) -> Outcome + Send + Sync>;

/// One measured point.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PointResult {
    /// Committed entries whose request completed inside the measurement window.
    pub window_ok: u64,
    /// Seconds of the measurement window (shorter than asked if the pool ran out).
    pub window_secs: f64,
    /// Committed entries per second in the window.
    pub rate: f64,
    /// Request latency percentiles of successful requests in the window, milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Successful requests in the window.
    pub requests: u64,
    /// Mean response body size of the successful requests in the window, bytes.
    pub response_bytes: f64,
    /// Committed entries over the whole point (warm-up and tail included): they are in the log.
    pub total_ok: u64,
    /// Refused entries and failed requests over the whole point, by code.
    pub errors: BTreeMap<String, u64>,
    /// The prepared pool ran out before the window ended.
    pub exhausted: bool,
}

impl PointResult {
    pub fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "0".into();
        }
        self.errors
            .iter()
            .map(|(code, n)| format!("{n} {code}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Requests to send: bodies POSTed as JSON, `entries` entries each.
pub struct Workload {
    /// One URL per client slot (client `i` uses `urls[i % urls.len()]`).
    pub urls: Vec<String>,
    pub bodies: Vec<Vec<u8>>,
    pub checker: Checker,
}

pub struct Timing {
    pub clients: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

struct Sample {
    done: Instant,
    latency_us: u64,
    response_bytes: usize,
    ok: u64,
    failed: bool,
}

/// Runs the workload and summarises the window `[start + warmup, start + warmup + duration]`
/// (cut short when the pool runs out).
pub async fn drive(http: &reqwest::Client, work: Workload, timing: &Timing) -> Result<PointResult> {
    if work.urls.is_empty() || timing.clients == 0 {
        return Err(anyhow!("nothing to drive"));
    }
    let bodies = Arc::new(work.bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let exhausted_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let start = Instant::now();
    let window_start = start + timing.warmup;
    let end = window_start + timing.duration;

    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..timing.clients {
        let http = http.clone();
        let url = work.urls[client % work.urls.len()].clone();
        let bodies = bodies.clone();
        let next = next.clone();
        let exhausted_at = exhausted_at.clone();
        let errors = errors.clone();
        let checker = work.checker.clone();
        tasks.spawn(async move {
            let mut samples = Vec::new();
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    if let Ok(mut at) = exhausted_at.lock() {
                        at.get_or_insert(now);
                    }
                    break;
                };
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let mut response_bytes = 0;
                let outcome = match response {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        match r.bytes().await {
                            Ok(b) => {
                                response_bytes = b.len();
                                checker(status, &b)
                            }
                            Err(e) => Outcome {
                                ok: 0,
                                errors: vec![(format!("transport: {}", short(&e)), 1)],
                            },
                        }
                    }
                    Err(e) => Outcome {
                        ok: 0,
                        errors: vec![(format!("transport: {}", short(&e)), 1)],
                    },
                };
                let done = Instant::now();
                let failed = !outcome.errors.is_empty();
                if failed && let Ok(mut map) = errors.lock() {
                    for (code, n) in outcome.errors {
                        *map.entry(code).or_default() += n;
                    }
                }
                samples.push(Sample {
                    done,
                    latency_us: u64::try_from(done.duration_since(sent).as_micros())
                        .unwrap_or(u64::MAX),
                    response_bytes,
                    ok: outcome.ok,
                    failed,
                });
                if failed && outcome.ok == 0 {
                    // Do not spin on a failing server.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            samples
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined?);
    }
    let exhausted_at = exhausted_at.lock().map(|g| *g).unwrap_or(None);
    let window_end = match exhausted_at {
        Some(at) if at < end => at,
        _ => end,
    };
    let window_secs = window_end
        .saturating_duration_since(window_start)
        .as_secs_f64();
    let mut latencies = Vec::new();
    let mut response_bytes = 0usize;
    let mut window_ok = 0u64;
    let mut total_ok = 0u64;
    for s in &all {
        total_ok += s.ok;
        if s.done >= window_start && s.done <= window_end {
            window_ok += s.ok;
            if !s.failed {
                latencies.push(s.latency_us);
                response_bytes += s.response_bytes;
            }
        }
    }
    latencies.sort_unstable();
    let errors = errors.lock().map(|g| g.clone()).unwrap_or_default();
    Ok(PointResult {
        window_ok,
        window_secs,
        rate: if window_secs > 0.0 {
            window_ok as f64 / window_secs
        } else {
            0.0
        },
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().map_or(0.0, |v| *v as f64 / 1000.0),
        requests: latencies.len() as u64,
        response_bytes: response_bytes as f64 / latencies.len().max(1) as f64,
        total_ok,
        errors,
        exhausted: exhausted_at.is_some_and(|at| at < end),
    })
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
fn percentile(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    sorted_us[i] as f64 / 1000.0
}

fn short(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        let mut s = e.to_string();
        s.truncate(80);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[7000], 0.99), 7.0);
    }
}
