//! The task that recreates `compass-connection` whenever it is missing:
//! deleting it forces a new connection with the configured token. Its watch
//! also tells when the API server link came back after it was lost.

use std::future::Future;
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
/// refusal), a cycle is due at once, and the API server is asked for
/// `compass-connection` until it answers; then the backoff is forgotten and
/// a value is sent on `link_restored`: what changed meanwhile (the Director,
/// the spec's flags, the configuration) is acted upon now, not after the
/// sync period or the backoff. (A watch that resumes sends no event while
/// nothing changes, so its events cannot tell.)
pub(super) async fn keep_connection_resource(
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    link_restored: tokio::sync::mpsc::UnboundedSender<()>,
) {
    let api: Api<CompassConnection> = Api::all(ctx.client.clone());
    let events = watcher(api, by_name(COMPASS_CONNECTION_NAME));
    let mut events = std::pin::pin!(events);
    let mut present = false;
    // Asks the API server until it answers, once the watch failed.
    let mut link_check: Option<std::pin::Pin<Box<dyn Future<Output = bool> + Send>>> = None;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            was_down = async { link_check.as_mut().expect("checked").await }, if link_check.is_some() => {
                link_check = None;
                // A watch that fails while reads work (its RBAC, say) is not a
                // lost link, and is not worth a cycle each time it retries.
                if was_down {
                    tracing::info!("the API server answers again; a cycle runs now");
                    ctx.reset_backoff();
                    let _ = link_restored.send(());
                }
                continue;
            }
            event = events.next() => event,
        };
        let Some(event) = event else { return };
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
                if link_check.is_none() {
                    // What was missed is worth a cycle as soon as one can run.
                    ctx.progress.due_at(std::time::Instant::now());
                    link_check = Some(Box::pin(until_the_api_server_answers(ctx.clone())));
                }
                tracing::warn!(error = %Report(&error), "watching CompassConnection failed; retrying")
            }
        }
    }
}

/// Returns once the API server answers a read of `compass-connection`
/// (found or not), asking again as the watch does ([`WatchRetry`]): whether
/// it did not answer at first.
async fn until_the_api_server_answers(ctx: Arc<Context>) -> bool {
    let mut retry = WatchRetry::default();
    let mut was_down = false;
    loop {
        let answered = tokio::time::timeout(
            ctx.settings.kubernetes_request_timeout,
            ctx.connections.get(),
        )
        .await;
        if let Ok(Ok(_)) = answered {
            return was_down;
        }
        was_down = true;
        let delay = retry.next().unwrap_or(Duration::from_secs(5));
        tokio::time::sleep(delay).await;
    }
}

fn watcher(
    api: Api<CompassConnection>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<CompassConnection>, watcher::Error>> {
    watcher::watcher(api, config).backoff(WatchRetry::default())
}

/// How soon a watch of the agent tries again after it failed: from 0.5 s,
/// doubling, to at most 5 s, with jitter. Sooner than kube's default (up to
/// 30 s): the controller's triggers (a change of the spec, the link coming
/// back) wait while its watch backs off, and a failed try costs the API
/// server nothing.
#[derive(Debug, Default)]
pub(super) struct WatchRetry {
    failures: u32,
}

impl Iterator for WatchRetry {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        Some(crate::controller::decide::backoff_delay(
            self.failures,
            Duration::from_millis(500),
            Duration::from_secs(5),
            rand::random(),
        ))
    }
}

impl kube::runtime::utils::Backoff for WatchRetry {
    fn reset(&mut self) {
        self.failures = 0;
    }
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

#[cfg(test)]
mod tests {
    use kube::runtime::utils::Backoff;

    use super::*;

    #[test]
    fn the_watch_retries_within_five_seconds_and_starts_over_once_it_works() {
        let mut retry = WatchRetry::default();
        let first = retry.next().unwrap();
        assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500));
        for _ in 0..50 {
            assert!(retry.next().unwrap() <= Duration::from_secs(5));
        }
        assert!(retry.next().unwrap() >= Duration::from_millis(2500));
        retry.reset();
        assert!(retry.next().unwrap() <= Duration::from_millis(500));
    }
}
