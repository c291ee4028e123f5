//! A client certificate presented on the mTLS endpoints, checked against the
//! current client CA, the revocation list (by fingerprint) and the clock; and
//! why one is refused.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::prelude::{FromDer, X509Certificate};

use super::CertificateAuthority;

/// Lower-case hex of the SHA-1 of a certificate's DER: what tells one client
/// certificate from another, since they share their serial number.
pub fn fingerprint(der: &[u8]) -> String {
    use sha1::Digest as _;
    hex::encode(sha1::Sha1::digest(der))
}

impl CertificateAuthority {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::tests::{csr_b64, subject};
    use crate::ca::validate_csr;
    use rcgen::KeyPair;

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
}
