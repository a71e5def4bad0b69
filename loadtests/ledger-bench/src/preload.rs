//! Grows the ledger to a given size with large batches before a measurement, signing on
//! background threads while earlier batches are in flight.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use crate::ledger::{Tenant, checker};

pub struct PreloadOptions {
    pub batch: u64,
    pub inflight: usize,
    pub sign_threads: usize,
}

pub struct PreloadStats {
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub secs: f64,
}

/// Appends `n` entries through `append_url` (`/internal/ledger/append`).
pub async fn preload(
    http: &reqwest::Client,
    append_url: &str,
    tenant: Arc<Tenant>,
    n: u64,
    opts: &PreloadOptions,
) -> Result<PreloadStats> {
    let started = Instant::now();
    let batch = opts.batch.max(1);
    let batches = n.div_ceil(batch);
    let first = tenant.reserve(batches * batch);
    let threads = opts.sign_threads.max(1) as u64;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(u64, Vec<u8>)>>(opts.inflight * 2);
    let mut producers = Vec::new();
    for t in 0..threads {
        let tx = tx.clone();
        let tenant = tenant.clone();
        producers.push(std::thread::spawn(move || {
            let mut b = t;
            while b < batches {
                let size = batch.min(n - b * batch);
                let body = tenant
                    .body(first + b * batch, size)
                    .map(|body| (size, body));
                let failed = body.is_err();
                if tx.blocking_send(body).is_err() || failed {
                    return;
                }
                b += threads;
            }
        }));
    }
    drop(tx);

    let mut ok = 0u64;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut in_flight = tokio::task::JoinSet::new();
    let mut last_report = Instant::now();
    let mut producing = true;
    loop {
        while producing && in_flight.len() < opts.inflight {
            match rx.recv().await {
                Some(item) => {
                    let (size, body) = item?;
                    let http = http.clone();
                    let url = append_url.to_string();
                    in_flight.spawn(async move {
                        let r = http
                            .post(url)
                            .header("content-type", "application/json")
                            .body(body)
                            .timeout(Duration::from_secs(300))
                            .send()
                            .await?;
                        let status = r.status().as_u16();
                        let bytes = r.bytes().await?;
                        Ok::<_, anyhow::Error>(checker(size)(status, &bytes))
                    });
                }
                None => producing = false,
            }
        }
        let Some(done) = in_flight.join_next().await else {
            break;
        };
        let outcome = done.map_err(|e| anyhow!("preload task: {e}"))??;
        ok += outcome.ok;
        for (code, k) in outcome.errors {
            *errors.entry(code).or_default() += k;
        }
        let failed: u64 = errors.values().sum();
        if failed > 1000 && failed * 100 > ok {
            bail!("preload: too many refused entries ({ok} ok): {errors:?}");
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "  preload {}: {ok}/{n} entries in {secs:.0} s ({:.0}/s)",
                tenant.suite,
                ok as f64 / secs
            );
        }
    }
    for p in producers {
        p.join().map_err(|_| anyhow!("a signing thread panicked"))?;
    }
    Ok(PreloadStats {
        ok,
        errors,
        secs: started.elapsed().as_secs_f64(),
    })
}
