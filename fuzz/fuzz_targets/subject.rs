//! The certificate subject the Connector hands out (`Subject::parse`), the key
//! algorithm next to it, and the CSR the agent builds from a parsed subject.
//!
//! Properties: no panic; a parsed subject survives `Display` → `parse`; the
//! CSR, when it can be made, is signed by the key and carries exactly the
//! subject's non-empty values (the Connector refuses any other CSR).
#![no_main]

use std::sync::OnceLock;

use compass_runtime_agent::certificates::keys::csr_pem_for_key;
use compass_runtime_agent::certificates::{KeyAlgorithm, Subject, SubjectError};
use libfuzzer_sys::fuzz_target;
use rcgen::{KeyPair, RsaKeySize, PKCS_RSA_SHA256};
use x509_parser::prelude::*;

/// RSA key generation takes tens of milliseconds: one key for the whole run.
fn key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).expect("RSA key")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The Connector sends the key algorithm next to the subject; either line may
    // be anything.
    let (subject_text, algorithm) = text.split_once('\n').unwrap_or((text, "rsa2048"));
    if let Ok(algorithm) = KeyAlgorithm::parse(algorithm) {
        assert!(matches!(algorithm.bits(), 2048 | 4096));
    }

    let subject = match Subject::parse(subject_text) {
        Ok(subject) => subject,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    // Values are trimmed and never contain the separator.
    for value in values(&subject) {
        assert!(!value.contains(','), "{subject:?}");
        assert_eq!(value, value.trim(), "{subject:?}");
    }

    // Display gives the Connector's format back, and that parses to the same.
    let shown = subject.to_string();
    match Subject::parse(&shown) {
        Ok(again) => assert_eq!(again, subject, "{shown:?}"),
        // Display adds the empty attributes, which may push it over the limit.
        Err(SubjectError::TooLong { .. }) => assert!(subject_text.len() > 4000),
        Err(error) => panic!("{shown:?} does not parse again: {error}"),
    }

    let Ok(csr_pem) = csr_pem_for_key(&subject, key()) else {
        return;
    };
    let pem = ::pem::parse(&csr_pem).expect("the CSR is PEM");
    let (rest, csr) = X509CertificationRequest::from_der(pem.contents()).expect("the CSR is DER");
    assert!(rest.is_empty());
    csr.verify_signature()
        .expect("the CSR is signed by its key");
    let name = &csr.certification_request_info.subject;
    let strings = |attributes: Vec<&AttributeTypeAndValue>| -> Vec<String> {
        attributes
            .into_iter()
            .map(|a| attribute_text(a).expect("a CSR attribute is a string"))
            .collect()
    };
    for (found, wanted) in [
        (
            strings(name.iter_common_name().collect()),
            &subject.common_name,
        ),
        (strings(name.iter_country().collect()), &subject.country),
        (
            strings(name.iter_organization().collect()),
            &subject.organization,
        ),
        (
            strings(name.iter_organizational_unit().collect()),
            &subject.organizational_unit,
        ),
        (strings(name.iter_locality().collect()), &subject.locality),
        (
            strings(name.iter_state_or_province().collect()),
            &subject.province,
        ),
    ] {
        let expected: Vec<String> = if wanted.is_empty() {
            Vec::new()
        } else {
            vec![wanted.clone()]
        };
        assert_eq!(found, expected, "the CSR does not carry {subject:?}");
    }
});

fn values(subject: &Subject) -> [&str; 6] {
    [
        &subject.common_name,
        &subject.country,
        &subject.organization,
        &subject.organizational_unit,
        &subject.locality,
        &subject.province,
    ]
}

/// The text of a DN attribute (rcgen writes `&str` values as UTF8String).
fn attribute_text(attribute: &AttributeTypeAndValue) -> Option<String> {
    attribute.as_str().ok().map(str::to_string)
}
