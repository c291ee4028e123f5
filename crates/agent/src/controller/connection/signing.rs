//! What establishing and maintaining do alike with a certificate: have a CSR
//! signed and check the answer, store the CA, and say what failed.

use jiff::Timestamp;

use crate::certificates::{self, ClientCredentials, KeyAlgorithm, Subject};
use crate::compass::connector::{ConnectorClient, CsrInfo};
use crate::controller::context::Context;
use crate::controller::decide::ConnectionOutcome;
use crate::controller::errors::{ConnectionError, MAX_ERROR_LEN};
use crate::controller::progress::Wait;
use crate::report::{bounded, report, Report};

/// The category of a failure to store the credentials.
const STORAGE_CATEGORY: &str = "CredentialsStorage";

/// A failure for the status: its bounded text and category.
pub(super) fn failed(error: &ConnectionError, credentials_gone: bool) -> ConnectionOutcome {
    failed_with_text(&report(error), error, credentials_gone)
}

pub(super) fn failed_with_text(
    text: &str,
    error: &ConnectionError,
    credentials_gone: bool,
) -> ConnectionOutcome {
    ConnectionOutcome::Failed {
        error: bounded(text, MAX_ERROR_LEN),
        category: error.category(),
        credentials_gone,
    }
}

/// Stores the CA; when that fails, keeps it to store at the next cycle and
/// says why. The client certificate, stored already, stays in use: the
/// token that bought it is spent.
pub(super) async fn store_ca(ctx: &Context, ca_pem: &str) -> Option<(String, &'static str)> {
    if ca_pem.trim().is_empty() {
        return None;
    }
    let saved = {
        let _waiting = ctx.progress.waiting(Wait::CredentialsSecrets);
        ctx.credentials.save_ca(ca_pem).await
    };
    match saved {
        Ok(()) => {
            ctx.remembered().set_unstored_ca(None);
            None
        }
        Err(error) => {
            tracing::warn!(error = %Report(&error), "cannot store the CA certificate; the client certificate is stored and in use; retrying at the next cycle");
            ctx.remembered().set_unstored_ca(Some(ca_pem.to_string()));
            let text = format!(
                "the CA certificate is not stored yet (the client certificate is stored and in use; retrying): {}",
                report(&error)
            );
            Some((bounded(&text, MAX_ERROR_LEN), STORAGE_CATEGORY))
        }
    }
}

/// Makes a key and CSR as the Connector asks, has it signed, and checks the
/// answer against the key and subject before anything is stored.
pub(super) async fn request_certificate(
    connector: &ConnectorClient,
    csr_info: &CsrInfo,
    token: Option<&str>,
) -> Result<ClientCredentials, ConnectionError> {
    let subject = Subject::parse(&csr_info.subject)
        .map_err(certificates::CertificateError::InvalidSubject)?;
    let algorithm = KeyAlgorithm::parse(&csr_info.key_algorithm)?;
    let for_key = subject.clone();
    let generated =
        tokio::task::spawn_blocking(move || certificates::generate_csr(&for_key, algorithm))
            .await
            .map_err(ConnectionError::KeyGenerationTask)??;
    let result = connector.sign_csr(&generated.csr_pem, token).await?;
    Ok(ClientCredentials::from_connector(
        generated.key_pem,
        &result.certificate_chain,
        &result.ca_certificate,
        &result.client_certificate,
        &subject,
        Timestamp::now(),
    )?)
}
