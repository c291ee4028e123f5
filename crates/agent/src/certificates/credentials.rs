//! The client credentials: what the Connector returns, what the agent stores in
//! its Secrets, and the checks both pass before the agent trusts them.

use base64::Engine;
use jiff::Timestamp;
use rcgen::KeyPair;
use x509_parser::prelude::*;

use zeroize::Zeroizing;

use super::subject::Subject;
use super::CertificateError;

/// How far a new certificate's `notBefore` may lie ahead of this clock.
const CLOCK_SKEW_SECONDS: i64 = 300;

/// A client key, its certificate, the chain and the CA, all PEM, all checked:
/// the certificate parses and belongs to the key. Build one only through
/// [`ClientCredentials::new`], so an unchecked set cannot reach a Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// Wiped from memory when dropped.
    key_pem: Zeroizing<String>,
    certificate_pem: String,
    chain_pem: String,
    ca_pem: String,
    info: CertificateInfo,
}

/// What the status reports of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    pub subject: String,
    pub common_name: String,
    pub serial: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

impl CertificateInfo {
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("info", &self.info)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// Checks that `certificate_pem` holds a certificate for `key_pem`. `chain_pem`
    /// may be empty (then it is the certificate itself); `ca_pem` may be empty
    /// (a CA Secret is optional for the agent's own use).
    pub fn new(
        key_pem: impl Into<Zeroizing<String>>,
        certificate_pem: String,
        chain_pem: String,
        ca_pem: String,
    ) -> Result<ClientCredentials, CertificateError> {
        // An RSA key is kept as PKCS#1 whichever form it came in, so that every
        // Secret the agent writes can be read by the original agent again.
        let key_pem = super::keys::rsa_key_as_pkcs1_pem(&key_pem.into())?;
        let key = KeyPair::from_pem(&key_pem).map_err(CertificateError::InvalidKey)?;
        let certificate_der = first_certificate_der(&certificate_pem, "client certificate")?;
        let (_, certificate) = X509Certificate::from_der(&certificate_der).map_err(|e| {
            CertificateError::Unreadable {
                what: "client certificate",
                source: e.into(),
            }
        })?;
        if certificate.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CertificateError::KeyMismatch);
        }
        let chain_pem = if chain_pem.trim().is_empty() {
            certificate_pem.clone()
        } else {
            let chain_first = first_certificate_der(&chain_pem, "certificate chain")?;
            if chain_first != certificate_der {
                return Err(CertificateError::ChainMismatch);
            }
            chain_pem
        };
        if !ca_pem.trim().is_empty() {
            let ca_der = first_certificate_der(&ca_pem, "CA certificate")?;
            X509Certificate::from_der(&ca_der).map_err(|e| CertificateError::Unreadable {
                what: "CA certificate",
                source: e.into(),
            })?;
        }
        check_tls_identity(&key_pem, &certificate_der, &chain_pem)?;
        let info = certificate_info(&certificate)?;
        Ok(ClientCredentials {
            key_pem,
            certificate_pem,
            chain_pem,
            ca_pem,
            info,
        })
    }

    /// Decodes the Connector's `signCertificateSigningRequest` result (each field
    /// base64 of PEM) and checks it against the key that made the CSR, the
    /// subject that was asked for, the CA that came with it (it must have
    /// signed the certificate) and the clock (it must be valid now).
    pub fn from_connector(
        key_pem: impl Into<Zeroizing<String>>,
        certificate_chain_b64: &str,
        ca_certificate_b64: &str,
        client_certificate_b64: &str,
        asked: &Subject,
        now: Timestamp,
    ) -> Result<ClientCredentials, CertificateError> {
        let chain = decode_base64_pem("certificateChain", certificate_chain_b64)?;
        let ca = decode_base64_pem("caCertificate", ca_certificate_b64)?;
        let client = decode_base64_pem("clientCertificate", client_certificate_b64)?;
        let credentials = ClientCredentials::new(key_pem, client, chain, ca)?;
        if credentials.info.common_name != asked.common_name {
            return Err(CertificateError::SubjectMismatch {
                expected: asked.common_name.clone(),
                found: credentials.info.common_name.clone(),
            });
        }
        credentials.check_issued_by_its_ca()?;
        let earliest = now
            .checked_add(jiff::SignedDuration::from_secs(CLOCK_SKEW_SECONDS))
            .unwrap_or(now);
        if credentials.info.not_before > earliest || now >= credentials.info.not_after {
            return Err(CertificateError::NotValidNow {
                not_before: credentials.info.not_before,
                not_after: credentials.info.not_after,
            });
        }
        Ok(credentials)
    }

    /// The client certificate is signed by the CA certificate it came with.
    fn check_issued_by_its_ca(&self) -> Result<(), CertificateError> {
        let wrong = |reason: &str| CertificateError::InvalidCertificate {
            what: "client certificate",
            reason: reason.to_string(),
        };
        if self.ca_pem.trim().is_empty() {
            return Err(wrong(
                "the Connector sent no CA certificate to check it against",
            ));
        }
        let ca_der = first_certificate_der(&self.ca_pem, "CA certificate")?;
        let (_, ca) =
            X509Certificate::from_der(&ca_der).map_err(|e| CertificateError::Unreadable {
                what: "CA certificate",
                source: e.into(),
            })?;
        let certificate_der = first_certificate_der(&self.certificate_pem, "client certificate")?;
        let (_, certificate) = X509Certificate::from_der(&certificate_der).map_err(|e| {
            CertificateError::Unreadable {
                what: "client certificate",
                source: e.into(),
            }
        })?;
        if certificate.issuer().as_raw() != ca.subject().as_raw()
            || certificate.verify_signature(Some(ca.public_key())).is_err()
        {
            return Err(wrong(
                "it was not issued by the CA certificate the Connector sent",
            ));
        }
        Ok(())
    }

    /// The CA certificates of the chain (all but the client certificate), as
    /// PEM: where the CA is found again when its own Secret lost it.
    pub fn ca_from_chain(&self) -> String {
        ::pem::parse_many(&self.chain_pem)
            .map(|blocks| {
                blocks
                    .iter()
                    .filter(|block| block.tag() == "CERTIFICATE")
                    .skip(1)
                    .map(|block| {
                        let lf = ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF);
                        ::pem::encode_config(block, lf)
                    })
                    .collect::<Vec<_>>()
                    .join("")
            })
            .unwrap_or_default()
    }

    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }
    /// The private key, PEM. Never log it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Key and chain in one PEM buffer, the form a TLS client identity takes
    /// (wiped from memory when dropped).
    pub fn identity_pem(&self) -> Zeroizing<Vec<u8>> {
        let mut pem = Zeroizing::new(Vec::with_capacity(
            self.key_pem.len() + self.chain_pem.len() + 1,
        ));
        pem.extend_from_slice(self.key_pem.as_bytes());
        if !self.key_pem.ends_with('\n') {
            pem.push(b'\n');
        }
        pem.extend_from_slice(self.chain_pem.as_bytes());
        pem
    }
}

fn decode_base64_pem(field: &'static str, value: &str) -> Result<String, CertificateError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|source| CertificateError::InvalidEncoding { field, source })?;
    String::from_utf8(bytes).map_err(|_| CertificateError::NotText { field })
}

fn first_certificate_der(pem_text: &str, what: &'static str) -> Result<Vec<u8>, CertificateError> {
    let blocks = ::pem::parse_many(pem_text).map_err(|e| CertificateError::Unreadable {
        what,
        source: e.into(),
    })?;
    blocks
        .into_iter()
        .find(|block| block.tag() == "CERTIFICATE")
        .map(|block| block.into_contents())
        .ok_or(CertificateError::InvalidCertificate {
            what,
            reason: "no CERTIFICATE block".into(),
        })
}

/// Checks what the TLS client will make of the key and the chain: it reads them
/// with rustls' PEM reader (`reqwest::Identity::from_pem`), which refuses a
/// block the `pem` crate skips (an unterminated one, say) or a section other
/// than a certificate or key, and presents the last private key it finds. So:
/// every section readable, only certificates and private keys, the first
/// certificate the checked one, and every key the checked one.
fn check_tls_identity(
    key_pem: &str,
    certificate_der: &[u8],
    chain_pem: &str,
) -> Result<(), CertificateError> {
    use rustls::pki_types::pem::{from_buf, SectionKind};
    let invalid = |what, reason| CertificateError::InvalidCertificate { what, reason };
    let mut keys = Vec::new();
    let mut certificates = 0;
    for (what, text) in [("private key", key_pem), ("certificate chain", chain_pem)] {
        let mut reader = std::io::Cursor::new(text.as_bytes());
        while let Some((kind, der)) =
            from_buf(&mut reader).map_err(|e| CertificateError::Unreadable {
                what,
                source: e.into(),
            })?
        {
            match kind {
                SectionKind::Certificate if what == "certificate chain" => {
                    if certificates == 0 && der != certificate_der {
                        return Err(CertificateError::ChainMismatch);
                    }
                    certificates += 1;
                }
                SectionKind::PrivateKey
                | SectionKind::RsaPrivateKey
                | SectionKind::EcPrivateKey => keys.push(der),
                other => return Err(invalid(what, format!("unexpected {other:?} section"))),
            }
        }
    }
    if certificates == 0 {
        return Err(invalid(
            "certificate chain",
            "no CERTIFICATE block a TLS client can read".into(),
        ));
    }
    let checked = ::pem::parse(key_pem).map(::pem::Pem::into_contents);
    match checked {
        Ok(checked) if !keys.is_empty() && keys.iter().all(|key| *key == checked) => Ok(()),
        _ => Err(invalid(
            "private key",
            "a TLS client would not find exactly the checked private key in the key and chain"
                .into(),
        )),
    }
}

fn certificate_info(
    certificate: &X509Certificate<'_>,
) -> Result<CertificateInfo, CertificateError> {
    let time = |t: ASN1Time| {
        Timestamp::from_second(t.timestamp()).map_err(|e| CertificateError::Unreadable {
            what: "client certificate's validity",
            source: e.into(),
        })
    };
    let validity = certificate.validity();
    Ok(CertificateInfo {
        subject: certificate.subject().to_string(),
        common_name: certificate
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string(),
        serial: certificate.raw_serial_as_string(),
        not_before: time(validity.not_before)?,
        not_after: time(validity.not_after)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::keys::{generate_csr, KeyAlgorithm};
    use rcgen::{CertificateParams, CertificateSigningRequestParams, IsCa, Issuer, KeyPair};

    struct TestCa {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn test_ca() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn sign(ca: &TestCa, csr_pem: &str) -> String {
        CertificateSigningRequestParams::from_pem(csr_pem)
            .unwrap()
            .signed_by(&ca.issuer)
            .unwrap()
            .pem()
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn subject() -> Subject {
        Subject::parse("O=Org,OU=OrgUnit,L=Locality,ST=State,C=PL,CN=runtime-1").unwrap()
    }

    #[test]
    fn a_connector_answer_for_our_key_and_subject_is_accepted() {
        let ca = test_ca();
        let csr = generate_csr(&subject(), KeyAlgorithm::Rsa2048).unwrap();
        let cert = sign(&ca, &csr.csr_pem);
        let chain = format!("{cert}{}", ca.pem);
        let credentials = ClientCredentials::from_connector(
            csr.key_pem,
            &b64(&chain),
            &b64(&ca.pem),
            &b64(&cert),
            &subject(),
            Timestamp::now(),
        )
        .unwrap();
        assert_eq!(credentials.info().common_name, "runtime-1");
        assert_eq!(credentials.ca_from_chain().trim(), ca.pem.trim());
        assert!(credentials.info().is_valid_at(Timestamp::now()));
        assert_eq!(credentials.chain_pem(), chain);
        assert!(
            !format!("{credentials:?}").contains("PRIVATE"),
            "Debug must not print the key"
        );
    }

    #[test]
    fn a_certificate_the_ca_that_came_with_it_did_not_sign_is_refused() {
        let (ca, other_ca) = (test_ca(), test_ca());
        let csr = generate_csr(&subject(), KeyAlgorithm::Rsa2048).unwrap();
        let cert = sign(&other_ca, &csr.csr_pem);
        let chain = format!("{cert}{}", ca.pem);
        let error = ClientCredentials::from_connector(
            csr.key_pem,
            &b64(&chain),
            &b64(&ca.pem),
            &b64(&cert),
            &subject(),
            Timestamp::now(),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("not issued by the CA certificate"),
            "{error}"
        );
    }

    #[test]
    fn a_certificate_that_is_not_valid_now_is_refused() {
        let ca = test_ca();
        let csr = generate_csr(&subject(), KeyAlgorithm::Rsa2048).unwrap();
        let cert = sign(&ca, &csr.csr_pem);
        let chain = format!("{cert}{}", ca.pem);
        let answer = |now: Timestamp| {
            ClientCredentials::from_connector(
                csr.key_pem.clone(),
                &b64(&chain),
                &b64(&ca.pem),
                &b64(&cert),
                &subject(),
                now,
            )
        };
        let valid = answer(Timestamp::now()).unwrap();
        let (not_before, not_after) = (valid.info().not_before, valid.info().not_after);
        // A clock an hour behind the certificate's start, or past its end.
        for now in [not_before - jiff::SignedDuration::from_hours(1), not_after] {
            let error = answer(now).unwrap_err();
            assert!(
                matches!(error, CertificateError::NotValidNow { .. }),
                "{error}"
            );
        }
        // A few minutes of skew are tolerated.
        assert!(answer(not_before - jiff::SignedDuration::from_mins(4)).is_ok());
    }

    #[test]
    fn key_material_is_wiped_from_memory_when_dropped() {
        fn wiped_when_dropped<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let ca = test_ca();
        let csr = generate_csr(&subject(), KeyAlgorithm::Rsa2048).unwrap();
        wiped_when_dropped(&csr.key_pem);
        let cert = sign(&ca, &csr.csr_pem);
        let credentials =
            ClientCredentials::new(csr.key_pem.clone(), cert, String::new(), ca.pem).unwrap();
        wiped_when_dropped(&credentials.key_pem);
        wiped_when_dropped(&credentials.identity_pem());
    }

    #[test]
    fn a_certificate_for_another_key_is_refused() {
        let ca = test_ca();
        let ours = generate_csr(&subject(), KeyAlgorithm::Rsa2048).unwrap();
        let theirs = generate_csr(&subject(), KeyAlgorithm::Rsa2048).unwrap();
        let cert = sign(&ca, &theirs.csr_pem);
        let error = ClientCredentials::new(ours.key_pem, cert, String::new(), ca.pem).unwrap_err();
        assert!(matches!(error, CertificateError::KeyMismatch), "{error}");
    }

    #[test]
    fn a_certificate_for_another_runtime_is_refused() {
        let ca = test_ca();
        let other = Subject {
            common_name: "runtime-2".into(),
            ..subject()
        };
        let csr = generate_csr(&other, KeyAlgorithm::Rsa2048).unwrap();
        let cert = sign(&ca, &csr.csr_pem);
        let error = ClientCredentials::from_connector(
            csr.key_pem,
            &b64(&cert),
            &b64(&ca.pem),
            &b64(&cert),
            &subject(),
            Timestamp::now(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("runtime-2"), "{error}");
    }

    #[test]
    fn broken_pem_and_base64_are_clear_errors() {
        let csr = generate_csr(&subject(), KeyAlgorithm::Rsa2048).unwrap();
        let error = ClientCredentials::new(
            csr.key_pem.clone(),
            "-----BEGIN CERTIFICATE-----\nnot base64\n".into(),
            String::new(),
            String::new(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("client certificate"), "{error}");
        let error = ClientCredentials::new(
            "garbage".to_string(),
            String::new(),
            String::new(),
            String::new(),
        )
        .unwrap_err();
        assert!(matches!(error, CertificateError::InvalidKey(_)), "{error}");
        let error = ClientCredentials::from_connector(
            csr.key_pem,
            "%%%",
            "",
            "",
            &subject(),
            Timestamp::now(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("certificateChain"), "{error}");
    }

    #[test]
    fn a_truncated_chain_the_tls_client_cannot_read_is_refused() {
        // Found by fuzzing: the CA block of the chain lost its END line. The
        // `pem` crate skips such a block, so the chain passed the checks, was
        // stored, and every TLS client built from it failed.
        let ca = test_ca();
        let csr = generate_csr(&subject(), KeyAlgorithm::Rsa2048).unwrap();
        let cert = sign(&ca, &csr.csr_pem);
        let truncated_ca = ca
            .pem
            .trim_end()
            .trim_end_matches("-----END CERTIFICATE-----");
        let chain = format!("{cert}{truncated_ca}");
        let error = ClientCredentials::new(csr.key_pem, cert, chain, ca.pem).unwrap_err();
        assert!(
            matches!(
                error,
                CertificateError::Unreadable {
                    what: "certificate chain",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn the_tls_identity_must_be_the_checked_key_and_certificate() {
        let ca = test_ca();
        let csr = generate_csr(&subject(), KeyAlgorithm::Rsa2048).unwrap();
        let other = generate_csr(&subject(), KeyAlgorithm::Rsa2048).unwrap();
        let cert = sign(&ca, &csr.csr_pem);
        // A second key in the chain: TLS would present the last key found.
        let chain = format!("{cert}{}", *other.key_pem);
        let error = ClientCredentials::new(csr.key_pem.clone(), cert.clone(), chain, String::new())
            .unwrap_err();
        assert!(error.to_string().contains("private key"), "{error}");
        // The key under another label: rcgen reads any label, TLS finds no key.
        let relabelled = csr.key_pem.replace("PRIVATE KEY", "CERTIFICATE");
        let error = ClientCredentials::new(relabelled, cert.clone(), String::new(), String::new())
            .unwrap_err();
        assert!(error.to_string().contains("private key"), "{error}");
        // A section that is neither a certificate nor a key.
        let chain = format!("{cert}{}", csr.csr_pem);
        let error = ClientCredentials::new(csr.key_pem, cert, chain, String::new()).unwrap_err();
        assert!(error.to_string().contains("certificate chain"), "{error}");
    }

    #[test]
    fn a_chain_that_does_not_start_with_the_certificate_is_refused() {
        let ca = test_ca();
        let csr = generate_csr(&subject(), KeyAlgorithm::Rsa2048).unwrap();
        let cert = sign(&ca, &csr.csr_pem);
        let error = ClientCredentials::new(csr.key_pem, cert, ca.pem.clone(), ca.pem).unwrap_err();
        assert!(matches!(error, CertificateError::ChainMismatch), "{error}");
    }
}
