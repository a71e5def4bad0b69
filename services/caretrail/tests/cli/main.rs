//! The `caretrail` binary as users run it: the all-in-one server on the embedded defaults,
//! the OpenAPI export, and the partner developers' crypto commands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

mod matrix;

const BIN: &str = env!("CARGO_BIN_EXE_caretrail");

fn run(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn crypto_cli_round_trips_and_refuses_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("report.pdf"), b"%PDF-1.7 exam report of patient 42").unwrap();
    for suite in ["gm", "intl"] {
        let key = format!("{suite}.pem");
        let (code, _, err) = run(&["crypto", "keygen", "--suite", suite, "--out", &key], d);
        assert_eq!(code, 0, "{err}");
        assert!(d.join(format!("{suite}.pub.pem")).exists());
        let (code, sig, err) = run(&["crypto", "sign", "--key", &key, "report.pdf"], d);
        assert_eq!(code, 0, "{err}");
        let sig = sig.trim().to_string();
        let pubkey = format!("{suite}.pub.pem");
        let (code, _, _) = run(
            &[
                "crypto",
                "verify",
                "--pub",
                &pubkey,
                "--sig",
                &sig,
                "report.pdf",
            ],
            d,
        );
        assert_eq!(code, 0, "valid signature verifies");
        std::fs::write(d.join("altered.pdf"), b"%PDF-1.7 exam report of patient 43").unwrap();
        let (code, _, _) = run(
            &[
                "crypto",
                "verify",
                "--pub",
                &pubkey,
                "--sig",
                &sig,
                "altered.pdf",
            ],
            d,
        );
        assert_eq!(code, 1, "altered file fails verification");

        let key_hex = if suite == "gm" {
            "00112233445566778899aabbccddeeff"
        } else {
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
        };
        let (code, _, err) = run(
            &[
                "crypto",
                "encrypt",
                "--suite",
                suite,
                "--key-hex",
                key_hex,
                "--in",
                "report.pdf",
                "--out",
                "report.enc",
            ],
            d,
        );
        assert_eq!(code, 0, "{err}");
        let sealed = std::fs::read(d.join("report.enc")).unwrap();
        assert!(
            !sealed.windows(7).any(|w| w == b"patient"),
            "no plaintext in the ciphertext"
        );
        let (code, _, err) = run(
            &[
                "crypto",
                "decrypt",
                "--suite",
                suite,
                "--key-hex",
                key_hex,
                "--in",
                "report.enc",
                "--out",
                "back.pdf",
            ],
            d,
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            std::fs::read(d.join("back.pdf")).unwrap(),
            std::fs::read(d.join("report.pdf")).unwrap()
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        std::fs::write(d.join("tampered.enc"), tampered).unwrap();
        let (code, _, err) = run(
            &[
                "crypto",
                "decrypt",
                "--suite",
                suite,
                "--key-hex",
                key_hex,
                "--in",
                "tampered.enc",
                "--out",
                "x.pdf",
            ],
            d,
        );
        assert_ne!(code, 0);
        assert!(
            !d.join("x.pdf").exists(),
            "no partial plaintext left behind"
        );
        assert_eq!(err.lines().count(), 1, "one-line error: {err}");
    }
    let (code, _, err) = run(&["crypto", "sign", "--key", "missing.pem", "report.pdf"], d);
    assert_eq!(code, 2);
    assert!(
        err.contains("missing.pem") && !err.contains("panicked"),
        "{err}"
    );
    std::fs::write(
        d.join("bad.pem"),
        "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let (code, _, err) = run(&["crypto", "sign", "--key", "bad.pem", "report.pdf"], d);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn openapi_export_is_the_committed_document() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(&["openapi"], dir.path());
    assert_eq!(code, 0, "{err}");
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../openapi/caretrail.json"
    ))
    .unwrap();
    assert!(
        out.trim_end() == committed.trim_end(),
        "openapi/caretrail.json is stale: run `make openapi` and commit the result"
    );
}

struct Server {
    child: std::process::Child,
    base: String,
}

async fn start(data: &Path, seed: bool) -> Server {
    start_with_env(data, seed, &[]).await
}

async fn start_with_env(data: &Path, seed: bool, env: &[(&str, String)]) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve");
    if seed {
        cmd.arg("--seed-demo");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .env("CARETRAIL_HTTP_PORT", "0")
        .env("CARETRAIL_DATA_DIR", data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let api_line = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let found = lines.by_ref().find(|l| l.trim_start().starts_with("API"));
        // Keep draining so the server never writes to a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        found
    })
    .await
    .unwrap()
    .expect("the server prints where the API is");
    let base = api_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches("/v1/")
        .to_string();
    Server { child, base }
}

impl Server {
    async fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || self.child.wait()),
        )
        .await
        .expect("stops within 30 s of SIGTERM")
        .unwrap()
        .unwrap();
        assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    }
}

async fn demo_token(base: &str, creds: &serde_json::Value) -> reqwest::Response {
    let app = &creds["tenants"][0]["institutions"][0]["app"];
    client_credentials(&reqwest::Client::new(), base, app).await
}

/// `POST /v1/oauth/token` with an app's client credentials (`client_id`, `client_secret`).
async fn client_credentials(
    http: &reqwest::Client,
    base: &str,
    app: &serde_json::Value,
) -> reqwest::Response {
    http.post(format!("{base}/v1/oauth/token"))
        .basic_auth(
            app["client_id"].as_str().unwrap(),
            app["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn serve_seeds_the_demo_serves_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, true).await;
    let base = server.base.clone();
    let ready: serde_json::Value = reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    let doc: serde_json::Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        reqwest::get(format!("{base}/docs/"))
            .await
            .unwrap()
            .status(),
        200
    );
    for db in [
        "identity.db",
        "consent.db",
        "ledger.db",
        "object_store.db",
        "audit.db",
        "master.key",
    ] {
        assert!(data.join(db).exists(), "{db}");
    }
    // The demo seed: the pilot's institutions with working credentials.
    let creds_path = data.join("dev-credentials.json");
    let creds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&creds_path).unwrap()).unwrap();
    let names: Vec<&str> = creds["tenants"][0]["institutions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["level"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["primary", "tertiary", "regulator"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&creds_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let resp = demo_token(&base, &creds).await;
    assert_eq!(resp.status(), 200);
    let token: serde_json::Value = resp.json().await.unwrap();
    let tenant = creds["tenants"][0]["id"].as_str().unwrap();
    let resp = reqwest::Client::new()
        .get(format!("{base}/v1/tenants/{tenant}"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let t: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(t["suite"], "gm");
    // One user per role: the health centre's physician logs in.
    let physician = &creds["tenants"][0]["institutions"][0]["users"][0];
    assert_eq!(physician["roles"][0], "physician");
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/auth/login"))
        .json(&serde_json::json!({
            "tenant_id": tenant,
            "username": physician["username"],
            "password": physician["password"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Identity registered the tenant and every institution key on the ledger (signed by the
    // tenant CA as registrar); the ledger serves them through the gateway.
    let institutions = creds["tenants"][0]["institutions"]
        .as_array()
        .unwrap()
        .len();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let keys = loop {
        let resp = reqwest::Client::new()
            .get(format!("{base}/v1/ledger/keys"))
            .bearer_auth(token["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if status == 200 && body["institution_keys"].as_array().map_or(0, Vec::len) >= institutions
        {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "institution keys not on the ledger: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(keys["suite"], "gm");
    assert!(
        keys["ledger_key"]
            .as_str()
            .unwrap()
            .starts_with(&format!("caretrail.local/{tenant}+")),
        "{keys}"
    );
    let resp = reqwest::Client::new()
        .get(format!("{base}/v1/ledger/checkpoint"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let checkpoint: serde_json::Value = resp.json().await.unwrap();
    assert!(checkpoint["tree_size"].as_u64().unwrap() >= institutions as u64);

    // A record through the gateway: encrypted under the data directory, anchored, and its
    // receipt verifies with `caretrail verify bundle` against the pinned keys.
    let bearer = token["access_token"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let patient: serde_json::Value = http
        .post(format!("{base}/v1/patients"))
        .bearer_auth(&bearer)
        .json(&serde_json::json!({"identifier": "320402198001011234"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let report = b"%PDF-1.7 Benniu exam report: blood pressure 120/80".to_vec();
    let resp = http
        .post(format!("{base}/v1/records"))
        .bearer_auth(&bearer)
        .header("content-type", "application/pdf")
        .header(
            "caretrail-metadata",
            serde_json::json!({"patient": patient["id"], "category": "exam_report",
                "title": "exam report", "encounter_date": "2026-11-01"})
            .to_string(),
        )
        .body(report.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let upload: serde_json::Value = resp.json().await.unwrap();
    let record = upload["record"]["id"].as_str().unwrap().to_string();
    std::fs::write(
        dir.path().join("receipt.json"),
        upload["receipt"]["bundle"].to_string(),
    )
    .unwrap();
    let key_pem = keys["institution_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["institution"] == creds["tenants"][0]["institutions"][0]["id"])
        .unwrap()["public_key_pem"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(dir.path().join("benniu.pem"), key_pem).unwrap();
    let ledger_key = keys["ledger_key"].as_str().unwrap().to_string();
    let (code, out, err) = run(
        &[
            "verify",
            "bundle",
            "receipt.json",
            "--ledger-key",
            &ledger_key,
            "--submitter-key",
            "benniu.pem",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("VERIFIED") && out.contains("record.anchored"),
        "{out}"
    );
    let objects = data.join("objects").join(tenant);
    assert_eq!(
        std::fs::read_dir(&objects).unwrap().count(),
        1,
        "one object"
    );
    server.stop().await;

    // Restart: same data, no second seed, the credentials still work, the record reads back.
    let before = std::fs::read(&creds_path).unwrap();
    let server = start(&data, true).await;
    assert_eq!(std::fs::read(&creds_path).unwrap(), before, "seeded once");
    let resp = demo_token(&server.base, &creds).await;
    assert_eq!(resp.status(), 200);
    let token: serde_json::Value = resp.json().await.unwrap();
    let resp = http
        .get(format!("{}/v1/records/{record}/content", server.base))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), report.as_slice());
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// caretrail verify: fixtures built with caretrail-ledger-proofs, checked by the binary.
// ---------------------------------------------------------------------------------------------

mod verify {
    use std::path::Path;

    use caretrail_crypto::SigningKey;
    use caretrail_ledger_proofs::{
        BundleKeys, Checkpoint, Cosigner, Entry, MemoryTree, NoteSigner, ProofBundle, Submission,
        Suite, canonical_json,
    };
    use serde_json::json;

    use super::run;

    const ORIGIN: &str = "caretrail.cn/tenant-t1";
    const COSIGNED_AT: u64 = 1_700_000_500;

    pub struct Ledger {
        pub suite: Suite,
        pub institution: SigningKey,
        pub ledger: NoteSigner,
        pub witness: Cosigner,
        pub tree: MemoryTree,
        pub entries: Vec<Entry>,
    }

    impl Ledger {
        /// A log of `n` entries (records `r0`, `r1`, …) signed by a fresh institution key.
        pub fn new(suite: Suite, n: u64) -> Self {
            let ledger =
                NoteSigner::new(ORIGIN, SigningKey::generate_for_suite(suite).unwrap()).unwrap();
            let witness = Cosigner::new(
                "regulator.example/w1",
                SigningKey::generate_for_suite(suite).unwrap(),
            )
            .unwrap();
            let mut l = Self {
                suite,
                institution: SigningKey::generate_for_suite(suite).unwrap(),
                ledger,
                witness,
                tree: MemoryTree::new(suite),
                entries: Vec::new(),
            };
            for i in 0..n {
                l.append(&format!("r{i}"));
            }
            l
        }

        pub fn append(&mut self, record: &str) {
            let sub = Submission {
                tenant: "tenant-t1".into(),
                kind: "record.anchored".into(),
                submitter: "benniu-health-centre".into(),
                request_id: format!("req-{}", self.entries.len()),
                key_id: self.institution.key_id().to_hex(),
                payload: canonical_json(&json!({ "record": record })).unwrap(),
            };
            let sig = sub.sign(&self.institution).unwrap();
            let entry = sub.into_entry(self.tree.size(), 1_700_000_000_000, sig);
            self.tree
                .append(entry.leaf_hash(self.suite).unwrap())
                .unwrap();
            self.entries.push(entry);
        }

        pub fn checkpoint(&self, size: u64) -> Checkpoint {
            Checkpoint::new(ORIGIN, size, self.tree.root_at(size).unwrap()).unwrap()
        }

        /// Checkpoint note at `size` signed by `signer` and cosigned by the witness.
        pub fn note_by(&self, size: u64, signer: &NoteSigner) -> String {
            let cp = self.checkpoint(size);
            let mut note = cp.sign(signer).unwrap();
            let cosig = self.witness.cosign(&cp, COSIGNED_AT).unwrap();
            note.add_signature(cosig.to_note_signature()).unwrap();
            note.encode()
        }

        pub fn note(&self, size: u64) -> String {
            self.note_by(size, &self.ledger)
        }

        pub fn bundle(&self, index: u64, size: u64) -> ProofBundle {
            let keys = BundleKeys::new(
                &self.ledger.verifier_key(),
                &[self.witness.verifier_key()],
                Some(self.institution.verifying_key()),
            );
            ProofBundle::new(
                self.suite,
                &self.entries[index as usize],
                size,
                &self.tree.inclusion_proof(index, size).unwrap(),
                &self.note(size),
                keys,
            )
            .unwrap()
        }

        pub fn ledger_vkey(&self) -> String {
            self.ledger.verifier_key().to_vkey()
        }

        pub fn witness_vkey(&self) -> String {
            self.witness.verifier_key().to_vkey()
        }
    }

    pub fn write_bundle(d: &Path, name: &str, bundle: &ProofBundle) -> String {
        std::fs::write(d.join(name), bundle.to_json_pretty().unwrap()).unwrap();
        name.to_string()
    }

    pub fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    pub fn suite_name(suite: Suite) -> &'static str {
        match suite {
            Suite::Intl => "intl",
            Suite::Gm => "gm",
        }
    }

    /// Runs `caretrail verify …` and checks exit code 1 with a ✗ line for `check`.
    pub fn assert_fails(args: &[&str], d: &Path, check: &str, what: &str) {
        let (code, out, err) = run(args, d);
        assert_eq!(code, 1, "{what}: expected exit 1\n{out}\n{err}");
        assert!(
            out.lines().any(|l| l.starts_with(&format!("✗ {check}:"))),
            "{what}: expected a ✗ line for {check}\n{out}"
        );
        assert_eq!(
            out.lines().filter(|l| l.starts_with('✗')).count(),
            1,
            "{what}: one failed check\n{out}"
        );
        assert!(
            out.lines()
                .last()
                .is_some_and(|l| l.starts_with("NOT VERIFIED")),
            "{what}: summary line\n{out}"
        );
        assert!(!err.contains("panicked"), "{what}: {err}");
    }
}

#[test]
fn verify_bundle_passes_with_pinned_keys_and_names_each_tampering() {
    use caretrail_ledger_proofs::{Entry, NoteSigner, ProofBundle, Suite, canonical_json};
    use verify::{Ledger, args, assert_fails, write_bundle};

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for suite in Suite::ALL {
        let fx = Ledger::new(suite, 7);
        let (lk, wk) = (fx.ledger_vkey(), fx.witness_vkey());
        std::fs::write(
            d.join("inst.pub.pem"),
            fx.institution.verifying_key().to_spki_pem(),
        )
        .unwrap();
        let good = fx.bundle(3, 7);
        let good_file = write_bundle(d, "good.json", &good);
        let pinned = |file: &str| -> Vec<String> {
            [
                "verify",
                "bundle",
                file,
                "--ledger-key",
                lk.as_str(),
                "--witness-key",
                wk.as_str(),
                "--submitter-key",
                "inst.pub.pem",
                "--min-cosignatures",
                "1",
            ]
            .map(str::to_string)
            .to_vec()
        };

        // The good bundle, pinned keys: every check passes.
        let (code, out, err) = run(&args(&pinned(&good_file)), d);
        assert_eq!(code, 0, "{suite}: {out}\n{err}");
        for check in [
            "bundle format",
            "entry encoding",
            "submitter signature",
            "ledger checkpoint signature",
            "inclusion proof",
            "witness cosignatures",
        ] {
            assert!(
                out.lines().any(|l| l.starts_with(&format!("✓ {check}: "))),
                "{suite}: ✓ {check}\n{out}"
            );
        }
        assert!(
            out.contains("- consistency with earlier checkpoint:"),
            "{out}"
        );
        assert!(!out.contains('✗') && !out.contains("WARNING"), "{out}");
        assert!(
            out.lines()
                .last()
                .unwrap()
                .starts_with("VERIFIED: entry #3"),
            "{out}"
        );

        // JSON report.
        let mut json_args = pinned(&good_file);
        json_args.push("--json".into());
        let (code, out, err) = run(&args(&json_args), d);
        assert_eq!(code, 0, "{err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["verified"], true);
        assert_eq!(report["keys_pinned"], true);
        assert_eq!(report["checks"].as_array().unwrap().len(), 7);
        assert_eq!(report["checks"][4]["check"], "inclusion_proof");
        assert_eq!(report["checks"][4]["status"], "passed");
        assert_eq!(report["details"]["entry"]["index"], 3);

        // With a consistency proof from an earlier checkpoint.
        let with_cons = fx
            .bundle(3, 7)
            .with_consistency(&fx.note(5), &fx.tree.consistency_proof(5, 7).unwrap());
        let f = write_bundle(d, "cons.json", &with_cons);
        let (code, out, _) = run(&args(&pinned(&f)), d);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("✓ consistency with earlier checkpoint: "),
            "{out}"
        );

        // No pinned ledger key: falls back to the bundle's keys, loudly.
        let (code, out, err) = run(&["verify", "bundle", &good_file], d);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.lines().next().unwrap().starts_with("WARNING"), "{out}");
        assert!(out.contains("NOT pinned"), "{out}");
        let (code, out, err) = run(&["verify", "bundle", &good_file, "--json"], d);
        assert_eq!(code, 0);
        assert!(err.contains("WARNING"), "{err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["keys_pinned"], false);
        assert_eq!(report["warnings"].as_array().unwrap().len(), 1);

        // Each tampering fails with exit 1 and names the failed check.
        let tampered = |name: &str, f: &dyn Fn(&mut ProofBundle)| -> String {
            let mut b = good.clone();
            f(&mut b);
            write_bundle(d, &format!("{name}.json"), &b)
        };
        let forge_payload = |b: &mut ProofBundle| {
            let mut e = Entry::decode(&b.entry).unwrap();
            e.payload = canonical_json(&serde_json::json!({ "record": "r-forged" })).unwrap();
            b.entry = e.encode().unwrap();
        };
        let f = tampered("payload", &forge_payload);
        assert_fails(
            &args(&pinned(&f)),
            d,
            "submitter signature",
            "altered payload",
        );
        // Without the institution key, the altered leaf no longer matches the signed root.
        let (code, out, _) = run(&["verify", "bundle", &f, "--ledger-key", &lk], d);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("✗ inclusion proof: root mismatch"), "{out}");

        let f = tampered("proof-hash", &|b| {
            let h = &mut b.inclusion.hashes[0];
            let flipped = if h.starts_with('0') { "1" } else { "0" };
            h.replace_range(0..1, flipped);
        });
        assert_fails(
            &args(&pinned(&f)),
            d,
            "inclusion proof",
            "altered proof hash",
        );

        let f = tampered("index", &|b| b.inclusion.leaf_index = 2);
        assert_fails(
            &args(&pinned(&f)),
            d,
            "inclusion proof",
            "wrong proof index",
        );
        // The entry re-labelled with another index (index is not submitter-signed).
        let f = tampered("entry-index", &|b| {
            let mut e = Entry::decode(&b.entry).unwrap();
            e.index = 2;
            b.entry = e.encode().unwrap();
            b.inclusion.leaf_index = 2;
        });
        assert_fails(
            &args(&pinned(&f)),
            d,
            "inclusion proof",
            "wrong entry index",
        );

        let other = NoteSigner::new(
            "caretrail.cn/tenant-t1",
            caretrail_crypto::SigningKey::generate_for_suite(suite).unwrap(),
        )
        .unwrap();
        let f = tampered("other-ledger", &|b| b.checkpoint = fx.note_by(7, &other));
        assert_fails(
            &args(&pinned(&f)),
            d,
            "ledger checkpoint signature",
            "checkpoint signed by another ledger key",
        );

        let f = tampered("proof-size", &|b| b.inclusion.tree_size = 8);
        assert_fails(
            &args(&pinned(&f)),
            d,
            "inclusion proof",
            "tampered proof tree size",
        );
        let f = tampered("note-size", &|b| {
            b.checkpoint = b.checkpoint.replacen("\n7\n", "\n8\n", 1);
            b.inclusion.tree_size = 8;
        });
        assert_fails(
            &args(&pinned(&f)),
            d,
            "ledger checkpoint signature",
            "tampered checkpoint tree size",
        );

        let f = tampered("no-cosig", &|b| {
            b.checkpoint = fx.checkpoint(7).sign(&fx.ledger).unwrap().encode();
        });
        assert_fails(
            &args(&pinned(&f)),
            d,
            "witness cosignatures",
            "missing cosignature with --min-cosignatures 1",
        );
        // A bundle field that cannot be parsed: the ✗ line says which, exit 2.
        let f = tampered("garbled", &|b| b.inclusion.hashes[0] = "zz".into());
        let (code, out, err) = run(&args(&pinned(&f)), d);
        assert_eq!(code, 2, "{out}\n{err}");
        assert!(
            out.contains("✗ inclusion proof: malformed proof hash"),
            "{out}"
        );
        assert!(err.contains("malformed proof hash"), "{err}");
    }

    // Usage, I/O and parse errors: exit 2, a message on stderr, no panic.
    std::fs::write(d.join("garbage.json"), "{ not json").unwrap();
    for bad in [
        vec!["verify", "bundle", "garbage.json"],
        vec!["verify", "bundle", "missing.json"],
        vec![
            "verify",
            "bundle",
            "good.json",
            "--ledger-key",
            "not-a-vkey",
        ],
        vec![
            "verify",
            "bundle",
            "good.json",
            "--submitter-key",
            "nope.pem",
        ],
        vec!["verify", "bundle"],
    ] {
        let (code, _, err) = run(&bad, d);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(!err.trim().is_empty() && !err.contains("panicked"), "{err}");
    }
}

#[test]
fn verify_consistency_and_checkpoint_in_both_suites() {
    use caretrail_ledger_proofs::{NoteSigner, Suite};
    use verify::{Ledger, args, assert_fails, suite_name};

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for suite in Suite::ALL {
        let fx = Ledger::new(suite, 7);
        let lk = fx.ledger_vkey();
        let wk = fx.witness_vkey();
        let sn = suite_name(suite);
        let b64 = |h: &caretrail_ledger_proofs::HashValue| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(h.as_bytes())
        };
        std::fs::write(d.join("old.note"), fx.note(3)).unwrap();
        std::fs::write(d.join("new.note"), fx.note(7)).unwrap();
        let proof = fx.tree.consistency_proof(3, 7).unwrap();
        let as_json = serde_json::json!({ "proof": proof.iter().map(b64).collect::<Vec<_>>() });
        std::fs::write(d.join("proof.json"), as_json.to_string()).unwrap();
        let as_lines: String = proof.iter().map(|h| format!("{}\n", b64(h))).collect();
        std::fs::write(d.join("proof.txt"), as_lines).unwrap();

        let cons = |old: &str, new: &str, proof: &str, key: &str| -> Vec<String> {
            [
                "verify",
                "consistency",
                "--old",
                old,
                "--new",
                new,
                "--proof",
                proof,
                "--ledger-key",
                key,
                "--suite",
                sn,
            ]
            .map(str::to_string)
            .to_vec()
        };

        for proof_file in ["proof.json", "proof.txt"] {
            let (code, out, err) = run(&args(&cons("old.note", "new.note", proof_file, &lk)), d);
            assert_eq!(code, 0, "{suite} {proof_file}: {out}\n{err}");
            for check in [
                "old checkpoint signature",
                "new checkpoint signature",
                "origin",
                "consistency proof",
            ] {
                assert!(
                    out.lines().any(|l| l.starts_with(&format!("✓ {check}: "))),
                    "{out}"
                );
            }
            assert!(
                out.lines().last().unwrap().starts_with("CONSISTENT"),
                "{out}"
            );
        }
        // The suite is inferred from the ledger key when --suite is omitted; JSON output.
        let mut v = cons("old.note", "new.note", "proof.json", &lk);
        v.truncate(v.len() - 2);
        v.push("--json".into());
        let (code, out, err) = run(&args(&v), d);
        assert_eq!(code, 0, "{err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["verified"], true);
        assert_eq!(report["details"]["new"]["size"], 7);

        // A forked history: entry 1 differs, so no proof links the real size-3 checkpoint to
        // the fork's size-7 root, which the (equivocating) ledger key signed.
        let mut fork = Ledger::new(suite, 0);
        fork.ledger = NoteSigner::new(
            "caretrail.cn/tenant-t1",
            caretrail_crypto::SigningKey::generate_for_suite(suite).unwrap(),
        )
        .unwrap();
        for r in ["r0", "r1-forged", "r2", "r3", "r4", "r5", "r6"] {
            fork.append(r);
        }
        std::fs::write(d.join("forged.note"), fork.note_by(7, &fx.ledger)).unwrap();
        let forged_proof: String = fork
            .tree
            .consistency_proof(3, 7)
            .unwrap()
            .iter()
            .map(|h| format!("{}\n", b64(h)))
            .collect();
        std::fs::write(d.join("forged-proof.txt"), forged_proof).unwrap();
        assert_fails(
            &args(&cons("old.note", "forged.note", "forged-proof.txt", &lk)),
            d,
            "consistency proof",
            "forked root with the fork's proof",
        );
        assert_fails(
            &args(&cons("old.note", "forged.note", "proof.txt", &lk)),
            d,
            "consistency proof",
            "forked root with the real proof",
        );
        // A checkpoint the pinned key did not sign.
        std::fs::write(d.join("foreign.note"), fork.note(7)).unwrap();
        assert_fails(
            &args(&cons("old.note", "foreign.note", "proof.txt", &lk)),
            d,
            "new checkpoint signature",
            "new checkpoint by another ledger key",
        );
        // Old and new swapped: a log never shrinks.
        assert_fails(
            &args(&cons("new.note", "old.note", "proof.txt", &lk)),
            d,
            "consistency proof",
            "swapped checkpoints",
        );
        // Unparseable proof file: exit 2.
        std::fs::write(d.join("bad-proof.txt"), "not base64!\n").unwrap();
        let (code, _, err) = run(
            &args(&cons("old.note", "new.note", "bad-proof.txt", &lk)),
            d,
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("bad-proof.txt"), "{err}");

        // verify checkpoint: origin, size, root and the verified cosignature.
        let (code, out, err) = run(
            &[
                "verify",
                "checkpoint",
                "new.note",
                "--ledger-key",
                &lk,
                "--witness-key",
                &wk,
                "--min-cosignatures",
                "1",
            ],
            d,
        );
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains("✓ ledger checkpoint signature: "), "{out}");
        assert!(out.contains("✓ witness cosignatures: 1 of 1"), "{out}");
        assert!(out.contains("caretrail.cn/tenant-t1"), "{out}");
        assert!(out.contains(&fx.tree.root_at(7).unwrap().to_hex()), "{out}");
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with("size:") && l.trim_end().ends_with(" 7")),
            "{out}"
        );
        assert!(
            out.lines().any(|l| l.trim_start().starts_with("cosigned:")
                && l.contains("regulator.example/w1")
                && l.contains("2023-11-14T22:21:40Z")),
            "{out}"
        );
        assert_fails(
            &["verify", "checkpoint", "foreign.note", "--ledger-key", &lk],
            d,
            "ledger checkpoint signature",
            "checkpoint by another ledger key",
        );
        assert_fails(
            &[
                "verify",
                "checkpoint",
                "new.note",
                "--ledger-key",
                &lk,
                "--witness-key",
                &wk,
                "--min-cosignatures",
                "2",
            ],
            d,
            "witness cosignatures",
            "cosignature quorum",
        );
        let tampered = fx.note(7).replacen("\n7\n", "\n8\n", 1);
        std::fs::write(d.join("tampered.note"), tampered).unwrap();
        assert_fails(
            &["verify", "checkpoint", "tampered.note", "--ledger-key", &lk],
            d,
            "ledger checkpoint signature",
            "tampered checkpoint size",
        );
    }
}

/// The pilot's story (`caretrail demo`) against a freshly seeded server; every check passes.
async fn story(env: &[(&str, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_env(dir.path(), true, env).await;
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking({
        let base = server.base.clone();
        let creds = dir.path().join("dev-credentials.json");
        move || {
            Command::new(BIN)
                .args(["demo", "--url", &base, "--credentials"])
                .arg(creds)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let narrative = String::from_utf8_lossy(&out.stdout);
    println!(
        "{narrative}\nstory wall time: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "{narrative}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!narrative.contains('✗'), "{narrative}");
    assert!(narrative.contains("STORY VERIFIED"), "{narrative}");
    assert!(narrative.matches('✓').count() >= 19, "{narrative}");
    verify_downloaded_trail(&narrative, dir.path());
    server.stop().await;
}

/// The trail file the story saved verifies with `caretrail verify trail`; an event relabelled,
/// given another event's proof, or showing a category or purpose its entry did not commit to
/// does not.
fn verify_downloaded_trail(narrative: &str, dir: &Path) {
    let saved = narrative
        .split("saved to ")
        .nth(1)
        .and_then(|rest| rest.split(" (check it").next())
        .expect("the story names the saved trail file");
    let (code, out, err) = run(&["verify", "trail", saved], dir);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("VERIFIED: 6 events"), "{out}");
    let trail: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(saved).unwrap()).unwrap();
    let mut relabelled = trail.clone();
    relabelled["events"][2]["kind"] = "record.access_denied".into();
    let mut swapped = trail.clone();
    swapped["events"][1]["proof"] = trail["events"][2]["proof"].clone();
    let mut moved = trail.clone();
    moved["events"][0]["record"] = "rec_0000000000000000000000000000beef".into();
    // The ledger entries seal category and purpose; the trail shows them with the openings,
    // and a shown value the entry did not commit to fails.
    assert_eq!(trail["events"][0]["category"], "exam_report", "{trail}");
    assert_eq!(
        trail["events"][0]["opening"]["fields"]["category"],
        "exam_report"
    );
    let mut recategorised = trail.clone();
    recategorised["events"][0]["category"] = "mental_health".into();
    let mut reopened = recategorised.clone();
    reopened["events"][0]["opening"]["fields"]["category"] = "mental_health".into();
    let mut repurposed = trail.clone();
    let read = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| e["kind"] == "record.accessed")
        .expect("a read in the trail");
    repurposed["events"][read]["purpose"] = "research".into();
    let mut unopened = trail.clone();
    unopened["events"][0]
        .as_object_mut()
        .unwrap()
        .remove("opening");
    for (name, doc) in [
        ("relabelled.json", relabelled),
        ("swapped.json", swapped),
        ("moved.json", moved),
        ("recategorised.json", recategorised),
        ("reopened.json", reopened),
        ("repurposed.json", repurposed),
        ("unopened.json", unopened),
    ] {
        std::fs::write(dir.join(name), doc.to_string()).unwrap();
        let (code, out, err) = run(&["verify", "trail", name], dir);
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(out.contains('✗'), "{name}: {out}");
    }
    let _ = std::fs::remove_file(saved);
}

#[tokio::test]
async fn the_pilot_story_embedded() {
    story(&[]).await;
}

/// The all-in-one's settings for PostgreSQL (a fresh database), RabbitMQ and the S3 server.
struct RealBackend {
    env: Vec<(&'static str, String)>,
    pg: String,
    database: String,
}

impl RealBackend {
    fn new(tag: &str) -> Self {
        let suffix = format!("{}", std::process::id())
            + &format!(
                "{:x}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
                    % 0xffff_ffff
            );
        let database = format!("caretrail_{tag}_{suffix}");
        let pg = std::env::var("CARETRAIL_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let created = Command::new("psql")
            .args([
                pg.as_str(),
                "-q",
                "-c",
                &format!("CREATE DATABASE {database}"),
            ])
            .status()
            .unwrap();
        assert!(created.success(), "creating {database}");
        let base_url = pg.rsplit_once('/').unwrap().0.to_string();
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        let env = vec![
            ("CARETRAIL_DATABASE_URL", format!("{base_url}/{database}")),
            (
                "CARETRAIL_BUS_URL",
                env(
                    "CARETRAIL_TEST_AMQP_URL",
                    "amqp://guest:guest@127.0.0.1:5672/%2f",
                ),
            ),
            ("CARETRAIL_BUS_PREFIX", format!("{tag}-{suffix}")),
            ("CARETRAIL_STORAGE", "s3".into()),
            (
                "CARETRAIL_S3_ENDPOINT",
                env("CARETRAIL_TEST_S3_ENDPOINT", "http://127.0.0.1:3900"),
            ),
            (
                "CARETRAIL_S3_REGION",
                env("CARETRAIL_TEST_S3_REGION", "garage"),
            ),
            (
                "CARETRAIL_S3_BUCKET",
                env("CARETRAIL_TEST_S3_BUCKET", "caretrail-test"),
            ),
            (
                "CARETRAIL_S3_ACCESS_KEY_ID",
                env("CARETRAIL_S3_ACCESS_KEY", "GK31c2f218a2e44f485b94239e"),
            ),
            (
                "CARETRAIL_S3_SECRET_ACCESS_KEY",
                env(
                    "CARETRAIL_S3_SECRET_KEY",
                    "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835",
                ),
            ),
        ];
        Self { env, pg, database }
    }

    fn drop_database(self) {
        let _ = Command::new("psql")
            .args([
                self.pg.as_str(),
                "-q",
                "-c",
                &format!("DROP DATABASE {} WITH (FORCE)", self.database),
            ])
            .status();
    }
}

/// The same story with every service on PostgreSQL (a fresh database), RabbitMQ and the S3
/// server; the ledger is the all-in-one's single node.
#[tokio::test]
async fn the_pilot_story_on_postgres_rabbitmq_and_s3() {
    let real = RealBackend::new("story");
    story(&real.env).await;
    real.drop_database();
}
