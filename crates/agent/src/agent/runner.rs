//! Running the kube-runtime controller over `compass-connection`, and its
//! ends: asked to (the shutdown), or by itself (a bug, or a state the agent
//! cannot leave), which ends the process.

use std::sync::Arc;

use futures::future::FusedFuture;
use futures::{FutureExt, StreamExt};
use kube::runtime::Controller;
use kube::Api;
use tokio_util::sync::CancellationToken;

use super::shutdown::InFlight;
use super::{configuration, keeper};
use crate::controller::{error_policy, reconcile, Context};
use crate::crd::compass_connection::{CompassConnection, COMPASS_CONNECTION_NAME};
use crate::k8s::by_name;
use crate::report::Report;

/// Why the controller ended without being asked to. Each is a bug or a
/// state the agent cannot leave by itself: the process ends non-zero (after
/// releasing the leader Lease) and the kubelet restarts it.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("its watch of CompassConnection {COMPASS_CONNECTION_NAME} ended")]
    WatchEnded,
    #[error("the task that recreates CompassConnection {COMPASS_CONNECTION_NAME} ended")]
    KeeperEnded,
    #[error("it panicked: {0}")]
    Panicked(String),
    #[error("its task was cancelled")]
    Cancelled,
}

impl ControllerError {
    /// What a task running [`run`] came to. A panic is caught here when the
    /// build unwinds; with `panic = "abort"` the process dies of SIGABRT
    /// instead (non-zero too), and a Lease it held expires after its
    /// duration rather than being released.
    pub fn of_task(
        joined: Result<Result<(), ControllerError>, tokio::task::JoinError>,
    ) -> Result<(), ControllerError> {
        match joined {
            Ok(result) => result,
            Err(error) if error.is_panic() => {
                let payload = error.into_panic();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|text| text.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                Err(ControllerError::Panicked(message))
            }
            Err(_) => Err(ControllerError::Cancelled),
        }
    }
}

/// Runs until `shutdown` is cancelled (`Ok`), or until the controller ends
/// by itself (`Err`). A panic in a reconcile unwinds out of here.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    faults: fault::Hook,
) -> Result<(), ControllerError> {
    let connections: Api<CompassConnection> = Api::all(ctx.client.clone());
    // The first cycle is due now: if it never records its outcome (the API
    // server unreachable from the start), /healthz says so in time.
    ctx.progress.due_at(std::time::Instant::now());
    // Ends the task below with this function, also when a panic unwinds it.
    let stop = shutdown.child_token();
    let _stop_on_exit = stop.clone().drop_guard();
    let (link_restored, restored) = tokio::sync::mpsc::unbounded_channel();
    let mut ensure = tokio::spawn(keeper::keep_connection_resource(
        ctx.clone(),
        stop.clone(),
        link_restored,
    ))
    .fuse();

    let controller = Controller::new(connections, by_name(COMPASS_CONNECTION_NAME))
        // Every trigger waits while a watch backs off: not for long.
        .trigger_backoff(keeper::WatchRetry::default())
        .reconcile_all_on(futures::stream::unfold(restored, |mut restored| async {
            restored.recv().await.map(|()| ((), restored))
        }));
    let controller = configuration::watch_source(controller, &ctx);
    let in_flight = Arc::new(InFlight::default());
    let gate = in_flight.clone();
    let fault_ends_stream = CancellationToken::new();
    let end_stream = fault_ends_stream.clone();
    let events = controller
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(
            move |connection, ctx| {
                let running = gate.start();
                let requested = faults.requested(&connection);
                let end_stream = end_stream.clone();
                async move {
                    // Handed out after the shutdown began: nothing is done.
                    let Some(_running) = running else {
                        return Ok(kube::runtime::controller::Action::await_change());
                    };
                    match requested {
                        Some(fault::Fault::Panic) => {
                            panic!("test fault: the reconcile panics ({})", fault::ANNOTATION)
                        }
                        Some(fault::Fault::End) => {
                            end_stream.cancel();
                            return Ok(kube::runtime::controller::Action::await_change());
                        }
                        None => {}
                    }
                    let outcome = reconcile(connection, ctx).await;
                    // What the sync freed goes back to the system before the wait.
                    super::memory::release_free_heap();
                    outcome
                }
            },
            error_policy,
            ctx,
        )
        .take_until(fault_ends_stream.cancelled_owned())
        .for_each(|result| async move {
            use kube::runtime::controller::Error;
            match result {
                Ok(_) => {}
                // Expected around a deletion: the next watch event recreates it.
                Err(Error::ObjectNotFound(object)) => {
                    tracing::debug!(%object, "compass-connection is gone; it will be recreated")
                }
                // Logged by error_policy, with what happens next.
                Err(Error::ReconcilerFailed(..)) => {}
                // A watch that fails (RBAC, the API server gone): an operator
                // must see it.
                Err(error) => {
                    tracing::warn!(error = %Report(&error), "the controller cannot watch what it reconciles")
                }
            }
        });
    // The controller ends by itself once the reconcile in flight is done,
    // except before its first list (see `agent::shutdown`): then we end it.
    let keeper_ended = async {
        let ended = (&mut ensure).await;
        if shutdown.is_cancelled() {
            // Its part of the shutdown; the reconcile in flight decides.
            std::future::pending::<()>().await;
        }
        match ControllerError::of_task(ended.map(Ok)) {
            Ok(()) => ControllerError::KeeperEnded,
            Err(error) => error,
        }
    };
    let ended = tokio::select! {
        _ = events => {
            if shutdown.is_cancelled() {
                Ok(())
            } else {
                Err(ControllerError::WatchEnded)
            }
        }
        _ = async {
            shutdown.cancelled().await;
            in_flight.close_and_wait().await;
        } => {
            tracing::debug!("shutdown: no reconcile in flight; the controller ends");
            Ok(())
        }
        error = keeper_ended => Err(error),
    };
    stop.cancel();
    if !ensure.is_terminated() {
        let _ = ensure.await;
    }
    ended
}

/// A way for tests to make the controller end as a bug would, so that what
/// the process does then (exit code, `/healthz`, the Lease) can be checked.
/// Only debug builds can turn it on: with the environment variable [`ENV`]
/// set to `1`, or from [`Hook::enabled`]. Then the annotation [`ANNOTATION`]
/// on `compass-connection` makes the next reconcile panic (`panic`) or the
/// controller's stream end (`end`).
pub mod fault {
    use crate::crd::compass_connection::CompassConnection;

    pub const ENV: &str = "COMPASS_RUNTIME_AGENT_TEST_FAULTS";
    pub const ANNOTATION: &str = "test.compass-runtime-agent.kyma-project.io/controller-fault";

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Fault {
        Panic,
        End,
    }

    /// Whether the hook is on; off unless a debug build turns it on.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Hook {
        enabled: bool,
    }

    impl Hook {
        pub fn disabled() -> Hook {
            Hook::default()
        }

        #[cfg(debug_assertions)]
        pub fn enabled() -> Hook {
            Hook { enabled: true }
        }

        /// On when [`ENV`] is `1` in a debug build; a release build does
        /// not read it.
        pub fn from_env() -> Hook {
            #[cfg(debug_assertions)]
            if std::env::var(ENV).is_ok_and(|value| value == "1") {
                return Hook::enabled();
            }
            Hook::disabled()
        }

        /// The fault `connection` asks for, if the hook is on.
        pub fn requested(&self, connection: &CompassConnection) -> Option<Fault> {
            if !self.enabled {
                return None;
            }
            let value = connection.metadata.annotations.as_ref()?.get(ANNOTATION)?;
            match value.as_str() {
                "panic" => Some(Fault::Panic),
                "end" => Some(Fault::End),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panicked_is_an_error_with_the_panics_message() {
        let joined = tokio::spawn(async {
            if COMPASS_CONNECTION_NAME.is_empty() {
                return Ok(());
            }
            panic!("boom in {COMPASS_CONNECTION_NAME}")
        })
        .await;
        match ControllerError::of_task(joined) {
            Err(ControllerError::Panicked(message)) => {
                assert_eq!(message, "boom in compass-connection")
            }
            other => panic!("{other:?}"),
        }
        let joined = tokio::spawn(async { Err(ControllerError::WatchEnded) }).await;
        assert!(matches!(
            ControllerError::of_task(joined),
            Err(ControllerError::WatchEnded)
        ));
    }

    #[test]
    fn the_fault_annotation_means_nothing_unless_the_hook_is_on() {
        let mut connection = CompassConnection::new(COMPASS_CONNECTION_NAME, Default::default());
        connection.metadata.annotations =
            Some([(fault::ANNOTATION.to_string(), "panic".to_string())].into());
        assert_eq!(fault::Hook::disabled().requested(&connection), None);
        assert_eq!(fault::Hook::default().requested(&connection), None);
        #[cfg(debug_assertions)]
        assert_eq!(
            fault::Hook::enabled().requested(&connection),
            Some(fault::Fault::Panic)
        );
    }
}
