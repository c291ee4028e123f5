//! Establishing the connection with the one-time token (`establish`), and
//! maintaining it with the stored certificate, renewing it when due
//! (`maintain`); what both do with a certificate (`signing`) and with the
//! token (`token`).
//!
//! A certificate that is still valid is kept, whatever Compass answers: a
//! refusal may pass (an ingress or auth proxy misbehaving for a while), so
//! maintenance is retried with it. Only a certificate that can no longer
//! work (expired, gone from its Secret) sends the agent back to the
//! configured token. The operator's way out of a certificate Compass will
//! not renew (revoked, or from a rotated CA) is a new one-time token in the
//! configuration source: when maintenance fails and the token there is not
//! the one last presented, the agent connects anew with it, and the old
//! certificate is replaced only once the new one is stored and checked.

mod establish;
mod maintain;
mod signing;
mod token;

use jiff::Timestamp;

use self::establish::establish_step;
use self::maintain::{maintain_step, MaintainOutcome};
use self::token::{presented_digest, token_digest};
use super::context::Context;
use super::decide::{ConnectionOutcome, Step};
use crate::certificates::ClientCredentials;
use crate::crd::compass_connection::CompassConnection;

/// The outcome for the status, the credentials to work with, and the token
/// presented on the way (its digest, for the CompassConnection).
pub(super) struct Connected {
    pub outcome: ConnectionOutcome,
    pub credentials: Option<ClientCredentials>,
    pub presented_token: Option<String>,
}

/// Establishes (with the token) or maintains (with the certificate) the
/// connection, as `step` says; logs, counts and tells of a renewal.
pub(super) async fn connect(
    ctx: &Context,
    step: Step,
    connection: &CompassConnection,
    request_id: &str,
    now: Timestamp,
) -> Connected {
    let mut presented_token = None;
    let (outcome, credentials) = match step {
        Step::Establish => establish_step(ctx, request_id, &mut presented_token)
            .await
            .into_connected(),
        Step::Maintain | Step::Wait(_) => {
            let maintained =
                maintain_step(ctx, connection, request_id, now, &mut presented_token).await;
            if let MaintainOutcome::Maintained(maintained) = &maintained {
                if presented_digest(connection).is_none() {
                    // Connected before this agent recorded tokens (by the
                    // original, or an earlier version): the token in the
                    // configuration now is the one that was presented.
                    presented_token = ctx
                        .read_parameters()
                        .await
                        .ok()
                        .map(|parameters| token_digest(&parameters.token));
                }
                if maintained.renewed {
                    tracing::info!(not_after = %maintained.credentials.info().not_after, "client certificate renewed");
                    ctx.events
                        .publish_normal(
                            connection,
                            "CertificateRenewed",
                            "the client certificate was renewed",
                        )
                        .await;
                }
            }
            maintained.into_connected()
        }
    };
    Connected {
        outcome,
        credentials,
        presented_token,
    }
}
