//! The `caretrail` binary as users run it: the all-in-one server on the embedded defaults,
//! the OpenAPI export, and the partner developers' crypto commands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

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
    let mut cmd = Command::new(BIN);
    cmd.arg("serve");
    if seed {
        cmd.arg("--seed-demo");
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
    reqwest::Client::new()
        .post(format!("{base}/v1/oauth/token"))
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
    server.stop().await;

    // Restart: same data, no second seed, the credentials still work.
    let before = std::fs::read(&creds_path).unwrap();
    let server = start(&data, true).await;
    assert_eq!(std::fs::read(&creds_path).unwrap(), before, "seeded once");
    assert_eq!(demo_token(&server.base, &creds).await.status(), 200);
    server.stop().await;
}
