//! Certificate authorities: the client CA that signs runtimes' CSRs (and that
//! the mTLS endpoints trust), the server CA behind the HTTPS listeners, CSR
//! validation as the Connector does it, and the app-layer client certificate
//! check.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};
use x509_parser::public_key::PublicKey;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("cannot read the CA certificate: {0}")]
    BadCaCertificate(String),
}

/// A CA that can sign certificates. Its key never leaves this struct.
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

/// The subject the Connector hands out and checks in CSRs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub common_name: String,
    pub country: String,
    pub organization: String,
    pub organizational_unit: String,
    pub locality: String,
    pub province: String,
}

impl Subject {
    /// `O=..,OU=..,L=..,ST=..,C=..,CN=..`, the Connector's format and order.
    pub fn to_compass_string(&self) -> String {
        format!(
            "O={},OU={},L={},ST={},C={},CN={}",
            self.organization,
            self.organizational_unit,
            self.locality,
            self.province,
            self.country,
            self.common_name
        )
    }

    /// Parses the Connector's subject string (any order; values may be empty).
    pub fn parse(s: &str) -> Result<Subject, String> {
        let mut subject = Subject {
            common_name: String::new(),
            country: String::new(),
            organization: String::new(),
            organizational_unit: String::new(),
            locality: String::new(),
            province: String::new(),
        };
        for part in s.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("subject segment {part:?} has no '='"))?;
            let slot = match key.trim() {
                "CN" => &mut subject.common_name,
                "C" => &mut subject.country,
                "O" => &mut subject.organization,
                "OU" => &mut subject.organizational_unit,
                "L" => &mut subject.locality,
                "ST" => &mut subject.province,
                other => return Err(format!("unknown subject attribute {other:?}")),
            };
            *slot = value.trim().to_string();
        }
        Ok(subject)
    }

    pub fn distinguished_name(&self) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, self.organization.as_str());
        dn.push(
            DnType::OrganizationalUnitName,
            self.organizational_unit.as_str(),
        );
        dn.push(DnType::LocalityName, self.locality.as_str());
        dn.push(DnType::StateOrProvinceName, self.province.as_str());
        dn.push(DnType::CountryName, self.country.as_str());
        dn.push(DnType::CommonName, self.common_name.as_str());
        dn
    }
}

/// A CSR that passed every check; only its public key is used for signing.
pub struct ValidCsr {
    spki: rcgen::SubjectPublicKeyInfo,
}

/// Decodes and checks a CSR the way the Connector does (base64 → PEM → PKCS#10,
/// signature, then CN, C, O, OU, L, ST), plus the key algorithm when `strict`.
/// The error text is what the Connector answers.
pub fn validate_csr(
    csr_base64: &str,
    expected: &Subject,
    key_algorithm: &str,
    strict: bool,
) -> Result<ValidCsr, String> {
    let pem_bytes = base64::engine::general_purpose::STANDARD
        .decode(csr_base64.trim())
        .map_err(|_| "Error while parsing base64 content. Incorrect value provided.".to_string())?;
    let block =
        pem::parse(&pem_bytes).map_err(|_| "Error while decoding pem block.".to_string())?;
    let (_, csr) = X509CertificationRequest::from_der(block.contents())
        .map_err(|e| format!("Error while parsing CSR: {e}"))?;
    csr.verify_signature()
        .map_err(|e| format!("CSR signature invalid: {e}"))?;
    check_subject(&csr, expected)?;
    let info = &csr.certification_request_info;
    if strict {
        check_key_algorithm(&info.subject_pki, key_algorithm)?;
    }
    let spki = rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
        .map_err(|e| format!("CSR: unsupported public key: {e}"))?;
    Ok(ValidCsr { spki })
}

fn check_subject(csr: &X509CertificationRequest<'_>, expected: &Subject) -> Result<(), String> {
    let name = &csr.certification_request_info.subject;
    fn first<'a>(
        mut it: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
    ) -> Option<String> {
        it.next().map(|a| a.as_str().unwrap_or("").to_string())
    }
    if first(name.iter_common_name()).unwrap_or_default() != expected.common_name {
        return Err("CSR: Invalid common name provided.".into());
    }
    let checks: [(Option<String>, &str, &str); 5] = [
        (first(name.iter_country()), &expected.country, "country"),
        (
            first(name.iter_organization()),
            &expected.organization,
            "organization",
        ),
        (
            first(name.iter_organizational_unit()),
            &expected.organizational_unit,
            "organizational unit",
        ),
        (first(name.iter_locality()), &expected.locality, "locality"),
        (
            first(name.iter_state_or_province()),
            &expected.province,
            "province",
        ),
    ];
    for (found, want, what) in checks {
        match found {
            None => return Err(format!("CSR: No {what} provided.")),
            Some(v) if v != want => return Err(format!("CSR: Invalid {what} provided.")),
            Some(_) => {}
        }
    }
    Ok(())
}

fn check_key_algorithm(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
    key_algorithm: &str,
) -> Result<(), String> {
    let wanted_bits = match key_algorithm {
        "rsa2048" => 2048,
        "rsa4096" => 4096,
        other => {
            return Err(format!(
                "CSR: compass-sim (strict) cannot check key algorithm {other:?}"
            ))
        }
    };
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = modulus_bits(rsa.modulus);
            if bits != wanted_bits {
                return Err(format!(
                    "CSR: Invalid key: {key_algorithm} was asked for, the CSR has a {bits}-bit RSA key."
                ));
            }
            Ok(())
        }
        Ok(_) | Err(_) => Err(format!(
            "CSR: Invalid key: {key_algorithm} was asked for, the CSR's key is not RSA."
        )),
    }
}

fn modulus_bits(modulus: &[u8]) -> usize {
    let trimmed: &[u8] = match modulus.iter().position(|b| *b != 0) {
        Some(i) => &modulus[i..],
        None => return 0,
    };
    trimmed.len() * 8 - trimmed[0].leading_zeros() as usize
}

/// The serial number of every client certificate, as the Connector sets it.
pub const CLIENT_CERTIFICATE_SERIAL: u8 = 2;

/// Lower-case hex of the SHA-1 of a certificate's DER: what tells one client
/// certificate from another, since they share their serial number.
pub fn fingerprint(der: &[u8]) -> String {
    use sha1::Digest as _;
    hex::encode(sha1::Sha1::digest(der))
}

/// A client certificate as issued: PEM, fingerprint, serial and validity.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub pem: String,
    pub fingerprint: String,
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl CertificateAuthority {
    /// A new self-signed RSA-2048 CA (as Compass's is RSA).
    pub fn generate_rsa(common_name: &str) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
        Self::self_signed(common_name, key)
    }

    /// A new self-signed ECDSA P-256 CA (fast; used for the server CA).
    pub fn generate_ecdsa(common_name: &str) -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        Self::self_signed(common_name, key)
    }

    fn self_signed(common_name: &str, key: KeyPair) -> Result<Self, CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "compass-sim");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + Duration::from_secs(10 * 365 * 24 * 3600)).into();
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and private key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem)?;
        let block = pem::parse(cert_pem).map_err(|e| CaError::BadCaCertificate(e.to_string()))?;
        let cert_der = block.contents().to_vec();
        X509Certificate::from_der(&cert_der)
            .map_err(|e| CaError::BadCaCertificate(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), key)?;
        Ok(Self {
            cert_pem: pem::encode_config(
                &pem::Pem::new("CERTIFICATE", cert_der.clone()),
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            ),
            cert_der,
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Signs a validated CSR for `subject`, valid from `now` for `validity`, for
    /// client authentication.
    pub fn sign_client_certificate(
        &self,
        csr: &ValidCsr,
        subject: &Subject,
        now: SystemTime,
        validity: Duration,
    ) -> Result<IssuedCertificate, CaError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject.distinguished_name();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        // The Connector gives every client certificate the serial number 2.
        params.serial_number = Some(SerialNumber::from_slice(&[CLIENT_CERTIFICATE_SERIAL]));
        // X.509 times have whole seconds; round so the stored times are the cert's.
        let not_before = truncate_to_seconds(now);
        let not_after = truncate_to_seconds(now + validity);
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let cert = params.signed_by(&csr.spki, &self.issuer)?;
        Ok(IssuedCertificate {
            pem: cert.pem(),
            fingerprint: fingerprint(cert.der()),
            serial: hex::encode([CLIENT_CERTIFICATE_SERIAL]),
            not_before,
            not_after,
        })
    }

    /// Issues a TLS server certificate for `names` (DNS names or IP addresses),
    /// returning (certificate PEM, certificate DER, private key DER (PKCS#8)).
    pub fn issue_server_certificate(
        &self,
        names: &[String],
    ) -> Result<(String, Vec<u8>, Vec<u8>), CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for name in names {
            params.subject_alt_names.push(match name.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into()?),
            });
        }
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().map(String::as_str).unwrap_or("localhost"),
        );
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + Duration::from_secs(2 * 365 * 24 * 3600)).into();
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), cert.der().to_vec(), key.serialize_der()))
    }

    /// Checks a presented client certificate against this CA, the revocation
    /// list (by fingerprint) and the clock.
    pub fn check_client_certificate(
        &self,
        der: Option<&[u8]>,
        is_revoked: impl Fn(&str) -> bool,
        now: SystemTime,
    ) -> Result<ClientIdentity, CertRefusal> {
        let der = der.ok_or(CertRefusal::Missing)?;
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| CertRefusal::Unparsable(e.to_string()))?;
        let (_, ca) = X509Certificate::from_der(&self.cert_der)
            .map_err(|e| CertRefusal::Unparsable(format!("the CA itself: {e}")))?;
        if cert.issuer().as_raw() != ca.subject().as_raw()
            || cert.verify_signature(Some(ca.public_key())).is_err()
        {
            return Err(CertRefusal::NotFromCurrentCa);
        }
        let serial = hex::encode(cert.raw_serial());
        let fingerprint = fingerprint(der);
        // A revoked certificate keeps working until it expires; it can no
        // longer be renewed (the Connector checks). See README, "Where it
        // still differs".
        let revoked = is_revoked(&fingerprint);
        let not_before = unix(cert.validity().not_before.timestamp());
        let not_after = unix(cert.validity().not_after.timestamp());
        if now < not_before {
            return Err(CertRefusal::NotYetValid { not_before });
        }
        if now >= not_after {
            return Err(CertRefusal::Expired { not_after });
        }
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .filter(|cn| !cn.is_empty())
            .ok_or(CertRefusal::NoCommonName)?
            .to_string();
        Ok(ClientIdentity {
            common_name,
            fingerprint,
            serial,
            not_after,
            revoked,
        })
    }
}

/// A valid client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate's CN: the SystemAuth it was issued for.
    pub common_name: String,
    /// See [`fingerprint`].
    pub fingerprint: String,
    /// Lower-case hex of the serial number.
    pub serial: String,
    pub not_after: SystemTime,
    /// Revoked: it still authenticates, but is not renewed.
    pub revoked: bool,
}

/// Why the mTLS endpoints refuse a client certificate: HTTP 401, but for a
/// certificate of another (e.g. a rotated-out) CA, which Compass answers with
/// a GraphQL error at HTTP 200; and why a revoked one is not renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertRefusal {
    Missing,
    Unparsable(String),
    NotFromCurrentCa,
    Revoked {
        fingerprint: String,
    },
    NotYetValid {
        not_before: SystemTime,
    },
    Expired {
        not_after: SystemTime,
    },
    NoCommonName,
    /// The CN names no SystemAuth: the gateway cannot tell who calls.
    UnknownSystemAuth {
        common_name: String,
    },
}

impl fmt::Display for CertRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertRefusal::Missing => write!(
                f,
                "no client certificate was presented; this endpoint needs the runtime's client certificate"
            ),
            CertRefusal::Unparsable(e) => {
                write!(f, "the client certificate could not be parsed: {e}")
            }
            CertRefusal::NotFromCurrentCa => write!(
                f,
                "the client certificate was not issued by the current client CA (was the CA rotated?)"
            ),
            CertRefusal::Revoked { fingerprint } => {
                write!(
                    f,
                    "the client certificate (SHA-1 {fingerprint}) has been revoked"
                )
            }
            CertRefusal::NotYetValid { not_before } => write!(
                f,
                "the client certificate is not valid before {}",
                crate::clock::rfc3339(*not_before)
            ),
            CertRefusal::Expired { not_after } => write!(
                f,
                "the client certificate expired at {}",
                crate::clock::rfc3339(*not_after)
            ),
            CertRefusal::NoCommonName => {
                write!(f, "the client certificate has no common name (SystemAuth id)")
            }
            CertRefusal::UnknownSystemAuth { common_name } => write!(
                f,
                "the client certificate's common name {common_name:?} is no SystemAuth (was its runtime deleted?)"
            ),
        }
    }
}

fn unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// 16 random bytes; the first in 1..=127 so the DER integer keeps every byte.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

/// base64 of a PEM text, the Connector's encoding of every certificate field.
pub fn base64_pem(pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(pem.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(cn: &str) -> Subject {
        Subject::parse(&format!(
            "O=Org,OU=OrgUnit,L=Locality,ST=State,C=PL,CN={cn}"
        ))
        .unwrap()
    }

    fn csr_b64(subject: &Subject, key: &KeyPair) -> String {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject.distinguished_name();
        let csr = params.serialize_request(key).unwrap();
        base64_pem(&csr.pem().unwrap())
    }

    #[test]
    fn subject_string_round_trips_in_the_connectors_order() {
        let s = subject("rt-1");
        assert_eq!(
            s.to_compass_string(),
            "O=Org,OU=OrgUnit,L=Locality,ST=State,C=PL,CN=rt-1"
        );
        assert_eq!(Subject::parse(&s.to_compass_string()).unwrap(), s);
    }

    #[test]
    fn subject_parsing_refuses_segments_without_equals_sign() {
        assert!(Subject::parse("O=Org,OU").unwrap_err().contains("no '='"));
    }

    #[test]
    fn a_csr_with_the_handed_out_subject_passes() {
        let key = KeyPair::generate().unwrap();
        let s = subject("rt-1");
        assert!(validate_csr(&csr_b64(&s, &key), &s, "rsa2048", false).is_ok());
    }

    #[test]
    fn each_wrong_subject_field_is_named() {
        let key = KeyPair::generate().unwrap();
        let want = subject("rt-1");
        let cases = [
            ("CN", "CSR: Invalid common name provided."),
            ("C", "CSR: Invalid country provided."),
            ("O", "CSR: Invalid organization provided."),
            ("OU", "CSR: Invalid organizational unit provided."),
            ("L", "CSR: Invalid locality provided."),
            ("ST", "CSR: Invalid province provided."),
        ];
        for (field, message) in cases {
            let mut wrong = want.clone();
            match field {
                "CN" => wrong.common_name = "other".into(),
                "C" => wrong.country = "DE".into(),
                "O" => wrong.organization = "x".into(),
                "OU" => wrong.organizational_unit = "x".into(),
                "L" => wrong.locality = "x".into(),
                _ => wrong.province = "x".into(),
            }
            let err = validate_csr(&csr_b64(&wrong, &key), &want, "rsa2048", false)
                .err()
                .unwrap();
            assert_eq!(err, message, "field {field}");
        }
    }

    #[test]
    fn a_missing_country_is_reported_as_missing() {
        let key = KeyPair::generate().unwrap();
        let want = subject("rt-1");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "rt-1");
        params.distinguished_name = dn;
        let csr = base64_pem(&params.serialize_request(&key).unwrap().pem().unwrap());
        let err = validate_csr(&csr, &want, "rsa2048", false).err().unwrap();
        assert_eq!(err, "CSR: No country provided.");
    }

    #[test]
    fn garbage_is_refused_at_the_right_step() {
        let want = subject("rt-1");
        let not_b64 = validate_csr("%%%", &want, "rsa2048", false).err().unwrap();
        assert!(not_b64.contains("base64"), "{not_b64}");
        let not_pem = validate_csr(&base64_pem("hello"), &want, "rsa2048", false)
            .err()
            .unwrap();
        assert!(not_pem.contains("pem block"), "{not_pem}");
        let not_csr = validate_csr(
            &base64_pem(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            ),
            &want,
            "rsa2048",
            false,
        )
        .err()
        .unwrap();
        assert!(not_csr.contains("parsing CSR"), "{not_csr}");
    }

    #[test]
    fn strict_mode_checks_the_key_algorithm() {
        let ec = KeyPair::generate().unwrap();
        let s = subject("rt-1");
        let err = validate_csr(&csr_b64(&s, &ec), &s, "rsa2048", true)
            .err()
            .unwrap();
        assert!(err.contains("not RSA"), "{err}");
        let rsa = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        assert!(validate_csr(&csr_b64(&s, &rsa), &s, "rsa2048", true).is_ok());
        let err = validate_csr(&csr_b64(&s, &rsa), &s, "rsa4096", true)
            .err()
            .unwrap();
        assert!(err.contains("2048-bit"), "{err}");
    }

    #[test]
    fn modulus_bits_ignore_the_sign_byte() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x01, 0x00]), 9);
        assert_eq!(modulus_bits(&[]), 0);
    }

    #[test]
    fn issued_certificates_are_checked_against_ca_revocation_and_time() {
        let ca = CertificateAuthority::generate_ecdsa("test client CA").unwrap();
        let key = KeyPair::generate().unwrap();
        let s = subject("rt-1");
        let csr = validate_csr(&csr_b64(&s, &key), &s, "rsa2048", false).unwrap();
        let now = SystemTime::now();
        let issued = ca
            .sign_client_certificate(&csr, &s, now, Duration::from_secs(60))
            .unwrap();
        let der = pem::parse(&issued.pem).unwrap().into_contents();

        let id = ca
            .check_client_certificate(Some(&der), |_| false, now)
            .unwrap();
        assert_eq!(id.common_name, "rt-1");
        assert_eq!(id.fingerprint, issued.fingerprint);
        assert_eq!(id.serial, "02", "the Connector's serial number");

        assert!(!id.revoked);
        let revoked = ca
            .check_client_certificate(Some(&der), |f| f == issued.fingerprint, now)
            .unwrap();
        assert!(revoked.revoked, "a revoked certificate still authenticates");
        assert!(matches!(
            ca.check_client_certificate(Some(&der), |_| false, now + Duration::from_secs(61)),
            Err(CertRefusal::Expired { .. })
        ));
        let other = CertificateAuthority::generate_ecdsa("test client CA").unwrap();
        assert_eq!(
            other.check_client_certificate(Some(&der), |_| false, now),
            Err(CertRefusal::NotFromCurrentCa)
        );
        assert_eq!(
            ca.check_client_certificate(None, |_| false, now),
            Err(CertRefusal::Missing)
        );
    }

    #[test]
    fn a_ca_loads_from_its_pem_files_and_keeps_signing() {
        let key = KeyPair::generate().unwrap();
        let key_pem = key.serialize_pem();
        let original = CertificateAuthority::self_signed("loaded CA", key).unwrap();
        let loaded = CertificateAuthority::from_pem(original.cert_pem(), &key_pem).unwrap();
        let s = subject("rt-2");
        let client_key = KeyPair::generate().unwrap();
        let csr = validate_csr(&csr_b64(&s, &client_key), &s, "rsa2048", false).unwrap();
        let issued = loaded
            .sign_client_certificate(&csr, &s, SystemTime::now(), Duration::from_secs(60))
            .unwrap();
        let der = pem::parse(&issued.pem).unwrap().into_contents();
        assert!(original
            .check_client_certificate(Some(&der), |_| false, SystemTime::now())
            .is_ok());
    }
}
