//! The Compass clients: the Connector (certificates) and the Director
//! (applications, runtime labels), both GraphQL over HTTPS.

pub mod connector;
pub mod director;
pub mod graphql;
pub mod metrics;
pub mod model;
pub mod paging;

pub use graphql::{GraphqlClient, TlsSettings};

/// What went wrong talking to Compass. Each text says only its own part;
/// the cause, where there is one, is the `source` (see `crate::report`).
#[derive(Debug, thiserror::Error)]
pub enum CompassError {
    #[error("Compass URL {url:?} is not valid")]
    InvalidUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("Compass URL {url:?} is not https")]
    UnsupportedScheme { url: String },
    #[error("Compass URL {url:?} is plain http: the agent reaches Compass over https only (APP_COMPASS_ALLOW_HTTP=true allows http, for development)")]
    PlainHttp { url: String },
    #[error("TLS setup failed: {what}")]
    Tls {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{operation}: no answer from {url} within the timeout")]
    Timeout {
        operation: &'static str,
        url: String,
    },
    #[error("{operation}: cannot reach {url}")]
    Unreachable {
        operation: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Compass refused the caller's credentials (a token or a client certificate).
    #[error("{operation}: Compass refused the credentials: {reason}")]
    Refused {
        operation: &'static str,
        reason: String,
    },
    #[error("{operation}: Compass answered with a redirect (HTTP {status}) to {location:?}, which the agent does not follow")]
    Redirect {
        operation: &'static str,
        status: u16,
        location: String,
    },
    #[error(
        "{operation}: the answer is larger than {limit} bytes (APP_COMPASS_MAX_RESPONSE_SIZE)"
    )]
    TooLarge { operation: &'static str, limit: u64 },
    #[error("{operation}: HTTP status {status}: {excerpt}")]
    HttpStatus {
        operation: &'static str,
        status: u16,
        excerpt: String,
    },
    #[error("{operation}: the answer is not JSON ({reason}): {excerpt}")]
    NotJson {
        operation: &'static str,
        reason: String,
        excerpt: String,
    },
    #[error("{operation}: GraphQL error: {}", messages.join("; "))]
    GraphQl {
        operation: &'static str,
        messages: Vec<String>,
    },
    #[error("{operation}: the answer has no data")]
    NullData { operation: &'static str },
    #[error("{operation}: the answer is not what was asked for: {reason}")]
    InvalidAnswer {
        operation: &'static str,
        reason: String,
    },
}

impl CompassError {
    /// Classifies a transport error. A TLS alert about our certificate means
    /// Compass refused it, which is not the same as a network failure.
    pub(crate) fn from_transport(
        operation: &'static str,
        url: &str,
        error: reqwest::Error,
    ) -> CompassError {
        if error.is_timeout() {
            return CompassError::Timeout {
                operation,
                url: url.to_string(),
            };
        }
        if let Some(alert) = certificate_alert(&error) {
            return CompassError::Refused {
                operation,
                reason: format!("the TLS handshake was refused: {alert}"),
            };
        }
        CompassError::Unreachable {
            operation,
            url: url.to_string(),
            source: error,
        }
    }

    /// Whether Compass refused our credentials (HTTP 401/403, a TLS alert).
    pub fn is_refusal(&self) -> bool {
        matches!(self, CompassError::Refused { .. })
    }

    /// Whether the request may well succeed when simply sent again: the
    /// network, a timeout, or an answer Compass did not finish (5xx, a body
    /// that is not JSON, no data). A GraphQL error or a refusal is an answer.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CompassError::Timeout { .. }
                | CompassError::Unreachable { .. }
                | CompassError::HttpStatus { .. }
                | CompassError::NotJson { .. }
                | CompassError::NullData { .. }
        )
    }

    /// A short, bounded category for metrics labels and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            CompassError::InvalidUrl { .. }
            | CompassError::UnsupportedScheme { .. }
            | CompassError::PlainHttp { .. } => "InvalidURL",
            CompassError::Tls { .. } => "TLSSetup",
            CompassError::Timeout { .. } => "Timeout",
            CompassError::Unreachable { .. } => "Unreachable",
            CompassError::Refused { .. } => "CredentialsRefused",
            CompassError::HttpStatus { .. } | CompassError::Redirect { .. } => "HTTPError",
            CompassError::TooLarge { .. } => "AnswerTooLarge",
            CompassError::NotJson { .. } => "MalformedAnswer",
            CompassError::GraphQl { .. } => "GraphQLError",
            CompassError::NullData { .. } => "NullData",
            CompassError::InvalidAnswer { .. } => "MalformedAnswer",
        }
    }
}

fn certificate_alert(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::AlertDescription as A;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(rustls::Error::AlertReceived(alert)) = current.downcast_ref::<rustls::Error>() {
            if matches!(
                alert,
                A::BadCertificate
                    | A::CertificateExpired
                    | A::CertificateRevoked
                    | A::CertificateUnknown
                    | A::UnknownCA
                    | A::CertificateRequired
                    | A::AccessDenied
            ) {
                return Some(format!("{alert:?}"));
            }
        }
        source = current.source();
    }
    None
}
