//! One reconcile of `compass-connection`: establish or maintain the
//! connection, synchronize Applications, then write what `decide::transition`
//! makes of it. The decisions are in `decide`; this file does the I/O.

use std::sync::Arc;

use jiff::Timestamp;
use kube::runtime::controller::Action;
use tracing::Instrument;

use super::connection::connect;
use super::context::Context;
use super::decide::{self, AbandonedIn, Cause, Cycle, Run, Step, WriteFailure};
use super::errors::ReconcileError;
use super::progress::{self, Wait};
use super::synchronize::synchronize;
use crate::certificates::renewal;
use crate::crd::compass_connection::{CompassConnection, ConnectionState};
use crate::k8s::connection::{initial_status, ConnectionStoreError, SpecUpdate};
use crate::report::Report;

/// The reconcile entry point for the kube-runtime controller. A cycle that
/// has not finished within `APP_CYCLE_TIMEOUT` is abandoned (see
/// [`abandon`]).
pub async fn reconcile(
    connection: Arc<CompassConnection>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let deadline = ctx.settings.cycle_timeout;
    let span = tracing::info_span!(
        "reconcile",
        request_id = tracing::field::Empty,
        runtime_id = tracing::field::Empty
    );
    // Boxed, so that it can be dropped (and with it every request in
    // flight) while what it waited for is read.
    let mut cycle = Box::pin(
        async {
            let request_id = ctx.new_request_id().await;
            tracing::Span::current().record("request_id", request_id.as_str());
            // The configured runtime id, once for the whole cycle (the
            // certificate's CN is the SystemAuth id on a real Compass, not
            // the runtime's); the request id has read the configuration if
            // it was not known yet.
            if let Some(runtime_id) = ctx.remembered().runtime_id() {
                tracing::Span::current().record("runtime_id", runtime_id.as_str());
            }
            // The controller's cache may lag behind our own last writes (a
            // spec write is seen before the status write that followed it);
            // acting on a stale ConnectionFailed would spend the token again.
            // Read the object fresh.
            let fresh = {
                let _waiting = ctx.progress.waiting(Wait::Connection);
                ctx.connections.get().await
            };
            let fresh = match fresh {
                Ok(Some(fresh)) => fresh,
                Ok(None) => return Ok(action(ctx.schedule(Timestamp::now(), Cause::Gone, None))),
                Err(error) => {
                    tracing::warn!(error = %Report(&error), "cannot read compass-connection afresh; reconciling the controller's copy");
                    connection.as_ref().clone()
                }
            };
            reconcile_once(&fresh, &ctx, &request_id).await
        }
        .instrument(span.clone()),
    );
    tokio::select! {
        outcome = &mut cycle => outcome,
        _ = tokio::time::sleep(deadline) => {
            let waits = ctx.progress.waiting_for();
            drop(cycle);
            abandon(&connection, &ctx, &waits).instrument(span).await
        }
    }
}

/// A cycle that did not finish within its deadline: dropped with what it
/// waited for, logged, counted (category `CycleTimeout`), recorded in the
/// status where the API server lets it be written, and its next run decided
/// as any failure's.
async fn abandon(
    connection: &CompassConnection,
    ctx: &Context,
    waits: &[Wait],
) -> Result<Action, ReconcileError> {
    let deadline = ctx.settings.cycle_timeout;
    let waited_for = progress::describe_waits(waits);
    tracing::warn!(deadline = ?deadline, waiting_for = %waited_for, "the cycle did not finish within APP_CYCLE_TIMEOUT; abandoned");
    let abandoned_in = if waits.iter().any(|wait| {
        matches!(
            wait,
            Wait::Connector | Wait::Signing | Wait::CredentialsSecrets
        )
    }) {
        AbandonedIn::Connection
    } else {
        AbandonedIn::Synchronization
    };
    let error = format!(
        "the cycle did not finish within {}s (APP_CYCLE_TIMEOUT) and was abandoned while waiting for: {waited_for}",
        deadline.as_secs()
    );
    let previous = connection.status.clone().unwrap_or_else(initial_status);
    let status = decide::after_deadline(
        &previous,
        abandoned_in,
        error.clone(),
        Timestamp::now(),
        connection.metadata.generation,
    );
    ctx.metrics.set_connection_state(status.connection_state);
    ctx.metrics.record_reconcile(Some(decide::CYCLE_TIMEOUT));
    // Bounded by the same deadline as a request: the API server may be
    // what the cycle waited for.
    let bound = ctx.settings.kubernetes_request_timeout;
    let written = tokio::time::timeout(
        bound,
        ctx.connections
            .write_status(connection.metadata.uid.as_deref(), &status),
    )
    .await;
    let cause = match written {
        Ok(Ok(())) => {
            let _ = tokio::time::timeout(
                bound,
                ctx.events.publish_outcome(
                    connection,
                    previous.connection_state,
                    status.connection_state,
                    Some(decide::CYCLE_TIMEOUT),
                    &error,
                ),
            )
            .await;
            Cause::Cycle(decide::Requeue::Backoff)
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %Report(&error), "cannot record the abandoned cycle in compass-connection");
            Cause::WriteFailed(WriteFailure::Other)
        }
        Err(_) => {
            tracing::warn!(
                "cannot record the abandoned cycle in compass-connection within {bound:?}"
            );
            Cause::WriteFailed(WriteFailure::Other)
        }
    };
    Ok(action(ctx.schedule(Timestamp::now(), cause, None)))
}

/// After a reconcile failed as a whole (its status could not be written).
pub fn error_policy(
    _connection: Arc<CompassConnection>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    let failure = error.write_failure();
    if failure == WriteFailure::Other {
        tracing::warn!(error = %Report(error), "cannot record the reconcile; retrying");
    }
    action(ctx.schedule(Timestamp::now(), Cause::WriteFailed(failure), None))
}

fn action(run: Run) -> Action {
    match run {
        Run::After(delay) => Action::requeue(delay),
        Run::OnChange => Action::await_change(),
    }
}

async fn reconcile_once(
    connection: &CompassConnection,
    ctx: &Context,
    request_id: &str,
) -> Result<Action, ReconcileError> {
    let now = Timestamp::now();
    let spec = &connection.spec;
    let previous = connection.status.clone().unwrap_or_else(initial_status);
    let step = decide::next_step(
        now,
        spec,
        &previous,
        ctx.settings.minimal_compass_sync_time,
        ctx.next_attempt_at(),
    );
    if let Step::Wait(rest) = step {
        return Ok(action(ctx.schedule(now, Cause::Early(rest), None)));
    }

    let connected = connect(ctx, step, connection, request_id, now).await;
    let mut sync = None;
    if let Some(credentials) = &connected.credentials {
        let info = credentials.info();
        ctx.certificate_in_use.set(info.not_before, info.not_after);
        let renewal_due = renewal::renewal_due_at(
            info,
            ctx.settings.cert_validity_renewal_threshold,
            ctx.settings.minimal_compass_sync_time,
        );
        ctx.metrics
            .set_certificate(info.not_after.as_second(), renewal_due.as_second());
        let sync_due = decide::sync_due(
            now,
            spec,
            previous.synchronization_status.as_ref(),
            ctx.settings.minimal_compass_sync_time,
        );
        if sync_due {
            if spec.resync_now {
                // An operator who asks for a sync gets one that reads the
                // cluster afresh, not the state kept from the last read: a
                // change made just before (its watch event perhaps still on
                // its way) is seen.
                ctx.applications.forget_kept_state();
            }
            let management_info = decide::management_info_after(spec, &connected.outcome);
            let (report, replaced) = synchronize(
                ctx,
                credentials,
                &management_info,
                previous.synchronization_status.clone(),
                now,
                request_id,
            )
            .await;
            for replacement in &replaced {
                ctx.events
                    .publish_about_application(
                        connection,
                        &replacement.new,
                        "ApplicationReplaced",
                        &format!(
                            "Application {} was replaced by {}: the Director application is named so now (see the runtime label isNormalized)",
                            replacement.old, replacement.new
                        ),
                    )
                    .await;
            }
            sync = Some(report);
        }
    }

    let transition = decide::transition(Cycle {
        now,
        step,
        spec,
        previous: &previous,
        connection: &connected.outcome,
        sync,
        configuration_source: ctx.remembered().configuration_source(),
        generation: connection.metadata.generation,
        presented_token: connected.presented_token.clone(),
        judged_at: Timestamp::now(),
    });
    let status = &transition.status;
    if connected.credentials.is_none()
        && status.connection_state == ConnectionState::ConnectionFailed
    {
        ctx.certificate_in_use.clear();
    }
    ctx.metrics.set_connection_state(status.connection_state);
    {
        let _waiting = ctx.progress.waiting(Wait::Event);
        ctx.events
            .publish_outcome(
                connection,
                previous.connection_state,
                status.connection_state,
                transition.failure,
                &decide::current_error(status),
            )
            .await;
    }

    // Counted once the cycle is written (or not): a failure of the cycle
    // under its category, a failed write of compass-connection as such.
    let written = {
        let _waiting = ctx.progress.waiting(Wait::StatusWrite);
        write_outcome(ctx, connection, &transition).await
    };
    ctx.metrics.record_reconcile(match &written {
        Ok(()) => transition.failure,
        Err(error) => Some(error.category()),
    });
    written?;

    let certificate = connected.outcome.certificate();
    Ok(action(ctx.schedule(
        now,
        Cause::Cycle(transition.requeue),
        certificate,
    )))
}

/// Writes the cycle's spec changes (if any) and its status.
async fn write_outcome(
    ctx: &Context,
    connection: &CompassConnection,
    transition: &decide::Transition,
) -> Result<(), ReconcileError> {
    let spec = &connection.spec;
    let status = &transition.status;
    let uid = connection.metadata.uid.as_deref();
    if !transition.spec.is_empty() {
        let changes = &transition.spec;
        let update = SpecUpdate {
            management_info: changes
                .management_info
                .as_ref()
                .unwrap_or(&spec.management_info),
            clear_resync_now: changes.clear_resync_now,
            clear_refresh_credentials_now: changes.clear_refresh_credentials_now,
            presented_token: changes.presented_token.as_deref(),
        };
        let written = ctx
            .connections
            .update_spec(
                uid,
                connection.metadata.resource_version.as_deref(),
                &update,
            )
            .await;
        let written = match written {
            // Someone changed the object meanwhile; keep what they set (a
            // flag stays for the next cycle), but record the URLs and the token.
            Err(ConnectionStoreError::Conflict) => {
                let keep_flags = SpecUpdate {
                    clear_resync_now: false,
                    clear_refresh_credentials_now: false,
                    ..update
                };
                ctx.connections.update_spec(uid, None, &keep_flags).await
            }
            other => other,
        };
        if let Err(error) = written {
            // The status still tells what happened (e.g. that a token was spent).
            ctx.connections.write_status(uid, status).await?;
            return Err(error.into());
        }
    }
    ctx.connections.write_status(uid, status).await?;
    Ok(())
}
