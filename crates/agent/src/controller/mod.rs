//! The controller: a kube-runtime controller over the single cluster-scoped
//! `compass-connection`, plus a small task that recreates the resource when it
//! is missing (deleting it forces a new connection with the configured token).

pub mod connection;
pub mod context;
pub mod decide;
pub mod errors;
pub mod in_flight;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod synchronize;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{Controller, WatchStreamExt};
use kube::Api;
use tokio_util::sync::CancellationToken;

pub use context::Context;
pub use reconcile::{error_policy, reconcile};

use crate::config::SourceKind;
use crate::crd::compass_connection::{CompassConnection, COMPASS_CONNECTION_NAME};
use crate::report::Report;

fn by_name(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

/// Runs until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let connections: Api<CompassConnection> = Api::all(ctx.client.clone());
    let ensure = tokio::spawn(keep_connection_resource(ctx.clone(), shutdown.clone()));

    let source = &ctx.settings.agent_configuration_secret;
    let kind = ctx.settings.agent_configuration_source;
    // A change of the configuration source is worth an attempt at once, not
    // after the current backoff.
    let on_source_change = {
        let ctx = ctx.clone();
        move || {
            ctx.reset_backoff();
            Some(ObjectRef::<CompassConnection>::new(COMPASS_CONNECTION_NAME))
        }
    };
    let mut controller = Controller::new(connections, by_name(COMPASS_CONNECTION_NAME));
    if kind != SourceKind::ConfigMap && ctx.access.watch_source_secret {
        let on_change = on_source_change.clone();
        controller = controller.watches(
            Api::<Secret>::namespaced(ctx.client.clone(), &source.namespace),
            by_name(&source.name),
            move |_| on_change(),
        );
    }
    if kind != SourceKind::Secret && ctx.access.watch_source_config_map {
        controller = controller.watches(
            Api::<ConfigMap>::namespaced(ctx.client.clone(), &source.namespace),
            by_name(&source.name),
            move |_| on_source_change(),
        );
    }
    if ctx.access.source_needs_polling(kind) {
        controller = controller.reconcile_all_on(source_changes(ctx.clone()));
    }
    let in_flight = Arc::new(in_flight::InFlight::default());
    let gate = in_flight.clone();
    let events = controller
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(
            move |connection, ctx| {
                let running = gate.start();
                async move {
                    // Handed out after the shutdown began: nothing is done.
                    let Some(_running) = running else {
                        return Ok(kube::runtime::controller::Action::await_change());
                    };
                    reconcile(connection, ctx).await
                }
            },
            error_policy,
            ctx,
        )
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
    // except before its first list (see `in_flight`): then we end it.
    tokio::select! {
        _ = events => {}
        _ = async {
            shutdown.cancelled().await;
            in_flight.close_and_wait().await;
        } => tracing::debug!("shutdown: no reconcile in flight; the controller ends"),
    }
    shutdown.cancel();
    let _ = ensure.await;
}

/// Where the agent may not watch the configuration source (Kyma's RBAC for
/// it grants get only), it reads the source every minimal sync time and
/// yields when it changed (a new token, say), after forgetting the backoff.
fn source_changes(ctx: Arc<Context>) -> impl Stream<Item = ()> + Send + 'static {
    let period = ctx
        .settings
        .minimal_compass_sync_time
        .max(Duration::from_secs(1));
    futures::stream::unfold((ctx, None), move |(ctx, mut last)| async move {
        loop {
            let digest = source_digest(&ctx).await;
            let changed = last.is_some() && last.as_ref() != Some(&digest);
            last = Some(digest);
            if changed {
                tracing::info!("the connection configuration changed");
                ctx.reset_backoff();
                return Some(((), (ctx, last)));
            }
            tokio::time::sleep(period).await;
        }
    })
}

/// A digest of what the configuration source holds now (or of its absence).
async fn source_digest(ctx: &Context) -> String {
    use sha1::Digest;
    let mut hasher = sha1::Sha1::new();
    match crate::config::source::read_values(&ctx.client, &ctx.source_location()).await {
        Ok((origin, values)) => {
            hasher.update(origin.to_string());
            for (key, value) in values {
                hasher.update([0]);
                hasher.update(key);
                hasher.update([0]);
                hasher.update(value);
            }
        }
        Err(error) => hasher.update(error.category()),
    }
    hex::encode(hasher.finalize())
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
            Err(error) => {
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
