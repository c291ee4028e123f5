//! The controller: a kube-runtime controller over the single cluster-scoped
//! `compass-connection`, plus a small task that recreates the resource when it
//! is missing (deleting it forces a new connection with the configured token).

pub mod cycle;
pub mod decide;
pub mod errors;
pub mod leader;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{Controller, WatchStreamExt};
use kube::Api;
use tokio_util::sync::CancellationToken;

pub use cycle::{error_policy, reconcile, Context};

use crate::config::SourceKind;
use crate::k8s::crd::compass_connection::{CompassConnection, COMPASS_CONNECTION_NAME};

fn by_name(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

/// Runs until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let connections: Api<CompassConnection> = Api::all(ctx.client.clone());
    let ensure = tokio::spawn(keep_connection_resource(ctx.clone(), shutdown.clone()));

    let source = &ctx.settings.agent_configuration_secret;
    let source_ctx = ctx.clone();
    // A change of the configuration source is worth an attempt at once, not
    // after the current backoff.
    let on_source_change = move || {
        source_ctx.reset_backoff();
        Some(ObjectRef::<CompassConnection>::new(COMPASS_CONNECTION_NAME))
    };
    let controller = Controller::new(connections, by_name(COMPASS_CONNECTION_NAME));
    let controller = match ctx.settings.agent_configuration_source {
        SourceKind::Secret => controller.watches(
            Api::<Secret>::namespaced(ctx.client.clone(), &source.namespace),
            by_name(&source.name),
            move |_| on_source_change(),
        ),
        SourceKind::ConfigMap => controller.watches(
            Api::<ConfigMap>::namespaced(ctx.client.clone(), &source.namespace),
            by_name(&source.name),
            move |_| on_source_change(),
        ),
    };
    controller
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
        })
        .await;
    shutdown.cancel();
    let _ = ensure.await;
}

/// Creates `compass-connection` whenever it is missing: at start and after it
/// was deleted. It starts in `ConnectionFailed`, so the controller connects
/// with the configured token.
async fn keep_connection_resource(ctx: Arc<Context>, shutdown: CancellationToken) {
    let api: Api<CompassConnection> = Api::all(ctx.client.clone());
    let events = watcher(api, by_name(COMPASS_CONNECTION_NAME));
    let mut events = std::pin::pin!(events);
    let mut present = false;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
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
            Err(error) => tracing::warn!(%error, "watching CompassConnection failed; retrying"),
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
        match ctx.connections.create_initial().await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot create CompassConnection; retrying in {delay:?}")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}
