//! Certificate authorities: the client CA that signs runtimes' CSRs (and that
//! the mTLS endpoints trust) and the server CA behind the HTTPS listeners.
//! The subject the Connector hands out, its CSR checks and the check of a
//! presented client certificate live in their own modules.

mod client_check;
mod csr;
mod subject;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use x509_parser::prelude::{FromDer, X509Certificate};

pub use client_check::{fingerprint, CertRefusal, ClientIdentity};
pub use csr::{validate_csr, ValidCsr};
pub use subject::Subject;

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

/// The serial number of every client certificate, as the Connector sets it.
pub const CLIENT_CERTIFICATE_SERIAL: u8 = 2;

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

    pub(super) fn subject(cn: &str) -> Subject {
        Subject::parse(&format!(
            "O=Org,OU=OrgUnit,L=Locality,ST=State,C=PL,CN={cn}"
        ))
        .unwrap()
    }

    pub(super) fn csr_b64(subject: &Subject, key: &KeyPair) -> String {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject.distinguished_name();
        let csr = params.serialize_request(key).unwrap();
        base64_pem(&csr.pem().unwrap())
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
