//! Private keys and certificate signing requests.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, RsaKeySize, PKCS_RSA_SHA256};
use zeroize::Zeroizing;

use super::subject::Subject;
use super::CertificateError;

/// The key the Connector asks for in `certificateSigningRequestInfo.keyAlgorithm`.
/// The original agent ignores it and always makes RSA-4096 keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rsa2048,
    Rsa4096,
}

impl KeyAlgorithm {
    pub fn parse(value: &str) -> Result<KeyAlgorithm, CertificateError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "rsa2048" => Ok(KeyAlgorithm::Rsa2048),
            "rsa4096" => Ok(KeyAlgorithm::Rsa4096),
            _ => Err(CertificateError::UnsupportedKeyAlgorithm(
                value.chars().take(64).collect(),
            )),
        }
    }

    pub fn bits(self) -> usize {
        match self {
            KeyAlgorithm::Rsa2048 => 2048,
            KeyAlgorithm::Rsa4096 => 4096,
        }
    }
}

/// A fresh key pair and a CSR for it, PEM-encoded.
pub struct CsrWithKey {
    /// PEM PKCS#10 request.
    pub csr_pem: String,
    /// PEM PKCS#8 private key. Never logged; wiped from memory when dropped.
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for CsrWithKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrWithKey")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Generates a key of the asked algorithm and a CSR carrying exactly the
/// subject the Connector handed out. RSA key generation takes from tens of
/// milliseconds (2048) to seconds (4096): call it off the async executor.
pub fn generate_csr(
    subject: &Subject,
    algorithm: KeyAlgorithm,
) -> Result<CsrWithKey, CertificateError> {
    let size = match algorithm {
        KeyAlgorithm::Rsa2048 => RsaKeySize::_2048,
        KeyAlgorithm::Rsa4096 => RsaKeySize::_4096,
    };
    let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, size)
        .map_err(CertificateError::KeyGeneration)?;
    Ok(CsrWithKey {
        csr_pem: csr_pem_for_key(subject, &key)?,
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

/// A PEM CSR carrying exactly `subject`, signed by an existing `key` (what
/// [`generate_csr`] does after making the key; lets the CSR encoding be tested
/// and fuzzed without paying for a new RSA key each time).
pub fn csr_pem_for_key(subject: &Subject, key: &KeyPair) -> Result<String, CertificateError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(subject);
    let csr = params
        .serialize_request(key)
        .map_err(CertificateError::CsrGeneration)?;
    csr.pem().map_err(CertificateError::CsrGeneration)
}

/// The attributes in the order the Connector lists them; empty values are left
/// out, since an empty attribute is the same as none to the Connector's check.
fn distinguished_name(subject: &Subject) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for (kind, value) in [
        (DnType::OrganizationName, &subject.organization),
        (DnType::OrganizationalUnitName, &subject.organizational_unit),
        (DnType::LocalityName, &subject.locality),
        (DnType::StateOrProvinceName, &subject.province),
        (DnType::CountryName, &subject.country),
        (DnType::CommonName, &subject.common_name),
    ] {
        if !value.is_empty() {
            name.push(kind, value.as_str());
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn key_algorithms_of_the_connector_are_understood() {
        assert_eq!(
            KeyAlgorithm::parse("rsa2048").unwrap(),
            KeyAlgorithm::Rsa2048
        );
        assert_eq!(
            KeyAlgorithm::parse("RSA4096").unwrap(),
            KeyAlgorithm::Rsa4096
        );
        let error = KeyAlgorithm::parse("ecdsa-p256").unwrap_err().to_string();
        assert!(
            error.contains("ecdsa-p256") && error.contains("rsa2048"),
            "{error}"
        );
    }

    #[test]
    fn the_csr_carries_the_subject_and_a_key_of_the_asked_size() {
        let subject =
            Subject::parse("O=Org,OU=OrgUnit,L=Locality,ST=State,C=PL,CN=runtime-1").unwrap();
        let generated = generate_csr(&subject, KeyAlgorithm::Rsa2048).unwrap();
        let pem = ::pem::parse(&generated.csr_pem).unwrap();
        let (_, csr) = X509CertificationRequest::from_der(pem.contents()).unwrap();
        csr.verify_signature()
            .expect("the CSR is signed by its key");
        let info = &csr.certification_request_info;
        let cn: Vec<_> = info
            .subject
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        let country: Vec<_> = info
            .subject
            .iter_country()
            .map(|a| a.as_str().unwrap())
            .collect();
        let unit: Vec<_> = info
            .subject
            .iter_organizational_unit()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            (cn, country, unit),
            (vec!["runtime-1"], vec!["PL"], vec!["OrgUnit"])
        );
        match info.subject_pki.parsed().unwrap() {
            x509_parser::public_key::PublicKey::RSA(rsa) => assert_eq!(rsa.key_size(), 2048),
            other => panic!("expected an RSA key, found {other:?}"),
        }
        assert!(generated.key_pem.contains("PRIVATE KEY"));
        assert!(
            !format!("{generated:?}").contains("PRIVATE KEY"),
            "Debug must not print the key"
        );
    }
}
