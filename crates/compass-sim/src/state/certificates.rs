//! The client certificates: CSRs signed for a SystemAuth (its id the CN,
//! the serial number 2, as the Connector signs them), checked on the mTLS
//! endpoints, revoked by fingerprint; and the client CA, which can be rotated.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Shared, SimError, SystemAuthIdentity};
use crate::ca::{self, CertRefusal, CertificateAuthority, ClientIdentity};
use crate::clock::rfc3339;

/// A client certificate compass-sim issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateInfo {
    /// Lower-case hex of the SHA-1 of the certificate's DER: what tells
    /// certificates apart (they all have the serial number 2, as Compass's).
    pub fingerprint: String,
    /// Lower-case hex.
    pub serial: String,
    /// The certificate's CN: the SystemAuth its one-time token belonged to.
    pub system_auth: String,
    pub runtime_id: String,
    pub not_before: String,
    pub not_after: String,
    pub revoked: bool,
    /// Which client CA signed it (1 = the first; each rotation adds one).
    pub ca_generation: u32,
}

/// The Connector's `CertificationResult`, each field base64 of PEM.
#[derive(Debug, Clone)]
pub struct CertificationResult {
    pub certificate_chain: String,
    pub ca_certificate: String,
    pub client_certificate: String,
}

pub(super) struct CertRecord {
    serial: String,
    system_auth: String,
    runtime_id: String,
    not_before: SystemTime,
    not_after: SystemTime,
    revoked: bool,
    ca_generation: u32,
}

pub(crate) struct ClientCa {
    pub ca: CertificateAuthority,
    pub generation: u32,
}

impl Shared {
    pub fn client_ca(&self) -> Arc<ClientCa> {
        self.client_ca
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn client_ca_pem(&self) -> String {
        self.client_ca().ca.cert_pem().to_string()
    }

    /// Checks and signs a CSR for a SystemAuth; the error is what the
    /// Connector answers.
    pub fn sign_csr(
        &self,
        identity: &SystemAuthIdentity,
        csr: &str,
    ) -> Result<CertificationResult, String> {
        const PREFIX: &str = "Error while signing Certificate Signing Request";
        let runtime_id = &identity.runtime_id;
        let (subject, key_algorithm, settings) = {
            let state = self.state();
            let rt = state
                .runtimes
                .get(runtime_id)
                .ok_or_else(|| format!("{PREFIX}: runtime {runtime_id:?} does not exist"))?;
            (
                rt.subject(&identity.system_auth),
                rt.key_algorithm(),
                state.settings,
            )
        };
        let valid = ca::validate_csr(csr, &subject, &key_algorithm, settings.strict)
            .map_err(|e| format!("{PREFIX}: {e}"))?;
        let client_ca = self.client_ca();
        let issued = client_ca
            .ca
            .sign_client_certificate(&valid, &subject, self.clock.now(), settings.cert_validity)
            .map_err(|e| format!("{PREFIX}: {e}"))?;
        self.state().certificates.insert(
            issued.fingerprint.clone(),
            CertRecord {
                serial: issued.serial.clone(),
                system_auth: identity.system_auth.clone(),
                runtime_id: runtime_id.clone(),
                not_before: issued.not_before,
                not_after: issued.not_after,
                revoked: false,
                ca_generation: client_ca.generation,
            },
        );
        let ca_pem = client_ca.ca.cert_pem();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        Ok(CertificationResult {
            certificate_chain: b64(&format!("{}{}", issued.pem, ca_pem)),
            ca_certificate: b64(ca_pem),
            client_certificate: b64(&issued.pem),
        })
    }

    pub fn check_client_certificate(
        &self,
        der: Option<&[u8]>,
    ) -> Result<ClientIdentity, CertRefusal> {
        self.client_ca().ca.check_client_certificate(
            der,
            |fingerprint| {
                self.state()
                    .certificates
                    .get(fingerprint)
                    .is_some_and(|c| c.revoked)
            },
            self.clock.now(),
        )
    }

    /// Revokes one certificate by its fingerprint (hex, colons and case
    /// ignored).
    pub fn revoke_certificate(&self, fingerprint: &str) -> Result<(), SimError> {
        let fingerprint = fingerprint.to_ascii_lowercase().replace(':', "");
        let mut state = self.state();
        let cert = state
            .certificates
            .get_mut(&fingerprint)
            .ok_or(SimError::UnknownCertificate(fingerprint))?;
        cert.revoked = true;
        Ok(())
    }

    /// Revokes every certificate of a runtime; returns how many were revoked.
    pub fn revoke_runtime_certificates(&self, runtime_id: &str) -> Result<usize, SimError> {
        let mut state = self.state();
        if !state.runtimes.contains_key(runtime_id) {
            return Err(SimError::UnknownRuntime(runtime_id.to_string()));
        }
        let mut count = 0;
        for cert in state.certificates.values_mut() {
            if cert.runtime_id == runtime_id && !cert.revoked {
                cert.revoked = true;
                count += 1;
            }
        }
        Ok(count)
    }

    pub fn certificates(&self) -> Vec<CertificateInfo> {
        self.state()
            .certificates
            .iter()
            .map(|(fingerprint, c)| CertificateInfo {
                fingerprint: fingerprint.clone(),
                serial: c.serial.clone(),
                system_auth: c.system_auth.clone(),
                runtime_id: c.runtime_id.clone(),
                not_before: rfc3339(c.not_before),
                not_after: rfc3339(c.not_after),
                revoked: c.revoked,
                ca_generation: c.ca_generation,
            })
            .collect()
    }

    /// Replaces the client CA with a new one; returns the new CA's PEM.
    pub fn rotate_ca(&self) -> Result<String, SimError> {
        let next = CertificateAuthority::generate_rsa("compass-sim client CA")?;
        let pem = next.cert_pem().to_string();
        let mut guard = self.client_ca.write().unwrap_or_else(|p| p.into_inner());
        let generation = guard.generation + 1;
        *guard = Arc::new(ClientCa {
            ca: next,
            generation,
        });
        Ok(pem)
    }
}
