//! Child processes that die with the benchmark, free ports, disk usage and CPU accounting.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, Result, bail};
use tokio::process::{Child, Command};

/// A started child with the file its output goes to.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

/// Owns child processes: they are killed when this is dropped (error, panic, Ctrl-C), and
/// [`Procs::shutdown`] kills and reaps them on the normal path.
#[derive(Default)]
pub struct Procs {
    procs: Vec<Proc>,
}

impl Procs {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(&mut self, name: &str, mut cmd: Command, log: &Path) -> Result<()> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.as_std().get_program()))?;
        self.procs.push(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        });
        Ok(())
    }

    /// Fails (with the end of its log) if a child has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for p in &mut self.procs {
            if let Some(status) = p.child.try_wait()? {
                bail!(
                    "{} exited ({status}); end of {}:\n{}",
                    p.name,
                    p.log.display(),
                    log_tail(&p.log, 3000)
                );
            }
        }
        Ok(())
    }

    /// Process ids by name, for CPU accounting.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.procs
            .iter()
            .filter_map(|p| p.child.id().map(|id| (p.name.clone(), id)))
            .collect()
    }

    /// Kills every child and waits for it.
    pub async fn shutdown(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.start_kill();
        }
        for p in &mut self.procs {
            let _ = p.child.wait().await;
        }
        self.procs.clear();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.start_kill();
        }
    }
}

/// The last `max` bytes of a log file (for error messages).
pub fn log_tail(path: &Path, max: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    read().unwrap_or_else(|e| format!("(cannot read: {e})"))
}

/// `n` distinct free TCP ports on 127.0.0.1 (held together while choosing, so no repeats).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Bytes allocated on disk (st_blocks × 512) by everything under `path`.
pub fn disk_usage(path: &Path) -> Result<u64> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            total += disk_usage(&entry?.path())?;
        }
    }
    Ok(total)
}

/// CPU time (user + system) of a process in seconds, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture we run on.
    Some((utime + stime) / 100.0)
}

/// Busy CPU seconds of the whole machine (user, nice, system, irq and softirq time; not idle,
/// iowait, steal or the guest times already counted in user), from `/proc/stat`.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy = [0, 1, 2, 5, 6]
        .iter()
        .map(|i| ticks.get(*i).copied())
        .sum::<Option<f64>>()?;
    Some(busy / 100.0)
}

/// CPU seconds of this process, of each named child and of the whole machine, to report who
/// used the cores.
#[derive(Debug, Clone)]
pub struct CpuSample {
    pub bench: f64,
    pub children: Vec<(String, f64)>,
    pub machine: f64,
}

impl CpuSample {
    pub fn take(pids: &[(String, u32)]) -> Self {
        Self {
            bench: cpu_seconds(None).unwrap_or(0.0),
            children: pids
                .iter()
                .map(|(n, p)| (n.clone(), cpu_seconds(Some(*p)).unwrap_or(0.0)))
                .collect(),
            machine: machine_busy_seconds().unwrap_or(0.0),
        }
    }

    /// CPU use between `self` (earlier) and `later` over `secs`, in percent of one core, by
    /// process, then `other`: everything else on the machine (other builds, kernel threads).
    pub fn usage(&self, later: &CpuSample, secs: f64) -> Vec<(String, f64)> {
        let pct = |a: f64, b: f64| {
            if secs > 0.0 {
                (b - a) / secs * 100.0
            } else {
                0.0
            }
        };
        let mut out = vec![("bench".to_string(), pct(self.bench, later.bench))];
        for ((name, a), (_, b)) in self.children.iter().zip(&later.children) {
            out.push((name.clone(), pct(*a, *b)));
        }
        let ours: f64 = out.iter().map(|(_, p)| p).sum();
        let machine = pct(self.machine, later.machine);
        out.push(("other".to_string(), (machine - ours).max(0.0)));
        out
    }
}
