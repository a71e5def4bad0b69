//! Who reads which entries through `/v1/ledger/**`: the whole log for auditors and tenant
//! admins; for anyone else, what their institution submitted or is named in — and an entry
//! they may not read answers like one that does not exist.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use caretrail_contracts::auth::Role;
use caretrail_crypto::{SigningKey, Suite};
use caretrail_ledger::storage::keys::REGISTRAR;
use caretrail_ledger_proofs::canonical_json;
use serde_json::{Value, json};

use crate::service::{INS_A, Ledger, TEN_A, anchored, signed, token};

const INS_B: &str = "ins_0000000000000000000000000000000b";
const INS_C: &str = "ins_0000000000000000000000000000000c";

fn indexes(page: &Value) -> Vec<u64> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn entries_are_read_by_their_parties_and_auditors_only() {
    let data = tempfile::tempdir().unwrap();
    let ledger = Ledger::embedded(data.path()).await;
    let registrar = ledger.tenant(TEN_A, Suite::Intl).await;
    let key_a = SigningKey::generate_for_suite(Suite::Intl).unwrap();
    let key_b = SigningKey::generate_for_suite(Suite::Intl).unwrap();
    ledger.register_key(TEN_A, &registrar, INS_A, &key_a).await; // 0: names A
    ledger.register_key(TEN_A, &registrar, INS_B, &key_b).await; // 1: names B
    ledger.append_ok(anchored(TEN_A, INS_A, &key_a, 1)).await; // 2: submitted by A
    // 3: the platform attests that B read A's record for a referral: names both.
    let access = canonical_json(&json!({
        "record": format!("rec_{:032x}", 1),
        "owner": INS_A,
        "institution": INS_B,
        "purpose": "referral",
    }))
    .unwrap();
    ledger
        .append_ok(signed(
            TEN_A,
            "record.accessed",
            REGISTRAR,
            "access:1",
            &registrar,
            access,
        ))
        .await;
    ledger.append_ok(anchored(TEN_A, INS_A, &key_a, 2)).await; // 4: submitted by A

    let physician_a = token(TEN_A, Some(INS_A), vec![Role::Physician]);
    let physician_b = token(TEN_A, Some(INS_B), vec![Role::Physician]);
    let admin_c = token(TEN_A, Some(INS_C), vec![Role::InstitutionAdmin]);
    let auditor = token(TEN_A, None, vec![Role::Auditor]);
    let tenant_admin = token(TEN_A, None, vec![Role::TenantAdmin]);
    let nobody = token(TEN_A, None, vec![Role::Physician]);

    let page = |t: String, q: &'static str| {
        let ledger = &ledger;
        async move {
            let (status, body) = ledger.get(&t, &format!("/v1/ledger/entries{q}")).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    assert_eq!(
        indexes(&page(physician_a.clone(), "").await),
        vec![0, 2, 3, 4]
    );
    assert_eq!(indexes(&page(physician_b.clone(), "").await), vec![1, 3]);
    assert!(indexes(&page(admin_c.clone(), "").await).is_empty());
    assert!(indexes(&page(nobody.clone(), "").await).is_empty());
    assert_eq!(
        indexes(&page(auditor.clone(), "").await),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(
        indexes(&page(tenant_admin.clone(), "").await),
        vec![0, 1, 2, 3, 4]
    );

    // Pages of what the caller may read: `next` is a position in the log (whose size the
    // checkpoint already tells), never the index of an entry the caller may not read.
    let first = page(physician_b.clone(), "?limit=1").await;
    assert_eq!(
        (indexes(&first), first["next"].as_u64()),
        (vec![1], Some(2))
    );
    let second = page(physician_b.clone(), "?start=2&limit=1").await;
    assert_eq!(
        (indexes(&second), second["next"].as_u64()),
        (vec![3], Some(4))
    );
    let last = page(physician_b.clone(), "?start=4&limit=1").await;
    assert_eq!((indexes(&last), last["next"].as_u64()), (vec![], None));

    // An entry the caller may not read is "not found", exactly like one beyond the log.
    let (status, hidden) = ledger.get(&physician_b, "/v1/ledger/entries/2").await;
    let (_, missing) = ledger.get(&physician_b, "/v1/ledger/entries/2000").await;
    assert_eq!(status, 404, "{hidden}");
    assert_eq!(hidden["code"], missing["code"]);
    assert_eq!(
        hidden["detail"].as_str().unwrap().replace("2000", "2"),
        missing["detail"].as_str().unwrap().replace("2000", "2")
    );
    assert!(!hidden.to_string().contains("record.anchored"), "{hidden}");
    for path in ["/v1/ledger/entries/2/bundle", "/v1/ledger/entries/0/bundle"] {
        let (status, body) = ledger.get(&physician_b, path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, body) = ledger
        .get(&physician_b, "/v1/ledger/entries/3/bundle")
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = ledger.get(&physician_a, "/v1/ledger/entries/2").await;
    assert_eq!((status, body["submitter"].as_str()), (200, Some(INS_A)));
    let (status, _) = ledger.get(&auditor, "/v1/ledger/entries/2/bundle").await;
    assert_eq!(status, 200);

    // Checkpoints, proofs and keys stay public to the tenant: they hold hashes and sizes.
    for path in [
        "/v1/ledger/checkpoint",
        "/v1/ledger/proofs/inclusion?index=2",
        "/v1/ledger/proofs/consistency?from=1&to=5",
        "/v1/ledger/keys",
    ] {
        let (status, body) = ledger.get(&admin_c, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    ledger.stop().await;
}
