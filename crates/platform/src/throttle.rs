//! Throttling: a token bucket per key (a client address, an account), in memory.
//!
//! Used where an anonymous caller can make the service work — logins, whose password
//! verification costs an argon2 run: the gateway throttles per client address before it
//! forwards anything, identity again per address and per account. Each replica counts on its
//! own, so the limits are per replica; the map of buckets is bounded, dropping full buckets
//! and then the longest-idle ones first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How fast attempts may come: `burst` at once, then one per `every`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub burst: u32,
    pub every: Duration,
}

impl Rate {
    /// Password and refresh-token checks per client address, at the gateway and again in
    /// identity: 20 at once, then two a second.
    pub const CREDENTIAL_CHECKS_PER_ADDRESS: Rate = Rate {
        burst: 20,
        every: Duration::from_millis(500),
    };
}

/// A wait in whole seconds, rounded up and at least one: what `Retry-After` and the problem's
/// detail say.
pub fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Tokens at `now`, before the cap: what was left plus what refilled since.
    fn level(&self, now: Instant, per_sec: f64) -> f64 {
        self.tokens + now.duration_since(self.at).as_secs_f64() * per_sec
    }
}

pub struct Throttle {
    rate: Rate,
    max_keys: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Throttle {
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Self {
            rate,
            max_keys,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt for `key`, or says how long to wait for the next.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let per_sec = 1.0 / self.rate.every.as_secs_f64();
        let burst = f64::from(self.rate.burst);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains_key(key) && buckets.len() >= self.max_keys {
            // Full buckets carry no information: drop them, then the idlest half if need be.
            buckets.retain(|_, b| b.level(now, per_sec) < burst);
            if buckets.len() >= self.max_keys {
                let mut ages: Vec<Instant> = buckets.values().map(|b| b.at).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                buckets.retain(|_, b| b.at > cut);
            }
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refilled = bucket.level(now, per_sec).min(burst);
        bucket.at = now;
        if refilled >= 1.0 {
            bucket.tokens = refilled - 1.0;
            Ok(())
        } else {
            bucket.tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval_and_keys_apart() {
        let t = Throttle::new(
            Rate {
                burst: 3,
                every: Duration::from_secs(2),
            },
            100,
        );
        let start = Instant::now();
        for _ in 0..3 {
            assert!(t.take_at("a", start).is_ok());
        }
        let wait = t.take_at("a", start).unwrap_err();
        assert!(
            wait > Duration::from_millis(1900) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        assert!(
            t.take_at("b", start).is_ok(),
            "another key has its own bucket"
        );
        assert!(t.take_at("a", start + Duration::from_secs(1)).is_err());
        assert!(t.take_at("a", start + Duration::from_secs(2)).is_ok());
        assert!(t.take_at("a", start + Duration::from_secs(2)).is_err());
    }

    #[test]
    fn waits_are_told_in_whole_seconds_rounded_up() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
    }

    #[test]
    fn the_map_stays_bounded() {
        let t = Throttle::new(
            Rate {
                burst: 1,
                every: Duration::from_secs(60),
            },
            10,
        );
        let now = Instant::now();
        for i in 0..1000 {
            let _ = t.take_at(&format!("k{i}"), now);
        }
        assert!(
            t.buckets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len()
                <= 10
        );
    }
}
