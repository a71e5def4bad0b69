//! Checkpoints (c2sp.org/tlog-checkpoint). The example note is the one in C2SP/C2SP
//! `tlog-checkpoint.md` / `tlog-cosignature.md`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use caretrail_ledger_proofs::{
    Checkpoint, Cosignature, Note, NoteSigner, ProofError, Suite, empty_root,
};

use super::common::{key, tree};

const SPEC_BODY: &str =
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
const SPEC_LOG_SIG: &str = "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
const SPEC_COSIG: &str = "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";

#[test]
fn spec_example_parses() {
    let msg = format!("{SPEC_BODY}\n{SPEC_LOG_SIG}{SPEC_COSIG}");
    let note = Note::parse(msg.as_bytes()).unwrap();
    let cp = Checkpoint::parse_body(note.text(), Suite::Intl).unwrap();
    assert_eq!(cp.origin(), "example.com/behind-the-sofa");
    assert_eq!(cp.size(), 20852163);
    assert_eq!(
        B64.encode(cp.root().as_bytes()),
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    );
    assert_eq!(cp.body(), SPEC_BODY);
    assert_eq!(note.encode(), msg);
    // The spec's cosignature: key id, and the timestamp of its "time 1679315147" example.
    let cosig = Cosignature::from_note_signature(&note.signatures()[1]).unwrap();
    assert_eq!(cosig.name, "witness.example.com/w1");
    assert_eq!(cosig.key_id, 0x8d66cf3f);
    assert_eq!(cosig.timestamp, 1679315147);
    assert_eq!(cosig.signature.len(), 64);
    assert_eq!(cosig.line(), SPEC_COSIG);
    // We do not know the example keys: no trusted signature.
    assert!(matches!(
        Checkpoint::open(msg.as_bytes(), Suite::Intl, &[], &[]),
        Err(ProofError::NoTrustedSignature(_))
    ));
}

#[test]
fn sign_and_open_in_both_suites() {
    for suite in Suite::ALL {
        let t = tree(suite, 42);
        let origin = "caretrail.eu/0f5e6c1a-tenant";
        let signer = NoteSigner::new(origin, key(suite, 1)).unwrap();
        let cp = Checkpoint::new(origin, t.size(), t.root()).unwrap();
        let note = cp.sign(&signer).unwrap();
        let text = note.encode();
        assert!(text.starts_with(&format!("{origin}\n42\n")));
        let opened =
            Checkpoint::open(text.as_bytes(), suite, &[signer.verifier_key()], &[]).unwrap();
        assert_eq!(opened.checkpoint, cp);
        assert_eq!(opened.log_signatures.len(), 1);
        assert!(opened.cosignatures.is_empty());
        // Another key (same name) is not trusted.
        let other = NoteSigner::new(origin, key(suite, 2)).unwrap();
        assert!(matches!(
            Checkpoint::open(text.as_bytes(), suite, &[other.verifier_key()], &[]),
            Err(ProofError::NoTrustedSignature(_))
        ));
        // A tampered body fails the known key's signature.
        let tampered = text.replacen("\n42\n", "\n43\n", 1);
        assert!(matches!(
            Checkpoint::open(tampered.as_bytes(), suite, &[signer.verifier_key()], &[]),
            Err(ProofError::SignatureInvalid { .. })
        ));
    }
}

#[test]
fn empty_tree_and_extensions() {
    let cp = Checkpoint::new("log", 0, empty_root(Suite::Gm))
        .unwrap()
        .with_extensions(vec!["ext one".into(), "ext two".into()])
        .unwrap();
    let body = cp.body();
    assert!(body.starts_with("log\n0\n"));
    assert!(body.ends_with("\next one\next two\n"));
    assert_eq!(Checkpoint::parse_body(&body, Suite::Gm).unwrap(), cp);
    assert!(
        Checkpoint::new("log", 0, empty_root(Suite::Gm))
            .unwrap()
            .with_extensions(vec![String::new()])
            .is_err()
    );
    assert!(
        Checkpoint::new("log", 0, empty_root(Suite::Gm))
            .unwrap()
            .with_extensions(vec!["x".into(); 17])
            .is_err()
    );
}

#[test]
fn malformed_bodies_are_rejected() {
    let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
    let ext17 = "e\n".repeat(17);
    let bad = [
        String::new(),
        "origin\n".to_string(),
        "origin\n5\n".to_string(),
        format!("origin\n5\n{root}"),    // missing final newline
        format!("\n5\n{root}\n"),        // empty origin
        format!("origin\n05\n{root}\n"), // leading zero
        format!("origin\n+5\n{root}\n"), // sign
        format!("origin\n-1\n{root}\n"),
        format!("origin\n5 \n{root}\n"),
        format!("origin\n0x5\n{root}\n"),
        format!("origin\n18446744073709551616\n{root}\n"), // 2^64
        format!("origin\n\n{root}\n"),
        "origin\n5\nnot base64!\n".to_string(),
        "origin\n5\nAAAA\n".to_string(),         // 3-byte root
        format!("origin\n5\n{}\n", &root[..43]), // unpadded
        format!("origin\n5\n{root}\n\n"),        // empty extension line
        format!("origin\n5\n{root}\n{ext17}"),   // too many extension lines
    ];
    for body in &bad {
        assert!(
            Checkpoint::parse_body(body, Suite::Intl).is_err(),
            "accepted {body:?}"
        );
    }
    Checkpoint::parse_body(&format!("origin\n0\n{root}\n"), Suite::Intl).unwrap();
    Checkpoint::parse_body(
        &format!("origin\n18446744073709551615\n{root}\n"),
        Suite::Intl,
    )
    .unwrap();
    assert!(Checkpoint::new("", 1, empty_root(Suite::Intl)).is_err());
    assert!(Checkpoint::new("a\nb", 1, empty_root(Suite::Intl)).is_err());
    assert!(Checkpoint::new("x".repeat(256), 1, empty_root(Suite::Intl)).is_err());
}
