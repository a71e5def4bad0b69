//! Anomaly flags: a break-glass use, a refused access attempt and a burst of accesses are
//! each flagged once — as a row, an `audit.anomaly.flagged` event and a metric.

use std::time::{Duration, Instant};

use caretrail_runtime::testing::Backend;
use caretrail_test_stack::{Options, Stack, metadata};
use serde_json::{Value, json};

async fn flagged(backend: Backend) {
    let stack = Stack::start_with(
        backend,
        Options {
            consent: true,
            audit: true,
            audit_access_min_per_hour: Some(3),
            ..Options::default()
        },
    )
    .await;
    let (_events, seen) = stack.collect_events("*.audit.anomaly.flagged").await;
    let app = stack.app_token(0, 0).await;
    let dr_li = stack.user_token("dr.li").await;
    let auditor = stack.user_token("auditor.chen").await;
    let patient = stack.register_patient(&app, "320402198001011234").await;
    let mut records = Vec::new();
    for category in ["exam_report", "mental_health"] {
        let r: Value = stack
            .upload(
                &app,
                "application/pdf",
                &metadata(&patient, category),
                b"%PDF".to_vec(),
            )
            .await
            .json()
            .await
            .unwrap();
        records.push(r["record"]["id"].as_str().unwrap().to_string());
    }
    let read = |record: &str| {
        let path = format!("/v1/records/{record}/content?purpose=emergency");
        let (stack, token) = (&stack, dr_li.clone());
        async move { stack.get(&token, &path).await.status().as_u16() }
    };
    assert_eq!(read(&records[0]).await, 404, "no grant yet");
    let resp = stack
        .http
        .post(format!("{}/v1/break-glass", stack.consent_url()))
        .bearer_auth(&dr_li)
        .json(&json!({"patient": patient, "justification": "collapsed in the waiting room, no history available"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    for _ in 0..5 {
        assert_eq!(read(&records[0]).await, 200);
    }
    let get = |path: String| {
        let (stack, token) = (&stack, auditor.clone());
        async move {
            let resp = stack
                .http
                .get(format!("{}{path}", stack.audit_url()))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            resp.json::<Value>().await.unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let kinds = loop {
        let list = get("/v1/audit/anomalies".into()).await;
        let mut kinds: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap().to_string())
            .collect();
        kinds.sort();
        if kinds.len() >= 3 {
            break kinds;
        }
        assert!(Instant::now() < deadline, "flags so far: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Five reads in the hour (threshold 3) raise one volume flag, not three.
    assert_eq!(
        kinds,
        ["access_refused", "access_volume", "break_glass_used"]
    );
    let volume = get("/v1/audit/anomalies?kind=access_volume".into()).await;
    assert_eq!(volume["items"][0]["detail"]["last_hour"], 4, "{volume}");
    assert!(
        volume["items"][0]["subject"]
            .as_str()
            .unwrap()
            .starts_with("usr_"),
        "{volume}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "events: {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = stack.audit_metrics().await;
    for kind in ["access_refused", "access_volume", "break_glass_used"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("caretrail_audit_anomalies_total")
                    && l.contains(kind)
                    && l.ends_with(" 1")),
            "{kind} in {metrics}"
        );
    }
    // Another tenant sees none of them.
    let other = stack.app_token(1, 0).await;
    let theirs: Value = stack
        .http
        .get(format!("{}/v1/audit/anomalies", stack.audit_url()))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        theirs["items"].as_array().map(Vec::len),
        Some(0),
        "{theirs}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn anomalies_are_flagged_once_embedded() {
    flagged(Backend::Embedded).await;
}

#[tokio::test]
async fn anomalies_are_flagged_once_real() {
    flagged(Backend::Real).await;
}
