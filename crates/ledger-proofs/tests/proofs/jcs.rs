//! Canonical JSON. Vectors from cyberphone/json-canonicalization `testdata/` (the RFC 8785
//! reference test data): `weird.json`, `unicode.json`, `simpleString.json`, and `values.json`
//! whose `escaping` and `literals` members we check (its `numbers` are floats, which we reject).

use caretrail_ledger_proofs::{ProofError, canonical_json};
use proptest::prelude::*;
use serde_json::{Value, json};

fn canon(input: &str) -> Result<String, ProofError> {
    let v: Value = serde_json::from_str(input).unwrap();
    canonical_json(&v).map(|b| String::from_utf8(b).unwrap())
}

#[test]
fn reference_vectors() {
    let weird_in = r#"{
  "\u20ac": "Euro Sign",
  "1": "One",
  "\u0080": "Control\u007f",
  "\ud83d\ude02": "Smiley",
  "\u00f6": "Latin Small Letter O With Diaeresis",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "</script>": "Browser Challenge"
}
"#;
    let weird_out = "{\"1\":\"One\",\"</script>\":\"Browser Challenge\",\"\u{80}\":\"Control\u{7f}\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f602}\":\"Smiley\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
    assert_eq!(canon(weird_in).unwrap(), weird_out);

    assert_eq!(
        canon("{\n  \"Unnormalized Unicode\":\"\\u1e0d\\u0307\"\n}\n").unwrap(),
        "{\"Unnormalized Unicode\":\"\u{1e0d}\u{307}\"}"
    );
    assert_eq!(
        canon("    \"this is a test string 1235\"").unwrap(),
        "\"this is a test string 1235\""
    );
    let values_in = r#"{
  "escaping": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"#;
    assert_eq!(
        canon(values_in).unwrap(),
        "{\"escaping\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\",\"literals\":[null,true,false]}"
    );
}

#[test]
fn floats_and_unsafe_integers_are_rejected() {
    // values.json and structures.json from the reference data contain floats.
    let values =
        r#"{"numbers": [1E30, 4.50, 333333333.33333329, 2e-3, 0.000000000000000000000000001]}"#;
    assert!(matches!(
        canon(values),
        Err(ProofError::NonCanonicalJson(_))
    ));
    let structures = "{\n  \"1\": {\"f\": {\"f\": \"hi\",\"F\": 5} ,\"\\n\": 56.0},\n  \"10\": { },\n  \"\": \"empty\",\n  \"a\": { },\n  \"111\": [ { } ],\n  \"A\": { }\n}";
    assert!(canon(structures).is_err());
    assert_eq!(
        canon(r#"{"b":[9007199254740991,-9007199254740991,0,-1],"a":1}"#).unwrap(),
        r#"{"a":1,"b":[9007199254740991,-9007199254740991,0,-1]}"#
    );
    assert!(canon("9007199254740992").is_err());
    assert!(canon("-9007199254740992").is_err());
    assert!(canon("18446744073709551615").is_err());
    assert!(canonical_json(&json!(1.5)).is_err());
}

#[test]
fn escaping_and_depth() {
    assert_eq!(
        canonical_json(&json!("\u{1}\u{1f}\u{7f}\u{8}\u{c}\r\t\u{2028}")).unwrap(),
        "\"\\u0001\\u001f\u{7f}\\b\\f\\r\\t\u{2028}\"".as_bytes()
    );
    let mut deep = json!(1);
    for _ in 0..128 {
        deep = json!([deep]);
    }
    canonical_json(&deep).unwrap();
    let deeper = json!({ "x": deep });
    assert!(canonical_json(&deeper).is_err());
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(|n| json!(n)),
        "\\PC{0,12}".prop_map(Value::String),
        "[\\x00-\\x1f\"\\\\]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn canonical_json_roundtrips_and_is_idempotent(v in arb_json()) {
        let bytes = canonical_json(&v).unwrap();
        let parsed: Value = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(&parsed, &v);
        prop_assert_eq!(canonical_json(&parsed).unwrap(), bytes);
    }
}
