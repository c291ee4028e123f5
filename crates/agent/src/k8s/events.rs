//! Kubernetes Events on the CompassConnection: state changes, renewals and
//! failures, so `kubectl describe compassconnection` tells the story. Repeats
//! of the same reason are aggregated into one Event series by kube's recorder.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use super::access::Access;
use super::errors::is_forbidden;
use crate::crd::application::Application;
use crate::crd::compass_connection::{CompassConnection, ConnectionState};
use crate::report::Report;

pub const REPORTER: &str = "compass-runtime-agent";

pub struct EventRecorder {
    recorder: Recorder,
    /// Kyma's RBAC for the agent grants no Events: then none are published.
    access: Arc<Access>,
}

impl EventRecorder {
    pub fn new(client: Client, access: Arc<Access>) -> EventRecorder {
        let reporter = Reporter {
            controller: REPORTER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        EventRecorder {
            recorder: Recorder::new(client, reporter),
            access,
        }
    }

    /// The outcome of one cycle. A failure is a Warning whose reason is the
    /// error's category (`Timeout`, `CredentialsRefused`, …), published on
    /// every failed cycle: kube's recorder folds repeats of a reason into one
    /// Event series (a count), so a long outage does not flood. A success is
    /// a Normal Event, only when the state changed to it.
    pub async fn publish_outcome(
        &self,
        connection: &CompassConnection,
        from: ConnectionState,
        to: ConnectionState,
        failure: Option<&str>,
        error: &str,
    ) {
        let changed = from != to;
        let event = match failure {
            Some(category) => Event {
                type_: EventType::Warning,
                reason: category.to_string(),
                note: Some(truncate(&if changed {
                    format!("{from} → {to}: {error}")
                } else {
                    format!("{to}: {error}")
                })),
                action: "Reconcile".into(),
                secondary: None,
            },
            None if changed => Event {
                type_: EventType::Normal,
                reason: to.to_string(),
                note: Some(format!("{from} → {to}")),
                action: "Reconcile".into(),
                secondary: None,
            },
            None => return,
        };
        self.publish(connection, &event).await;
    }

    pub async fn publish_normal(&self, connection: &CompassConnection, reason: &str, note: &str) {
        let event = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(truncate(note)),
            action: "Reconcile".into(),
            secondary: None,
        };
        self.publish(connection, &event).await;
    }

    /// A Normal Event about an Application (the Event's related object), so
    /// that Events about different Applications are not folded into one
    /// series.
    pub async fn publish_about_application(
        &self,
        connection: &CompassConnection,
        application: &str,
        reason: &str,
        note: &str,
    ) {
        let related = ObjectReference {
            api_version: Some(Application::api_version(&()).into_owned()),
            kind: Some(Application::kind(&()).into_owned()),
            name: Some(application.to_string()),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(truncate(note)),
            action: "Synchronize".into(),
            secondary: Some(related),
        };
        self.publish(connection, &event).await;
    }

    async fn publish(&self, connection: &CompassConnection, event: &Event) {
        if !self.access.events.allowed() {
            return;
        }
        let reference = connection.object_ref(&());
        // Events are a courtesy: never let them fail a reconcile.
        match self.recorder.publish(event, &reference).await {
            Ok(()) => {}
            Err(error) if is_forbidden(&error) => self.access.events.refused(&error),
            Err(error) => {
                tracing::warn!(error = %Report(&error), reason = %event.reason, "cannot publish a Kubernetes Event")
            }
        }
    }
}

/// Event notes are limited to 1 kB.
fn truncate(text: &str) -> String {
    crate::report::bounded(text, 1000)
}
