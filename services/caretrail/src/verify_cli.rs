//! `caretrail verify …`: the offline verifier for ledger receipts (proof bundles, signed
//! checkpoints, consistency proofs).
//!
//! The cryptography lives in `caretrail_ledger_proofs` (tested there); this file reads files,
//! builds the trust anchors from the keys pinned on the command line, prints one line per check
//! (`✓` passed, `✗` failed, `-` skipped or not run) and a summary, or the same as JSON with
//! `--json`. Nothing touches the network.
//!
//! Exit codes: 0 everything verified, 1 a check failed (forged, altered or foreign data),
//! 2 usage, I/O or parse error — including a field inside the bundle or note that cannot be
//! parsed (the `✗` line says which; the message is also written to stderr).

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use caretrail_crypto::{HASH_LEN, HashValue, Suite, VerifyingKey, parse_pem};
use caretrail_ledger_proofs::bundle::{MAX_BUNDLE_LEN, MAX_PROOF_HASHES};
use caretrail_ledger_proofs::note::MAX_NOTE_LEN;
use caretrail_ledger_proofs::{
    BundleFailure, CheckKind, CheckResult, CheckStatus, Checkpoint, Note, ProofBundle, ProofError,
    TrustAnchors, VerifiedReport, VerifiedSignature, VerifierKey, verify_bundle,
    verify_consistency,
};
use serde::{Deserialize, Serialize};

use crate::crypto_cli::SuiteArg;

/// Largest consistency-proof file accepted, in bytes (130 base64 hashes need ~6 KiB).
const MAX_PROOF_FILE_LEN: usize = 64 * 1024;
/// Largest PEM public-key file accepted, in bytes.
const MAX_PEM_LEN: usize = 64 * 1024;

#[derive(Debug, clap::Subcommand)]
pub enum VerifyCommand {
    /// Verify a proof bundle: entry, submitter signature, signed checkpoint, inclusion proof,
    /// witness cosignatures and (if present) consistency with an earlier checkpoint.
    ///
    /// Pin the tenant's ledger key with --ledger-key (obtained out of band). Without it, the
    /// keys embedded in the bundle are used and a WARNING is printed: that only shows the bundle
    /// is internally consistent. Exit 0 verified, 1 a check failed, 2 usage/I/O/parse error.
    Bundle(BundleArgs),
    /// Verify that a newer signed checkpoint extends an older one (RFC 9162 consistency proof).
    ///
    /// Both notes must carry a valid signature by a pinned ledger key and have the same origin.
    /// The proof file is either JSON `{"proof": ["<hash>", …]}` or one hash per line (blank
    /// lines and lines starting with `#` are ignored); each hash is standard base64 (44
    /// characters) or 64 hex digits. Exit 0 consistent, 1 a check failed, 2 usage/I/O/parse
    /// error.
    Consistency(ConsistencyArgs),
    /// Verify a signed checkpoint note and show its origin, size, root and cosignatures.
    ///
    /// Exit 0 verified, 1 a check failed, 2 usage/I/O/parse error.
    Checkpoint(CheckpointArgs),
    /// Verify a record's trail downloaded from the audit API (`GET
    /// /v1/audit/records/{id}/trail/bundle`, the trail itself, or an event page fetched with
    /// `proofs=true`): every event's proof bundle, and that each bundle proves the entry the
    /// event names (same index and kind).
    ///
    /// Pin the ledger key with --ledger-key as for `bundle`. Exit 0 every event verified, 1 a
    /// check failed, 2 usage/I/O/parse error.
    Trail(TrailArgs),
}

impl VerifyCommand {
    fn json(&self) -> bool {
        match self {
            Self::Bundle(a) => a.json,
            Self::Consistency(a) => a.json,
            Self::Checkpoint(a) => a.json,
            Self::Trail(a) => a.json,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// The proof bundle (JSON, format caretrail-proof-bundle/v1).
    #[arg(value_name = "BUNDLE.json")]
    pub bundle: PathBuf,
    /// Pinned ledger checkpoint key (vkey `<name>+<key id>+<base64>`); repeatable.
    #[arg(long = "ledger-key", value_name = "VKEY", value_parser = parse_vkey)]
    pub ledger_keys: Vec<VerifierKey>,
    /// Pinned witness cosigner key (vkey); repeatable. Their cosignatures must verify.
    #[arg(long = "witness-key", value_name = "VKEY", value_parser = parse_vkey)]
    pub witness_keys: Vec<VerifierKey>,
    /// Submitting institution's public key (SPKI PEM file); repeatable. When given, the
    /// entry's submitter signature must verify under one of them.
    #[arg(long = "submitter-key", value_name = "PUB.pem")]
    pub submitter_keys: Vec<PathBuf>,
    /// Valid cosignatures by pinned witnesses required.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub min_cosignatures: usize,
    /// Required checkpoint origin (e.g. caretrail.cn/<tenant id>).
    #[arg(long)]
    pub origin: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct TrailArgs {
    /// The trail (JSON with `events`, or an event page with `items`).
    #[arg(value_name = "TRAIL.json")]
    pub trail: PathBuf,
    /// Pinned ledger checkpoint key (vkey); repeatable.
    #[arg(long = "ledger-key", value_name = "VKEY", value_parser = parse_vkey)]
    pub ledger_keys: Vec<VerifierKey>,
    /// Pinned witness cosigner key (vkey); repeatable. Their cosignatures must verify.
    #[arg(long = "witness-key", value_name = "VKEY", value_parser = parse_vkey)]
    pub witness_keys: Vec<VerifierKey>,
    /// Valid cosignatures by pinned witnesses required on every event's checkpoint.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub min_cosignatures: usize,
    /// Required checkpoint origin.
    #[arg(long)]
    pub origin: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ConsistencyArgs {
    /// The older signed checkpoint note.
    #[arg(long, value_name = "NOTE")]
    pub old: PathBuf,
    /// The newer signed checkpoint note.
    #[arg(long, value_name = "NOTE")]
    pub new: PathBuf,
    /// The consistency proof: JSON {"proof": [...]} or one hash per line.
    #[arg(long, value_name = "FILE")]
    pub proof: PathBuf,
    /// Pinned ledger checkpoint key (vkey); repeatable, at least one.
    #[arg(long = "ledger-key", value_name = "VKEY", value_parser = parse_vkey, required = true)]
    pub ledger_keys: Vec<VerifierKey>,
    /// Hash suite of the log (default: the suite of the --ledger-key keys).
    #[arg(long, value_enum)]
    pub suite: Option<SuiteArg>,
    /// Required checkpoint origin.
    #[arg(long)]
    pub origin: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CheckpointArgs {
    /// The signed checkpoint note (may carry witness cosignature lines).
    #[arg(value_name = "NOTE")]
    pub note: PathBuf,
    /// Pinned ledger checkpoint key (vkey); repeatable, at least one.
    #[arg(long = "ledger-key", value_name = "VKEY", value_parser = parse_vkey, required = true)]
    pub ledger_keys: Vec<VerifierKey>,
    /// Pinned witness cosigner key (vkey); repeatable.
    #[arg(long = "witness-key", value_name = "VKEY", value_parser = parse_vkey)]
    pub witness_keys: Vec<VerifierKey>,
    /// Valid cosignatures by pinned witnesses required.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub min_cosignatures: usize,
    /// Hash suite of the log (default: the suite of the --ledger-key keys).
    #[arg(long, value_enum)]
    pub suite: Option<SuiteArg>,
    /// Required checkpoint origin.
    #[arg(long)]
    pub origin: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_vkey(s: &str) -> Result<VerifierKey, String> {
    VerifierKey::parse(s.trim()).map_err(|e| e.to_string())
}

pub fn run(cmd: VerifyCommand) -> ExitCode {
    let json = cmd.json();
    let report = match execute(cmd) {
        Ok(report) => report,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "caretrail verify: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = emit(&report, json) {
        let _ = writeln!(
            std::io::stderr(),
            "caretrail verify: writing the report: {e}"
        );
        return ExitCode::from(2);
    }
    let code = report.exit_code();
    if code == 2
        && let Some(error) = &report.error
    {
        let _ = writeln!(std::io::stderr(), "caretrail verify: {error}");
    }
    ExitCode::from(code)
}

fn execute(cmd: VerifyCommand) -> Result<Report, String> {
    match cmd {
        VerifyCommand::Bundle(args) => bundle(args),
        VerifyCommand::Consistency(args) => consistency(args),
        VerifyCommand::Checkpoint(args) => checkpoint(args),
        VerifyCommand::Trail(args) => trail(args),
    }
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Passed,
    Skipped,
    Failed,
    /// Not attempted because an earlier check failed.
    NotRun,
}

#[derive(Debug, Serialize)]
struct Line {
    /// Stable machine name (`inclusion_proof`).
    check: String,
    /// Human name (`inclusion proof`).
    title: String,
    status: Status,
    detail: String,
}

#[derive(Debug, Serialize)]
struct Report {
    /// `bundle`, `consistency` or `checkpoint`.
    command: &'static str,
    verified: bool,
    /// False when the keys came from the bundle itself rather than the command line.
    keys_pinned: bool,
    warnings: Vec<String>,
    checks: Vec<Line>,
    /// `key: value` lines printed after the checks (origin, size, root …).
    #[serde(skip)]
    info: Vec<(String, String)>,
    summary: String,
    /// The failed check's error, when one failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Whether that error is a verification failure (exit 1) rather than unparseable input
    /// (exit 2).
    #[serde(skip)]
    verification_failure: bool,
    /// What was verified (checkpoints, entry, signatures), for machines.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    details: serde_json::Value,
}

impl Report {
    fn exit_code(&self) -> u8 {
        match (self.verified, self.verification_failure) {
            (true, _) => 0,
            (false, true) => 1,
            (false, false) => 2,
        }
    }
}

/// Runs a planned sequence of checks, stopping at the first failure.
struct Run {
    planned: Vec<(String, String)>,
    lines: Vec<Line>,
    failure: Option<ProofError>,
}

impl Run {
    fn new(planned: &[(&str, &str)]) -> Self {
        Self {
            planned: planned
                .iter()
                .map(|(id, title)| ((*id).to_string(), (*title).to_string()))
                .collect(),
            lines: Vec::new(),
            failure: None,
        }
    }

    fn next_name(&self) -> (String, String) {
        self.planned
            .get(self.lines.len())
            .cloned()
            .unwrap_or_else(|| ("check".into(), "check".into()))
    }

    /// Run the next planned check; `None` once one has failed.
    fn check<T>(
        &mut self,
        f: impl FnOnce() -> Result<(T, Status, String), ProofError>,
    ) -> Option<T> {
        if self.failure.is_some() {
            return None;
        }
        let (check, title) = self.next_name();
        match f() {
            Ok((value, status, detail)) => {
                self.lines.push(Line {
                    check,
                    title,
                    status,
                    detail,
                });
                Some(value)
            }
            Err(e) => {
                self.lines.push(Line {
                    check,
                    title,
                    status: Status::Failed,
                    detail: e.to_string(),
                });
                self.failure = Some(e);
                None
            }
        }
    }

    /// The lines (checks not attempted marked as such) and the failure, if any.
    fn finish(mut self) -> (Vec<Line>, Option<ProofError>) {
        while self.lines.len() < self.planned.len() {
            let (check, title) = self.next_name();
            self.lines.push(not_run(check, title));
        }
        (self.lines, self.failure)
    }
}

fn not_run(check: String, title: String) -> Line {
    Line {
        check,
        title,
        status: Status::NotRun,
        detail: "not checked (an earlier check failed)".into(),
    }
}

fn emit(report: &Report, json: bool) -> std::io::Result<()> {
    if json {
        for w in &report.warnings {
            writeln!(std::io::stderr(), "{w}")?;
        }
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
        return out.flush();
    }
    let mut out = std::io::stdout().lock();
    for w in &report.warnings {
        writeln!(out, "{w}")?;
    }
    for line in &report.checks {
        let mark = match line.status {
            Status::Passed => "✓",
            Status::Failed => "✗",
            Status::Skipped | Status::NotRun => "-",
        };
        writeln!(out, "{mark} {}: {}", line.title, line.detail)?;
    }
    let width = report.info.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &report.info {
        writeln!(out, "  {:width$} {v}", format!("{k}:"), width = width + 1)?;
    }
    writeln!(out, "{}", report.summary)?;
    out.flush()
}

fn counts(lines: &[Line]) -> String {
    let passed = lines.iter().filter(|l| l.status == Status::Passed).count();
    let skipped = lines.iter().filter(|l| l.status == Status::Skipped).count();
    if skipped == 0 {
        format!("{passed} checks passed")
    } else {
        format!("{passed} checks passed, {skipped} skipped")
    }
}

fn failed_summary(lines: &[Line]) -> String {
    match lines.iter().find(|l| l.status == Status::Failed) {
        Some(l) => format!("NOT VERIFIED: {} failed", l.title),
        None => "NOT VERIFIED".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------

/// Read at most `limit` bytes of `path` (larger files are refused, never read whole).
fn read_limited(path: &Path, limit: usize, what: &str) -> Result<Vec<u8>, String> {
    let file = File::open(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let mut buf = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if buf.len() > limit {
        return Err(format!(
            "{what} {}: larger than {limit} bytes",
            path.display()
        ));
    }
    Ok(buf)
}

/// A checkpoint note file. A missing final newline (after the last signature line, which no
/// signature covers) is added back, since editors and `echo -n` drop it.
fn read_note(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let mut bytes = read_limited(path, MAX_NOTE_LEN, what)?;
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    Ok(bytes)
}

fn read_public_key(path: &Path) -> Result<VerifyingKey, String> {
    let bytes = read_limited(path, MAX_PEM_LEN, "submitter key")?;
    let pem = String::from_utf8(bytes)
        .map_err(|_| format!("submitter key {}: not a PEM text file", path.display()))?;
    parse_pem(&pem)
        .map(|k| k.verifying_key())
        .map_err(|e| format!("submitter key {}: {e}", path.display()))
}

/// The suite from `--suite`, else the one all pinned ledger keys belong to.
fn resolve_suite(arg: Option<SuiteArg>, keys: &[VerifierKey]) -> Result<Suite, String> {
    if let Some(s) = arg {
        return Ok(s.into());
    }
    let mut suites: Vec<Suite> = keys
        .iter()
        .map(|k| k.key_type().algorithm().suite())
        .collect();
    suites.sort();
    suites.dedup();
    match suites.as_slice() {
        [one] => Ok(*one),
        _ => Err("the --ledger-key keys belong to different suites: pass --suite".into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofFile {
    proof: Vec<String>,
}

/// A consistency proof: JSON `{"proof": [...]}` or one hash per line (blank lines and `#`
/// comments ignored); hashes in standard base64 or 64 hex digits.
fn parse_proof(text: &str, suite: Suite) -> Result<Vec<HashValue>, String> {
    let items: Vec<String> = if text.trim_start().starts_with('{') {
        serde_json::from_str::<ProofFile>(text)
            .map_err(|e| format!("not a {{\"proof\": [...]}} document: {e}"))?
            .proof
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    if items.len() > MAX_PROOF_HASHES {
        return Err(format!("more than {MAX_PROOF_HASHES} hashes"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, h)| parse_hash(suite, h.trim()).map_err(|e| format!("hash {}: {e}", i + 1)))
        .collect()
}

fn parse_hash(suite: Suite, s: &str) -> Result<HashValue, String> {
    let bytes = if s.len() == 2 * HASH_LEN && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..HASH_LEN)
            .map(|i| {
                s.get(2 * i..2 * i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| "not hex".to_string())
            })
            .collect::<Result<Vec<u8>, String>>()?
    } else {
        B64.decode(s)
            .map_err(|_| "neither standard base64 nor 64 hex digits".to_string())?
    };
    if bytes.len() != HASH_LEN {
        return Err(format!(
            "a hash is {HASH_LEN} bytes, this one has {}",
            bytes.len()
        ));
    }
    HashValue::from_slice(suite, &bytes).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers
// ---------------------------------------------------------------------------------------------

fn short(h: &HashValue) -> String {
    h.to_hex().chars().take(16).collect()
}

fn key_label(name: &str, key_id: u32) -> String {
    format!("{name}+{key_id:08x}")
}

fn signer_list(sigs: &[VerifiedSignature]) -> String {
    sigs.iter()
        .map(|s| key_label(&s.name, s.key_id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// POSIX seconds as RFC 3339 UTC, or the number when out of range.
fn when(ts: u64) -> String {
    i64::try_from(ts)
        .ok()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ts.to_string())
}

fn check_id(kind: CheckKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| kind.to_string())
}

fn check_origin(expected: Option<&String>, found: &Checkpoint) -> Result<(), ProofError> {
    match expected {
        Some(origin) if origin != found.origin() => Err(ProofError::OriginMismatch {
            expected: origin.clone(),
            found: found.origin().to_string(),
        }),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// verify bundle
// ---------------------------------------------------------------------------------------------

fn bundle(args: BundleArgs) -> Result<Report, String> {
    let path = args.bundle.display().to_string();
    let bytes = read_limited(&args.bundle, MAX_BUNDLE_LEN, "proof bundle")?;
    let bundle = ProofBundle::from_json(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let submitter_keys = args
        .submitter_keys
        .iter()
        .map(|p| read_public_key(p))
        .collect::<Result<Vec<_>, _>>()?;

    let mut warnings = Vec::new();
    let pinned = !args.ledger_keys.is_empty();
    let anchors = if pinned {
        TrustAnchors {
            ledger_keys: args.ledger_keys,
            witness_keys: args.witness_keys,
            min_cosignatures: args.min_cosignatures,
            submitter_keys,
            origin: args.origin,
        }
    } else {
        let mut anchors = TrustAnchors::from_bundle(&bundle)
            .map_err(|e| format!("{path}: the keys embedded in the bundle: {e}"))?;
        let mut from_bundle = vec!["ledger key"];
        if args.witness_keys.is_empty() {
            if !anchors.witness_keys.is_empty() {
                from_bundle.push("witness keys");
            }
        } else {
            anchors.witness_keys = args.witness_keys;
        }
        if submitter_keys.is_empty() {
            if !anchors.submitter_keys.is_empty() {
                from_bundle.push("submitter key");
            }
        } else {
            anchors.submitter_keys = submitter_keys;
        }
        anchors.min_cosignatures = args.min_cosignatures;
        anchors.origin = args.origin;
        let ledger = anchors
            .ledger_keys
            .iter()
            .map(|k| key_label(k.name(), k.key_id()))
            .collect::<Vec<_>>()
            .join(", ");
        warnings.push(format!(
            "WARNING: keys not pinned: no --ledger-key given, so the bundle's own {} (ledger \
             key {ledger}) are trusted. This only shows that the bundle is internally \
             consistent, not that your tenant's ledger signed it: pass --ledger-key with the \
             ledger key obtained out of band.",
            and_list(&from_bundle)
        ));
        anchors
    };

    let mut report = match verify_bundle(&bundle, &anchors) {
        Ok(verified) => verified_bundle(&verified),
        Err(failure) => failed_bundle(failure),
    };
    report.keys_pinned = pinned;
    report.warnings = warnings;
    if report.verified && !pinned {
        report
            .summary
            .push_str(" — against keys taken from the bundle itself, NOT pinned");
    }
    Ok(report)
}

fn result_line(c: &CheckResult) -> Line {
    Line {
        check: check_id(c.check),
        title: c.check.to_string(),
        status: match c.status {
            CheckStatus::Passed => Status::Passed,
            CheckStatus::Skipped => Status::Skipped,
        },
        detail: c.detail.clone(),
    }
}

fn verified_bundle(v: &VerifiedReport) -> Report {
    let checks: Vec<Line> = v.checks.iter().map(result_line).collect();
    let mut details = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
    if let Some(fields) = details.as_object_mut() {
        fields.remove("checks");
    }
    let summary = format!(
        "VERIFIED: entry #{} ({} by {}, tenant {}) is in checkpoint {} at size {} ({})",
        v.entry.index,
        v.entry.kind,
        v.entry.submitter,
        v.entry.tenant,
        v.checkpoint.origin(),
        v.checkpoint.size(),
        counts(&checks)
    );
    Report {
        command: "bundle",
        verified: true,
        keys_pinned: true,
        warnings: Vec::new(),
        checks,
        info: Vec::new(),
        summary,
        error: None,
        verification_failure: false,
        details,
    }
}

fn failed_bundle(failure: BundleFailure) -> Report {
    let mut checks: Vec<Line> = failure.passed.iter().map(result_line).collect();
    checks.push(Line {
        check: check_id(failure.check),
        title: failure.check.to_string(),
        status: Status::Failed,
        detail: failure.error.to_string(),
    });
    let after = CheckKind::ALL
        .iter()
        .skip_while(|k| **k != failure.check)
        .skip(1);
    checks.extend(after.map(|k| not_run(check_id(*k), k.to_string())));
    Report {
        command: "bundle",
        verified: false,
        keys_pinned: true,
        warnings: Vec::new(),
        summary: failed_summary(&checks),
        checks,
        info: Vec::new(),
        error: Some(failure.to_string()),
        verification_failure: failure.error.is_verification_failure(),
        details: serde_json::Value::Null,
    }
}

// ---------------------------------------------------------------------------------------------
// verify trail
// ---------------------------------------------------------------------------------------------

/// Largest trail file read (a trail of a few thousand events with their proofs).
const MAX_TRAIL_LEN: usize = 64 * 1024 * 1024;

fn trail(args: TrailArgs) -> Result<Report, String> {
    let path = args.trail.display().to_string();
    let bytes = read_limited(&args.trail, MAX_TRAIL_LEN, "trail")?;
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{path}: not JSON: {e}"))?;
    let events = doc
        .get("events")
        .or_else(|| doc.get("items"))
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| format!("{path}: no `events` (trail) or `items` (event page) array"))?;
    let pinned = !args.ledger_keys.is_empty();
    let mut checks = Vec::with_capacity(events.len());
    let mut failure = None;
    let mut first_origin: Option<String> = None;
    for (n, event) in events.iter().enumerate() {
        let kind = event["kind"].as_str().unwrap_or("?").to_string();
        let title = format!("{kind} at {}", event["at"].as_str().unwrap_or("?"));
        // Every event must be proven in the same log (one tenant's ledger).
        let outcome = trail_event(event, &args, pinned, doc["record"].as_str()).and_then(
            |(detail, origin)| match &first_origin {
                Some(first) if *first != origin => Err(format!(
                    "proven in log {origin}, but the trail's first event in {first}"
                )),
                _ => {
                    first_origin.get_or_insert(origin);
                    Ok(detail)
                }
            },
        );
        let line = match outcome {
            Ok(detail) => Line {
                check: format!("event-{}", n + 1),
                title,
                status: Status::Passed,
                detail,
            },
            Err(detail) => {
                failure.get_or_insert_with(|| format!("event {} ({kind}): {detail}", n + 1));
                Line {
                    check: format!("event-{}", n + 1),
                    title,
                    status: Status::Failed,
                    detail,
                }
            }
        };
        checks.push(line);
    }
    if events.is_empty() {
        failure = Some("the trail holds no events".into());
    }
    let verified = failure.is_none();
    let mut warnings = Vec::new();
    if !pinned {
        warnings.push(
            "WARNING: keys not pinned: no --ledger-key given, so each bundle's own keys are \
             trusted. This only shows that the trail is internally consistent, not that your \
             tenant's ledger signed it: pass --ledger-key with the ledger key obtained out of \
             band."
                .to_string(),
        );
    }
    let record = doc["record"].as_str().map(str::to_string);
    let summary = if verified {
        format!(
            "VERIFIED: {} event{}{} each proven in the ledger ({}){}",
            events.len(),
            if events.len() == 1 { "" } else { "s" },
            record
                .as_deref()
                .map(|r| format!(" of record {r}"))
                .unwrap_or_default(),
            counts(&checks),
            if pinned {
                ""
            } else {
                " — against keys taken from the bundles, NOT pinned"
            }
        )
    } else {
        failed_summary(&checks)
    };
    Ok(Report {
        command: "trail",
        verified,
        keys_pinned: pinned,
        warnings,
        checks,
        info: record
            .map(|r| vec![("record".to_string(), r)])
            .unwrap_or_default(),
        summary,
        error: failure,
        verification_failure: true,
        details: serde_json::Value::Null,
    })
}

/// Verifies one event's bundle and that it proves the entry the event names.
fn trail_event(
    event: &serde_json::Value,
    args: &TrailArgs,
    pinned: bool,
    trail_record: Option<&str>,
) -> Result<(String, String), String> {
    let proof = event
        .get("proof")
        .filter(|p| !p.is_null())
        .ok_or("no proof bundle (was the event anchored? fetch with proofs)")?;
    let bytes = serde_json::to_vec(proof).map_err(|e| e.to_string())?;
    let bundle = ProofBundle::from_json(&bytes).map_err(|e| format!("proof bundle: {e}"))?;
    let mut anchors = if pinned {
        TrustAnchors {
            ledger_keys: args.ledger_keys.clone(),
            ..TrustAnchors::default()
        }
    } else {
        TrustAnchors::from_bundle(&bundle).map_err(|e| format!("the bundle's keys: {e}"))?
    };
    if !args.witness_keys.is_empty() {
        anchors.witness_keys = args.witness_keys.clone();
    }
    anchors.min_cosignatures = args.min_cosignatures;
    anchors.origin = args.origin.clone();
    let verified = verify_bundle(&bundle, &anchors).map_err(|f| f.to_string())?;
    let index = event["ledger_index"].as_u64();
    if index != Some(verified.entry.index) {
        return Err(format!(
            "the event names ledger entry {index:?} but its bundle proves entry #{}",
            verified.entry.index
        ));
    }
    if event["kind"].as_str() != Some(verified.entry.kind.as_str()) {
        return Err(format!(
            "the event is {:?} but its ledger entry is {:?}",
            event["kind"], verified.entry.kind
        ));
    }
    if let Some(leaf) = event["leaf_hash"].as_str()
        && leaf != verified.leaf_hash.to_hex()
    {
        return Err("the event's leaf hash differs from the proven entry's".into());
    }
    // The ids the event shows must be the ones the signed entry states.
    let stated: serde_json::Value =
        serde_json::from_slice(&verified.entry.payload).unwrap_or(serde_json::Value::Null);
    for field in ["record", "grant", "patient", "referral"] {
        let shown = event[field].as_str();
        let signed = stated[field].as_str();
        if shown.is_some() && signed.is_some() && shown != signed {
            return Err(format!(
                "the event shows {field} {:?} but its signed entry states {:?}",
                shown.unwrap_or_default(),
                signed.unwrap_or_default()
            ));
        }
    }
    sealed_fields_match(event, &stated, bundle.suite)?;
    if let Some(record) = trail_record
        && event["record"].as_str().is_some_and(|r| r != record)
    {
        return Err(format!("the event belongs to another record than {record}"));
    }
    let detail = format!(
        "entry #{} by {} in checkpoint {} (size {}, {} cosignature{})",
        verified.entry.index,
        verified.entry.submitter,
        verified.checkpoint.origin(),
        verified.checkpoint.size(),
        verified.cosignatures.len(),
        if verified.cosignatures.len() == 1 {
            ""
        } else {
            "s"
        }
    );
    Ok((detail, verified.checkpoint.origin().to_string()))
}

/// What the event shows of an entry's sealed fields (category, purpose, scope…) must be what
/// the entry committed to: the event's opening must open the entry's seal, and every field
/// the event shows that the entry seals must equal the opened one. Entries of payload version 1 have no seal (their
/// fields are in clear and were compared above).
fn sealed_fields_match(
    event: &serde_json::Value,
    stated: &serde_json::Value,
    suite: caretrail_ledger_proofs::Suite,
) -> Result<(), String> {
    use caretrail_ledger_proofs::seal::SEALED_FIELD;
    if stated.get(SEALED_FIELD).is_none() {
        return Ok(());
    }
    let opening: caretrail_ledger_proofs::Opening = event
        .get("opening")
        .filter(|o| !o.is_null())
        .ok_or("the entry seals its fields but the event carries no opening")
        .and_then(|o| {
            serde_json::from_value(o.clone()).map_err(|_| "the event's opening is malformed")
        })?;
    opening
        .verify(suite, stated)
        .map_err(|e| format!("the event's opening: {e}"))?;
    let sealed = &opening.fields;
    let null = serde_json::Value::Null;
    let shown = [
        ("category", &event["category"]),
        ("purpose", &event["purpose"]),
        ("action", &event["action"]),
        ("decided_by", &event["decided_by"]),
        (
            "records",
            event.get("scope").map_or(&null, |s| &s["records"]),
        ),
        (
            "categories",
            event.get("scope").map_or(&null, |s| &s["categories"]),
        ),
        (
            "data_from",
            event.get("scope").map_or(&null, |s| &s["data_from"]),
        ),
        (
            "data_until",
            event.get("scope").map_or(&null, |s| &s["data_until"]),
        ),
        (
            "max_accesses",
            event.get("scope").map_or(&null, |s| &s["max_accesses"]),
        ),
    ];
    for (field, value) in shown {
        if value.is_null() {
            continue;
        }
        // A field the entry does not seal is another entry's statement (a read shows its
        // record's category, which the record's own `record.anchored` entry proves).
        if let Some(committed) = sealed.get(field)
            && committed != value
        {
            return Err(format!(
                "the event shows {field} {value} but its signed entry committed to {committed}"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// verify consistency
// ---------------------------------------------------------------------------------------------

/// Open a note with the pinned ledger keys: (checkpoint, detail line).
fn open_pinned(
    msg: &[u8],
    suite: Suite,
    ledger_keys: &[VerifierKey],
) -> Result<(Checkpoint, Status, String), ProofError> {
    let opened = Checkpoint::open(msg, suite, ledger_keys, &[])?;
    let cp = opened.checkpoint;
    let detail = format!(
        "checkpoint {} at size {} (root {}…) signed by {}",
        cp.origin(),
        cp.size(),
        short(cp.root()),
        signer_list(&opened.log_signatures)
    );
    Ok((cp, Status::Passed, detail))
}

fn consistency(args: ConsistencyArgs) -> Result<Report, String> {
    let suite = resolve_suite(args.suite, &args.ledger_keys)?;
    let old_note = read_note(&args.old, "old checkpoint")?;
    let new_note = read_note(&args.new, "new checkpoint")?;
    let proof_bytes = read_limited(&args.proof, MAX_PROOF_FILE_LEN, "consistency proof")?;
    let proof_text = String::from_utf8(proof_bytes)
        .map_err(|_| format!("consistency proof {}: not UTF-8 text", args.proof.display()))?;
    let proof = parse_proof(&proof_text, suite)
        .map_err(|e| format!("consistency proof {}: {e}", args.proof.display()))?;

    let mut run = Run::new(&[
        ("old_checkpoint_signature", "old checkpoint signature"),
        ("new_checkpoint_signature", "new checkpoint signature"),
        ("origin", "origin"),
        ("consistency_proof", "consistency proof"),
    ]);
    let keys = &args.ledger_keys;
    let old = run.check(|| open_pinned(&old_note, suite, keys));
    let new = run.check(|| open_pinned(&new_note, suite, keys));
    let mut info = Vec::new();
    if let (Some(old), Some(new)) = (&old, &new) {
        let origin_ok = run.check(|| {
            if old.origin() != new.origin() {
                return Err(ProofError::OriginMismatch {
                    expected: old.origin().to_string(),
                    found: new.origin().to_string(),
                });
            }
            check_origin(args.origin.as_ref(), new)?;
            Ok(((), Status::Passed, format!("both are {}", new.origin())))
        });
        if origin_ok.is_some() {
            run.check(|| {
                verify_consistency(old.size(), new.size(), old.root(), new.root(), &proof)?;
                let detail = format!(
                    "the tree of size {} extends the tree of size {} ({} proof hashes)",
                    new.size(),
                    old.size(),
                    proof.len()
                );
                Ok(((), Status::Passed, detail))
            });
        }
        info = vec![
            ("origin".to_string(), new.origin().to_string()),
            (
                "old".to_string(),
                format!("size {} root {}", old.size(), old.root().to_hex()),
            ),
            (
                "new".to_string(),
                format!("size {} root {}", new.size(), new.root().to_hex()),
            ),
        ];
    }
    let (checks, failure) = run.finish();
    let verified = failure.is_none();
    let summary = match (&old, &new) {
        (Some(old), Some(new)) if verified => format!(
            "CONSISTENT: checkpoint {} at size {} extends size {} ({})",
            new.origin(),
            new.size(),
            old.size(),
            counts(&checks)
        ),
        _ => failed_summary(&checks),
    };
    let details = match (&old, &new) {
        (Some(old), Some(new)) => serde_json::json!({ "old": old, "new": new }),
        _ => serde_json::Value::Null,
    };
    Ok(Report {
        command: "consistency",
        verified,
        keys_pinned: true,
        warnings: Vec::new(),
        checks,
        info,
        summary,
        verification_failure: failure
            .as_ref()
            .is_some_and(ProofError::is_verification_failure),
        error: failure.map(|e| e.to_string()),
        details,
    })
}

// ---------------------------------------------------------------------------------------------
// verify checkpoint
// ---------------------------------------------------------------------------------------------

fn checkpoint(args: CheckpointArgs) -> Result<Report, String> {
    let suite = resolve_suite(args.suite, &args.ledger_keys)?;
    let msg = read_note(&args.note, "checkpoint")?;

    let mut run = Run::new(&[
        ("checkpoint_signature", "ledger checkpoint signature"),
        ("origin", "origin"),
        ("cosignatures", "witness cosignatures"),
    ]);
    let opened = run.check(|| {
        let note = Note::parse(&msg)?;
        let opened = Checkpoint::open_note(note, suite, &args.ledger_keys, &[])?;
        let detail = format!("signed by {}", signer_list(&opened.log_signatures));
        Ok((opened, Status::Passed, detail))
    });
    let mut cosignatures = Vec::new();
    if let Some(opened) = &opened {
        let cp = &opened.checkpoint;
        run.check(|| match &args.origin {
            Some(_) => {
                check_origin(args.origin.as_ref(), cp)?;
                Ok(((), Status::Passed, format!("{} as required", cp.origin())))
            }
            None => Ok((
                (),
                Status::Skipped,
                format!("{} (no --origin to compare with)", cp.origin()),
            )),
        });
        let verified = opened.note.verify_known(&args.witness_keys);
        if let Ok(cosigs) = &verified {
            cosignatures.clone_from(cosigs);
        }
        run.check(|| {
            let cosigs = verified?;
            if cosigs.len() < args.min_cosignatures {
                return Err(ProofError::CosignatureQuorum {
                    found: cosigs.len(),
                    required: args.min_cosignatures,
                });
            }
            if args.witness_keys.is_empty() {
                return Ok(((), Status::Skipped, "no witness key supplied".into()));
            }
            let mut parts: Vec<String> = cosigs
                .iter()
                .map(|c| match c.timestamp {
                    Some(t) => format!("{} at {}", key_label(&c.name, c.key_id), when(t)),
                    None => key_label(&c.name, c.key_id),
                })
                .collect();
            let missing: Vec<String> = args
                .witness_keys
                .iter()
                .filter(|k| {
                    !cosigs
                        .iter()
                        .any(|c| c.name == k.name() && c.key_id == k.key_id())
                })
                .map(|k| key_label(k.name(), k.key_id()))
                .collect();
            if !missing.is_empty() {
                parts.push(format!("none by {}", missing.join(", ")));
            }
            let detail = format!(
                "{} of {} witnesses cosigned: {}",
                cosigs.len(),
                args.witness_keys.len(),
                parts.join("; ")
            );
            Ok(((), Status::Passed, detail))
        });
    }
    let (checks, failure) = run.finish();
    let verified = failure.is_none();
    let mut info = Vec::new();
    let mut details = serde_json::Value::Null;
    if let Some(opened) = &opened {
        let cp = &opened.checkpoint;
        info.push(("origin".to_string(), cp.origin().to_string()));
        info.push(("size".to_string(), cp.size().to_string()));
        info.push((
            "root".to_string(),
            format!("{} ({})", cp.root().to_hex(), suite.hash_name()),
        ));
        for c in &cosignatures {
            info.push((
                "cosigned".to_string(),
                match c.timestamp {
                    Some(t) => format!("{} at {}", key_label(&c.name, c.key_id), when(t)),
                    None => key_label(&c.name, c.key_id),
                },
            ));
        }
        let ignored: Vec<String> = opened
            .note
            .signatures()
            .iter()
            .filter(|s| {
                !args
                    .ledger_keys
                    .iter()
                    .chain(args.witness_keys.iter())
                    .any(|k| k.name() == s.name && k.key_id() == s.key_id)
            })
            .map(|s| key_label(&s.name, s.key_id))
            .collect();
        if !ignored.is_empty() {
            info.push((
                "ignored".to_string(),
                format!("{} (no pinned key)", ignored.join(", ")),
            ));
        }
        details = serde_json::json!({
            "checkpoint": cp,
            "log_signatures": opened.log_signatures,
            "cosignatures": cosignatures,
            "ignored_signature_lines": ignored,
        });
    }
    let summary = match &opened {
        Some(opened) if verified => format!(
            "VERIFIED: checkpoint {} at size {}, signed by a pinned ledger key, {} verified \
             cosignature(s) ({})",
            opened.checkpoint.origin(),
            opened.checkpoint.size(),
            cosignatures.len(),
            counts(&checks)
        ),
        _ => failed_summary(&checks),
    };
    Ok(Report {
        command: "checkpoint",
        verified,
        keys_pinned: true,
        warnings: Vec::new(),
        checks,
        info,
        summary,
        verification_failure: failure
            .as_ref()
            .is_some_and(ProofError::is_verification_failure),
        error: failure.map(|e| e.to_string()),
        details,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn proof_files_in_both_notations() {
        let h = HashValue::from_slice(Suite::Intl, &[7u8; HASH_LEN]).unwrap();
        let b64 = B64.encode(h.as_bytes());
        let from_lines = parse_proof(&format!("# proof\n{b64}\n\n{}\n", h.to_hex()), Suite::Intl);
        assert_eq!(from_lines.unwrap(), vec![h, h]);
        let from_json = parse_proof(&format!("{{\"proof\": [\"{b64}\"]}}"), Suite::Intl);
        assert_eq!(from_json.unwrap(), vec![h]);
        assert_eq!(parse_proof("", Suite::Gm).unwrap(), vec![]);
        assert!(parse_proof("AAAA\n", Suite::Intl).is_err());
        assert!(parse_proof("{\"hashes\": []}", Suite::Intl).is_err());
    }
}
