//! The three ways of following the configuration source (the Secret or
//! ConfigMap with the connection parameters): a Secret watch, a ConfigMap
//! watch, or, where the RBAC allows no watch, polling. Each change asks for a
//! reconcile at once, without the current backoff.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::Controller;
use kube::Api;

use crate::config::SourceKind;
use crate::controller::Context;
use crate::crd::compass_connection::{CompassConnection, COMPASS_CONNECTION_NAME};
use crate::k8s::by_name;

/// `controller`, also run when the configuration source changes: watched
/// where the access review allows it, else polled.
pub(super) fn watch_source(
    mut controller: Controller<CompassConnection>,
    ctx: &Arc<Context>,
) -> Controller<CompassConnection> {
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
    controller
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
