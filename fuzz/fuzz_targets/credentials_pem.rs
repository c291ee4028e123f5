//! The client credentials: PEM read back from the agent's Secrets
//! (`ClientCredentials::new`) and the Connector's base64-of-PEM answer
//! (`ClientCredentials::from_connector`).
//!
//! Input: parts separated by NUL bytes. Four parts: key, certificate, chain and
//! CA PEM for `new`. Five parts: key PEM, then the client certificate, chain
//! and CA as the Connector sends them (base64 of PEM), then the subject asked
//! for, for `from_connector`.
//!
//! Properties: no panic; accepted credentials are consistent (the chain starts
//! with the certificate, the common name is the one asked for), usable as a TLS
//! client identity, and their renewal time can be computed.
#![no_main]

use std::time::Duration;

use compass_runtime_agent::certificates::renewal::renewal_due_at;
use compass_runtime_agent::certificates::{ClientCredentials, Subject};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parts: Vec<String> = data
        .splitn(5, |b| *b == 0)
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    let part = |i: usize| parts.get(i).cloned().unwrap_or_default();

    let (result, asked) = if parts.len() == 5 {
        let Ok(asked) = Subject::parse(&part(4)) else {
            return;
        };
        let result = ClientCredentials::from_connector(
            part(0),
            &part(2),
            &part(3),
            &part(1),
            &asked,
            jiff::Timestamp::now(),
        );
        (result, Some(asked))
    } else {
        (
            ClientCredentials::new(part(0), part(1), part(2), part(3)),
            None,
        )
    };
    let credentials = match result {
        Ok(credentials) => credentials,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };

    let info = credentials.info();
    if let Some(asked) = asked {
        assert_eq!(info.common_name, asked.common_name);
    } else {
        assert_eq!(credentials.key_pem(), part(0));
        assert_eq!(credentials.certificate_pem(), part(1));
        if part(2).trim().is_empty() {
            assert_eq!(credentials.chain_pem(), part(1));
        }
    }
    assert!(!credentials.chain_pem().trim().is_empty());
    let _ = info.is_valid_at(info.not_before);
    let identity = credentials.identity_pem();
    assert!(identity.len() >= credentials.key_pem().len() + credentials.chain_pem().len());
    let _ = format!("{credentials:?}");

    // What the agent does next with them.
    let due = renewal_due_at(info, 0.3, Duration::from_secs(10));
    assert!(due <= info.not_after);
    if let Err(error) = reqwest::Identity::from_pem(&identity) {
        panic!("checked credentials are not a TLS identity: {error}");
    }
    // And the identity TLS uses is the checked one: one private key, the key
    // that was checked (rcgen reads the first PEM block of the key), and a
    // chain starting with the checked certificate.
    let (keys, certificates) = tls_sections(&identity);
    let key_der = ::pem::parse(credentials.key_pem()).unwrap().into_contents();
    assert_eq!(keys, vec![key_der], "TLS would use another key");
    let certificate_der = ::pem::parse_many(credentials.certificate_pem())
        .unwrap()
        .into_iter()
        .find(|block| block.tag() == "CERTIFICATE")
        .unwrap()
        .into_contents();
    assert_eq!(certificates.first(), Some(&certificate_der));
});

/// The private keys and certificates rustls' PEM reader (the one
/// `reqwest::Identity::from_pem` uses) finds.
fn tls_sections(pem: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    use rustls_pki_types::pem::{from_buf, SectionKind};
    let mut reader = std::io::Cursor::new(pem);
    let (mut keys, mut certificates) = (Vec::new(), Vec::new());
    while let Some((kind, der)) = from_buf(&mut reader).expect("readable PEM") {
        match kind {
            SectionKind::Certificate => certificates.push(der),
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey => {
                keys.push(der)
            }
            _ => {}
        }
    }
    (keys, certificates)
}
