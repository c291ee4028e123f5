//! Client certificates: the subject the Connector asks for, keys and CSRs, and
//! the checks a certificate passes before the agent stores or uses it.

pub mod credentials;
pub mod keys;
pub mod renewal;
pub mod subject;

pub use credentials::{CertificateInfo, ClientCredentials};
pub use keys::{generate_csr, CsrWithKey, KeyAlgorithm};
pub use subject::{Subject, SubjectError};

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("the Connector asked for key algorithm {0:?}, which the agent does not support (supported: rsa2048, rsa4096)")]
    UnsupportedKeyAlgorithm(String),
    #[error("cannot generate a private key")]
    KeyGeneration(#[source] rcgen::Error),
    #[error("cannot create the certificate signing request")]
    CsrGeneration(#[source] rcgen::Error),
    #[error("the private key is not a valid PEM key")]
    InvalidKey(#[source] rcgen::Error),
    /// It does not parse.
    #[error("the {what} cannot be read")]
    Unreadable {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// It parses, but is not what it must be.
    #[error("the {what} is not valid: {reason}")]
    InvalidCertificate { what: &'static str, reason: String },
    #[error("the Connector's {field} is not base64")]
    InvalidEncoding {
        field: &'static str,
        #[source]
        source: base64::DecodeError,
    },
    #[error("the Connector's {field} is not base64 of PEM text")]
    NotText { field: &'static str },
    #[error("the certificate subject from the Connector is not valid")]
    InvalidSubject(#[source] subject::SubjectError),
    #[error("the client certificate does not belong to the private key")]
    KeyMismatch,
    #[error("the certificate chain does not start with the client certificate")]
    ChainMismatch,
    #[error(
        "the certificate was issued for {found:?}, not for the asked common name {expected:?}"
    )]
    SubjectMismatch { expected: String, found: String },
    #[error(
        "the new certificate is not valid now: it is valid from {not_before} until {not_after}"
    )]
    NotValidNow {
        not_before: jiff::Timestamp,
        not_after: jiff::Timestamp,
    },
}
