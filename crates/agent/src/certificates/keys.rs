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
    /// PEM PKCS#1 private key (`RSA PRIVATE KEY`, the form the original
    /// agent reads and writes). Never logged; wiped from memory when dropped.
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
        key_pem: rsa_key_as_pkcs1_pem(&key.serialize_pem())?,
    })
}

/// The PEM tag of a PKCS#1 RSA key, the only key form the original agent reads
/// (`x509.ParsePKCS1PrivateKey`; any other block ends its start fatally).
pub const PKCS1_RSA_TAG: &str = "RSA PRIVATE KEY";
const PKCS8_TAG: &str = "PRIVATE KEY";
/// rsaEncryption, the algorithm of an RSA key in a PKCS#8 envelope.
const RSA_ENCRYPTION_OID: &str = "1.2.840.113549.1.1.1";

/// An RSA key in PKCS#8 PEM (`PRIVATE KEY`) rewritten as PKCS#1 PEM (`RSA
/// PRIVATE KEY`): the same key, taken out of its PKCS#8 envelope, so that the
/// original agent can read it after a swap back. Any other key (PKCS#1
/// already, or not RSA) comes back unchanged. The key bytes pass only through
/// buffers that are wiped when dropped.
pub fn rsa_key_as_pkcs1_pem(key_pem: &str) -> Result<Zeroizing<String>, CertificateError> {
    let unchanged = || Ok(Zeroizing::new(key_pem.to_string()));
    let block = match ::pem::parse(key_pem) {
        Ok(block) if block.tag() == PKCS8_TAG => Zeroizing::new(block.into_contents()),
        _ => return unchanged(),
    };
    // A block that is not PKCS#8 after all is left for the key check to judge.
    match pkcs1_of_pkcs8_rsa(&block).ok().flatten() {
        Some(pkcs1) => Ok(Zeroizing::new(::pem::encode_config(
            &::pem::Pem::new(PKCS1_RSA_TAG, pkcs1.to_vec()),
            ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
        ))),
        None => unchanged(),
    }
}

/// The `privateKey` of a PKCS#8 `PrivateKeyInfo` whose algorithm is
/// rsaEncryption: that octet string is the PKCS#1 `RSAPrivateKey`. `None` for
/// a key of another algorithm.
fn pkcs1_of_pkcs8_rsa(pkcs8_der: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, CertificateError> {
    use x509_parser::der_parser::asn1_rs::{FromDer, Integer, OctetString, Sequence};
    use x509_parser::x509::AlgorithmIdentifier;
    let unreadable = |reason: String| CertificateError::Unreadable {
        what: "private key",
        source: format!("not a PKCS#8 private key: {reason}").into(),
    };
    let (_, info) = Sequence::from_der(pkcs8_der).map_err(|e| unreadable(e.to_string()))?;
    let (rest, _version) =
        Integer::from_der(&info.content).map_err(|e| unreadable(e.to_string()))?;
    let (rest, algorithm) =
        AlgorithmIdentifier::from_der(rest).map_err(|e| unreadable(e.to_string()))?;
    if algorithm.algorithm.to_id_string() != RSA_ENCRYPTION_OID {
        return Ok(None);
    }
    let (_, key) = OctetString::from_der(rest).map_err(|e| unreadable(e.to_string()))?;
    Ok(Some(Zeroizing::new(key.as_cow().to_vec())))
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
    fn a_pkcs8_rsa_key_becomes_the_same_key_in_pkcs1() {
        let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
        let pkcs1 = rsa_key_as_pkcs1_pem(&key.serialize_pem()).unwrap();
        let block = ::pem::parse(pkcs1.as_str()).unwrap();
        assert_eq!(block.tag(), PKCS1_RSA_TAG);
        // The same key: rcgen reads the PKCS#1 form back to the same public key.
        let again = KeyPair::from_pem(&pkcs1).unwrap();
        assert_eq!(again.public_key_raw(), key.public_key_raw());
        // Already PKCS#1: unchanged.
        assert_eq!(*rsa_key_as_pkcs1_pem(&pkcs1).unwrap(), *pkcs1);
    }

    #[test]
    fn a_key_of_another_algorithm_is_left_as_it_is() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = key.serialize_pem();
        assert_eq!(*rsa_key_as_pkcs1_pem(&pem).unwrap(), pem);
    }

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
        assert!(
            generated
                .key_pem
                .starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
            "the original agent reads PKCS#1 only"
        );
        assert!(
            !format!("{generated:?}").contains("PRIVATE KEY"),
            "Debug must not print the key"
        );
    }
}
