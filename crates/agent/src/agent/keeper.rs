//! The task that recreates `compass-connection` whenever it is missing:
//! deleting it forces a new connection with the configured token. Its watch
//! also tells when the API server link came back after it was lost.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio_util::sync::CancellationToken;

use crate::controller::Context;
use crate::crd::compass_connection::{CompassConnection, COMPASS_CONNECTION_NAME};
use crate::k8s::by_name;
use crate::report::Report;

/// Creates `compass-connection` whenever it is missing: at start and after it
/// was deleted. It starts in `ConnectionFailed`, so the controller connects
/// with the configured token.
///
/// When its watch fails (the API server link is lost: a partition, a
/// refusal) a cycle is due at once, and once the watch has listed again a
/// value is sent on `link_restored`, after forgetting the backoff: what
/// changed meanwhile (the Director, the spec's flags, the configuration) is
/// acted upon now, not after the sync period or the backoff.
pub(super) async fn keep_connection_resource(
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    link_restored: tokio::sync::mpsc::UnboundedSender<()>,
) {
    let api: Api<CompassConnection> = Api::all(ctx.client.clone());
    let events = watcher(api, by_name(COMPASS_CONNECTION_NAME));
    let mut events = std::pin::pin!(events);
    let mut present = false;
    let mut interrupted = false;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.next() => event,
        };
        let Some(event) = event else { return };
        if interrupted && matches!(event, Ok(Event::InitDone)) {
            interrupted = false;
            tracing::info!("the watch of compass-connection works again; a cycle runs now");
            ctx.reset_backoff();
            let _ = link_restored.send(());
        }
        match event {
            Ok(Event::Init) => present = false,
            Ok(Event::InitApply(_)) | Ok(Event::Apply(_)) => present = true,
            Ok(Event::InitDone) if !present => {
                create_until_done(&ctx, &shutdown, "it does not exist").await
            }
            Ok(Event::InitDone) => {}
            Ok(Event::Delete(_)) => {
                present = false;
                ctx.reset_backoff();
                create_until_done(
                    &ctx,
                    &shutdown,
                    "it was deleted; connecting anew with the configured token",
                )
                .await;
            }
            Err(error) => {
                if !interrupted {
                    interrupted = true;
                    // What was missed is worth a cycle as soon as one can run.
                    ctx.progress.due_at(std::time::Instant::now());
                }
                tracing::warn!(error = %Report(&error), "watching CompassConnection failed; retrying")
            }
        }
    }
}

fn watcher(
    api: Api<CompassConnection>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<CompassConnection>, watcher::Error>> {
    watcher::watcher(api, config).default_backoff()
}

async fn create_until_done(ctx: &Context, shutdown: &CancellationToken, why: &str) {
    tracing::info!("creating CompassConnection {COMPASS_CONNECTION_NAME}: {why}");
    let mut delay = Duration::from_millis(500);
    loop {
        // Raced with the shutdown: an API server that does not answer must
        // not hold the process (creating it again later is harmless).
        let created = tokio::select! {
            _ = shutdown.cancelled() => return,
            created = ctx.connections.create_initial() => created,
        };
        match created {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(error = %Report(&error), "cannot create CompassConnection; retrying in {delay:?}")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}
