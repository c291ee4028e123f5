//! `compass-runtime-agent diff`: what one synchronization would change in
//! the cluster, without writing anything. With the stored certificate and the
//! configuration it reads the Director and the cluster as the agent's cycle
//! does (`controller::synchronize::plan_sync`), then reads in full each
//! object the plan would write and compares it field by field with what the
//! write would send (`k8s::applications::{updated_application, secret_body}`).
//!
//! What it sends: GETs and LISTs to the API server, SelfSubjectAccessReviews
//! (answered, never stored), and the Director's read-only queries over mTLS.
//! Never the Connector: each of its `configuration` answers makes Compass
//! issue a new one-time token. Exit codes as diff(1)'s: 0 no change, 1
//! changes, 2 trouble (including a cycle that would first have to connect
//! anew with the one-time token, which a dry run cannot show).

pub mod render;
pub mod report;

use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Client};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use self::report::{
    ApplicationChange, ApplicationVerb, CertificateFacts, ConnectionChange, ConnectionFacts,
    DiffReport, SecretChange, SecretVerb, Summary, SCHEMA_VERSION,
};
use crate::certificates::renewal;
use crate::config::{ConnectionParameters, RuntimeParameters, Settings, SourceKind};
use crate::controller::decide;
use crate::controller::errors::SyncError;
use crate::controller::metrics::AgentMetrics;
use crate::controller::synchronize::{plan_sync, PlannedSync, CONSOLE_URL_LABEL, EVENTS_URL_LABEL};
use crate::controller::Context;
use crate::crd::application::Application;
use crate::crd::compass_connection::{CompassConnection, ConnectionState, SynchronizationStatus};
use crate::k8s::access::Access;
use crate::k8s::applications::secret_body;
use crate::k8s::credentials_store::{CredentialsStoreError, StoredCredentials};
use crate::report::report;
use crate::sync::{ActualSecret, ApplicationAction, ApplicationPlan, Plan, SecretAction};

/// Why there is no report.
#[derive(Debug)]
pub enum Trouble {
    /// Reads a dry run needs that the account may not make, as the API
    /// server's access review answered (nothing else was read).
    NotAllowed(Vec<String>),
    /// The next cycle would not synchronize with the stored certificate:
    /// it would first connect anew with the one-time token.
    WouldConnect(String),
    /// A read or a request that failed.
    Failed(String),
}

impl Trouble {
    /// The text for a person (stderr).
    pub fn describe(&self) -> String {
        match self {
            Trouble::NotAllowed(reads) => format!(
                "error: this account may not read what a dry run needs (nothing else was read):\n{}\ngrant get, list and watch on them, or run diff with the agent's ServiceAccount",
                reads
                    .iter()
                    .map(|read| format!("  - {read}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            Trouble::WouldConnect(why) => format!(
                "cannot show a dry run: {why}. The agent's next cycle would connect anew with the one-time token in the configuration and only then synchronize; diff does not present the token (a token works once)."
            ),
            Trouble::Failed(why) => format!("error: {why}"),
        }
    }
}

/// What `-o json` prints when there is no report.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TroubleJson<'a> {
    schema_version: u32,
    error: String,
    /// The reads the account may not make.
    cannot_read: &'a [String],
}

/// The output format (`-o`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Runs the command; returns the exit code (0, 1 or 2).
pub fn main(settings: Settings, format: Format) -> u8 {
    init_logging(&settings);
    crate::agent::install_crypto_provider();
    let Some(runtime) = super::setup::current_thread_runtime() else {
        return 2;
    };
    match runtime.block_on(diff(settings)) {
        Ok(report) => {
            match format {
                Format::Text => print!("{}", render::render(&report)),
                Format::Json => match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(error) => {
                        eprintln!("error: cannot render the report as JSON: {error}");
                        return 2;
                    }
                },
            }
            u8::from(report.changes)
        }
        Err(trouble) => {
            eprintln!("{}", trouble.describe());
            if format == Format::Json {
                let cannot_read: &[String] = match &trouble {
                    Trouble::NotAllowed(reads) => reads,
                    _ => &[],
                };
                let json = TroubleJson {
                    schema_version: SCHEMA_VERSION,
                    error: trouble.describe(),
                    cannot_read,
                };
                if let Ok(json) = serde_json::to_string_pretty(&json) {
                    println!("{json}");
                }
            }
            2
        }
    }
}

/// Warnings to stderr (stdout is the report): e.g. a Director list that did
/// not come whole. `APP_LOG_LEVEL` is the agent's and says `info`; a dry run
/// says less unless `RUST_LOG` asks for more.
fn init_logging(settings: &Settings) {
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match settings.log_format {
        crate::config::LogFormat::Json => builder.json().try_init(),
        crate::config::LogFormat::Text => builder.try_init(),
    };
}

/// Reads everything and makes the report.
pub async fn diff(settings: Settings) -> Result<DiffReport, Trouble> {
    let metrics = AgentMetrics::new();
    let client = super::setup::kubernetes_client(&settings, metrics.kubernetes.clone())
        .await
        .map_err(Trouble::Failed)?;

    let missing = not_allowed(&client, &settings).await?;
    if !missing.is_empty() {
        return Err(Trouble::NotAllowed(missing));
    }
    // What the agent would decide, as it decides it at start (list or read
    // the credential Secrets one by one, look at the ConfigMap or not).
    let bound = settings.kubernetes_request_timeout * 2;
    let access = tokio::time::timeout(
        bound,
        Access::probe(&client, &settings, &CancellationToken::new()),
    )
    .await
    .ok()
    .flatten()
    .ok_or_else(|| {
        Trouble::Failed(format!(
            "the API server did not answer the access review within {bound:?}"
        ))
    })?;
    let access = Arc::new(access.for_one_read());
    let ctx = Context::new(client.clone(), settings, &metrics, access)
        .map_err(|error| Trouble::Failed(error.to_string()))?;
    dry_run(&ctx).await
}

/// The reads a dry run needs, and the account may not make, as the API
/// server's SelfSubjectAccessReview answers. A review it refuses to answer
/// counts as allowed: the read itself then says.
async fn not_allowed(client: &Client, settings: &Settings) -> Result<Vec<String>, Trouble> {
    let integration = settings.integration_namespace.as_str();
    let certificates = &settings.cluster_certificates_secret;
    let ca = &settings.ca_certificates_secret;
    let source = &settings.agent_configuration_secret;
    let mut reads: Vec<(Read<'_>, String)> = vec![
        (
            Read::cluster(
                "get",
                "compass.kyma-project.io",
                "compassconnections",
                Some("compass-connection"),
            ),
            "get CompassConnection compass-connection".into(),
        ),
        (
            Read::named(
                "get",
                "secrets",
                &certificates.namespace,
                &certificates.name,
            ),
            format!("get Secret {certificates} (the client certificate)"),
        ),
        (
            Read::named("get", "secrets", &ca.namespace, &ca.name),
            format!("get Secret {ca} (the Compass CA)"),
        ),
        (
            Read::cluster(
                "list",
                "applicationconnector.kyma-project.io",
                "applications",
                None,
            ),
            "list Applications (applicationconnector.kyma-project.io)".into(),
        ),
        (
            Read::cluster(
                "get",
                "applicationconnector.kyma-project.io",
                "applications",
                None,
            ),
            "get Applications (applicationconnector.kyma-project.io)".into(),
        ),
        (
            Read {
                verb: "get",
                group: "",
                resource: "secrets",
                namespace: integration,
                name: None,
            },
            format!("get Secrets in {integration} (the credential Secrets)"),
        ),
    ];
    match settings.agent_configuration_source {
        SourceKind::Secret | SourceKind::Auto => reads.push((
            Read::named("get", "secrets", &source.namespace, &source.name),
            format!("get Secret {source} (the connection configuration)"),
        )),
        SourceKind::ConfigMap => reads.push((
            Read::named("get", "configmaps", &source.namespace, &source.name),
            format!("get ConfigMap {source} (the connection configuration)"),
        )),
    }
    let answers: Vec<Option<bool>> = stream::iter(reads.iter().map(|(read, _)| read.ask(client)))
        .buffered(4)
        .try_collect()
        .await
        .map_err(|error| {
            Trouble::Failed(format!(
                "the API server does not answer what this account may read: {}",
                report(&error)
            ))
        })?;
    Ok(reads
        .into_iter()
        .zip(answers)
        .filter(|(_, allowed)| *allowed == Some(false))
        .map(|((_, what), _)| what)
        .collect())
}

/// One question for a SelfSubjectAccessReview.
struct Read<'a> {
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    /// "" for cluster-scoped resources.
    namespace: &'a str,
    name: Option<&'a str>,
}

impl<'a> Read<'a> {
    fn cluster(
        verb: &'static str,
        group: &'static str,
        resource: &'static str,
        name: Option<&'a str>,
    ) -> Read<'a> {
        Read {
            verb,
            group,
            resource,
            namespace: "",
            name,
        }
    }

    fn named(
        verb: &'static str,
        resource: &'static str,
        namespace: &'a str,
        name: &'a str,
    ) -> Read<'a> {
        Read {
            verb,
            group: "",
            resource,
            namespace,
            name: Some(name),
        }
    }

    /// `Some(allowed)`, or `None` when the API server refuses the question.
    async fn ask(&self, client: &Client) -> Result<Option<bool>, kube::Error> {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(self.namespace.into()),
                    verb: Some(self.verb.into()),
                    group: Some(self.group.into()),
                    resource: Some(self.resource.into()),
                    name: self.name.map(String::from),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        match Api::<SelfSubjectAccessReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await
        {
            Ok(answer) => Ok(Some(answer.status.is_some_and(|status| status.allowed))),
            Err(kube::Error::Api(status)) if status.code < 500 && status.code != 429 => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// The dry run proper, with the agent's context.
pub async fn dry_run(ctx: &Context) -> Result<DiffReport, Trouble> {
    let settings = &ctx.settings;
    let now = Timestamp::now();
    let (connection, stored) = connection_to_maintain(ctx, now).await?;
    let credentials = &stored.credentials;
    let info = credentials.info();
    let management_info = &connection.spec.management_info;
    let ca = ctx.credentials.read_ca().await.map_err(|error| {
        Trouble::Failed(format!(
            "cannot read the CA Secret {}: {}",
            ctx.credentials.ca_secret(),
            report(&error)
        ))
    })?;
    let source = ctx.source_location();
    let parameters = RuntimeParameters::read(&ctx.client, &source)
        .await
        .map_err(|error| {
            Trouble::Failed(format!(
                "{} (the sync would fail: SynchronizationFailed)",
                report(&error)
            ))
        })?;
    // The token is only looked at for whether there is one (its digest is
    // recorded once); it is never printed, nor presented.
    let token_configured = ConnectionParameters::read(&ctx.client, &source)
        .await
        .is_ok();
    let request_id = format!("{}_{}", parameters.runtime_id, uuid::Uuid::new_v4());
    let mut sync_status: SynchronizationStatus = connection
        .status
        .as_ref()
        .and_then(|status| status.synchronization_status.clone())
        .unwrap_or_default();
    let planned = plan_sync(
        ctx,
        credentials,
        management_info,
        &mut sync_status,
        now,
        &request_id,
    )
    .await
    .map_err(|error| {
        let what = match &error {
            SyncError::Fetch(_) => "cannot read the Director",
            SyncError::ReadCluster(_) => "cannot read the cluster's Applications and Secrets",
            SyncError::Configuration(_) => "cannot read the connection configuration",
            SyncError::Labels(_) => "cannot read the Runtime's labels",
        };
        Trouble::Failed(format!("{what}: {}", report(&error)))
    })?;
    let PlannedSync {
        plan,
        labels,
        incomplete,
        wanted,
        ..
    } = planned;

    // What the agent's sync would report, every write succeeding.
    let (failed, total) = failures(&plan);
    let (state, sync_error, _) = decide::after_apply(&failed, total, None, incomplete.clone());

    let secrets_listed = ctx.access.list_credential_secrets.allowed();
    let mut notes = Vec::new();
    if let Some(problem) = &incomplete {
        notes.push(format!(
            "the Director's list of applications did not come whole ({problem}): the sync would delete nothing"
        ));
    }
    let (applications, unchanged) = describe_plan(ctx, plan).await?;

    let certificate_facts = CertificateFacts {
        certificate_secret: settings.cluster_certificates_secret.to_string(),
        ca_secret: settings.ca_certificates_secret.to_string(),
        certificate: info,
        key_needs_rewrite: stored.key_needs_rewrite,
        ca_stored: ca.as_deref().is_some_and(|ca| !ca.trim().is_empty()),
        ca_in_chain: !credentials.ca_from_chain().trim().is_empty(),
        renewal_due_at: renewal::renewal_due_at(
            info,
            settings.cert_validity_renewal_threshold,
            settings.minimal_compass_sync_time,
        ),
        now,
        refresh_asked: connection.spec.refresh_credentials_now,
    };
    let renews = certificate_facts.renews();
    let certificate_secrets = report::certificate_changes(&certificate_facts);
    let compass_connection: ConnectionChange = report::connection_change(&ConnectionFacts {
        connection: &connection,
        state,
        sync_error,
        certificate: info,
        renews,
        token_configured,
    });
    let runtime_labels = report::label_changes(
        &labels,
        [
            (EVENTS_URL_LABEL, settings.runtime_events_url.as_str()),
            (CONSOLE_URL_LABEL, settings.runtime_console_url.as_str()),
        ],
    );

    let read = what_was_read(
        ctx,
        &parameters.origin.to_string(),
        &management_info.director_url,
        secrets_listed,
    );
    let unknown = unknowns(settings, renews, secrets_listed);
    Ok(DiffReport {
        schema_version: SCHEMA_VERSION,
        changes: false,
        runtime_id: parameters.runtime_id,
        director_url: management_info.director_url.clone(),
        read,
        summary: Summary::default(),
        applications,
        runtime_labels,
        certificate_secrets,
        compass_connection,
        notes,
        unknown,
    }
    .finish(wanted, unchanged))
}

/// `compass-connection` and the stored credentials, when the next cycle
/// would maintain the connection with them (and so synchronize); else why
/// it would connect anew with the one-time token.
async fn connection_to_maintain(
    ctx: &Context,
    now: Timestamp,
) -> Result<(CompassConnection, StoredCredentials), Trouble> {
    let connection = ctx
        .connections
        .get()
        .await
        .map_err(|error| Trouble::Failed(report(&error)))?
        .ok_or_else(|| {
            Trouble::WouldConnect(
                "CompassConnection compass-connection does not exist; the agent would create it"
                    .into(),
            )
        })?;
    match connection.status.as_ref().map(|s| s.connection_state) {
        None => {
            return Err(Trouble::WouldConnect(
                "compass-connection has no status yet".into(),
            ))
        }
        Some(ConnectionState::ConnectionFailed) => {
            return Err(Trouble::WouldConnect(
                "compass-connection is in state ConnectionFailed".into(),
            ))
        }
        Some(_) => {}
    }
    let stored = ctx.credentials.read().await.map_err(|error| match error {
        CredentialsStoreError::Read { .. } => Trouble::Failed(report(&error)),
        _ => Trouble::WouldConnect(format!(
            "the stored credentials cannot work: {}",
            report(&error)
        )),
    })?;
    let not_after = stored.credentials.info().not_after;
    if now >= not_after {
        return Err(Trouble::WouldConnect(format!(
            "the client certificate expired at {not_after}"
        )));
    }
    let management_info = &connection.spec.management_info;
    if management_info.connector_url.is_empty() || management_info.director_url.is_empty() {
        return Err(Trouble::WouldConnect(
            "compass-connection's spec.managementInfo lacks the Connector's or the Director's URL"
                .into(),
        ));
    }
    Ok((connection, stored))
}

/// What a dry run reads, one line each, for the report.
fn what_was_read(
    ctx: &Context,
    configuration: &str,
    director_url: &str,
    secrets_listed: bool,
) -> Vec<String> {
    let settings = &ctx.settings;
    let integration = &settings.integration_namespace;
    vec![
        "CompassConnection compass-connection".to_string(),
        format!(
            "Secret {} (the client certificate)",
            settings.cluster_certificates_secret
        ),
        format!("Secret {} (the CA)", settings.ca_certificates_secret),
        format!("{configuration} (the connection configuration)"),
        "the cluster's Applications".to_string(),
        if secrets_listed {
            format!("the Secrets in {integration} (listed)")
        } else {
            format!("the Secrets in {integration} that the Applications refer to, one by one by name (this account may not list them)")
        },
        format!("the Director at {director_url} (its applications for the Runtime, all pages, and the Runtime's labels)"),
    ]
}

/// What a dry run cannot know without connecting or writing.
fn unknowns(settings: &Settings, renews: bool, secrets_listed: bool) -> Vec<String> {
    let integration = &settings.integration_namespace;
    let mut unknown = vec![
        format!(
            "the Connector is not asked (each of its configuration answers makes Compass issue a new one-time token): whether it would give other management URLs than the spec's (the agent asks it at its first cycle after a start, then once per APP_CONNECTOR_CHECK_INTERVAL, {}s)",
            settings.connector_check_interval.as_secs()
        ),
        "whether the API server accepts each write and the Director the labels: the state shown assumes they do".to_string(),
    ];
    if renews {
        unknown.push("the renewed certificate (a new key, signed by the Connector)".into());
    }
    if !secrets_listed {
        unknown.push(format!(
            "Secrets in {integration} that no Application refers to any more (left by an interrupted sync): only a list finds them; the agent does not find them either without list on Secrets"
        ));
    }
    unknown
}

/// `<name>: <reason>` of each Application the sync would report as failed
/// (nothing written for it), in the order of the status, and how many
/// results the sync would have.
fn failures(plan: &Plan) -> (Vec<String>, usize) {
    let mut failed: Vec<(&str, &str)> = plan
        .applications
        .iter()
        .filter_map(|app| match &app.action {
            ApplicationAction::Refused(reason) => Some((app.name.as_str(), reason.as_str())),
            _ => None,
        })
        .collect();
    failed.sort();
    let total = plan
        .applications
        .iter()
        .map(|app| 1 + app.replaces.len())
        .sum();
    (
        failed
            .into_iter()
            .map(|(name, reason)| format!("{name}: {reason}"))
            .collect(),
        total,
    )
}

/// The Applications the plan writes, deletes or fails on, each compared in
/// full with what is in the cluster now; and how many it leaves unchanged
/// (with no Secret to write).
async fn describe_plan(
    ctx: &Context,
    plan: Plan,
) -> Result<(Vec<ApplicationChange>, usize), Trouble> {
    let readers = Readers {
        applications: Api::all_with(ctx.client.clone(), &ApiResource::erase::<Application>(&())),
        secrets: Api::namespaced(ctx.client.clone(), &ctx.settings.integration_namespace),
        namespace: ctx.settings.integration_namespace.clone(),
        secrets_listed: ctx.access.list_credential_secrets.allowed(),
    };
    let idle = |app: &ApplicationPlan| {
        matches!(app.action, ApplicationAction::Unchanged)
            && app.secrets.is_empty()
            && app.replaces.is_empty()
    };
    let mut unchanged = plan.applications.iter().filter(|app| idle(app)).count();
    let to_describe = plan.applications.into_iter().filter(|app| !idle(app));
    let described: Vec<Vec<ApplicationChange>> = stream::iter(to_describe)
        .map(|app| readers.describe(app))
        .buffered(ctx.settings.apply_concurrency.max(1))
        .try_collect()
        .await?;
    // Those whose writes turned out to change no field are unchanged too.
    let (quiet, mut changes): (Vec<ApplicationChange>, Vec<ApplicationChange>) =
        described.into_iter().flatten().partition(|change| {
            change.action == ApplicationVerb::Unchanged
                && change.secrets.is_empty()
                && change.replaces.is_empty()
                && change.reason.is_none()
        });
    unchanged += quiet.len();
    for deferred in plan.deferred {
        let mut change = ApplicationChange::new(&deferred.name, "", ApplicationVerb::Deferred);
        change.reason = Some(format!(
            "it owns Secrets another Application refers to ({}), which get that Application as their owner first",
            deferred.owned_secrets.join(", ")
        ));
        changes.push(change);
    }
    changes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((changes, unchanged))
}

/// What [`describe_plan`] reads with.
struct Readers {
    applications: Api<DynamicObject>,
    secrets: Api<Secret>,
    namespace: String,
    /// The Secrets were listed (else read one by one by name).
    secrets_listed: bool,
}

/// A placeholder for the owner uid of a Secret of an Application that the
/// same sync creates.
const NEW_APPLICATION_UID: &str = "<the new Application's uid>";

impl Readers {
    async fn describe(&self, plan: ApplicationPlan) -> Result<Vec<ApplicationChange>, Trouble> {
        let ApplicationPlan {
            name,
            application_id,
            action,
            existing_uid,
            secrets,
            replaces,
        } = plan;
        let mut change = ApplicationChange::new(&name, &application_id, ApplicationVerb::Unchanged);
        let mut owner_uid = existing_uid.as_deref().map(String::from);
        match action {
            ApplicationAction::Refused(reason) => {
                change.action = ApplicationVerb::Fail;
                change.reason = Some(reason);
                return Ok(vec![change]);
            }
            ApplicationAction::Delete => change.action = ApplicationVerb::Delete,
            ApplicationAction::Unchanged => {}
            // Not there when the cluster was read.
            ApplicationAction::Create(_) => {
                change.action = ApplicationVerb::Create;
                owner_uid = None;
            }
            ApplicationAction::Update(packed) => {
                let wanted = packed.unpack().map_err(|error| {
                    Trouble::Failed(format!(
                        "cannot read back the planned Application {name}: {error}"
                    ))
                })?;
                match self.read_application(&name).await? {
                    // Gone since the plan was made: the update would create it.
                    None => {
                        change.action = ApplicationVerb::Create;
                        owner_uid = None;
                    }
                    Some(current) => {
                        change.fields = report::application_update_fields(&current, &wanted);
                        // The same again: kept as it is by the API server.
                        if !change.fields.is_empty() {
                            change.action = ApplicationVerb::Update;
                        }
                        owner_uid = current.metadata.uid.clone().or(owner_uid);
                    }
                }
            }
        }
        let owner = owner_uid.as_deref().unwrap_or(NEW_APPLICATION_UID);
        for action in secrets {
            match self.describe_secret(action, &name, owner).await? {
                SecretOutcome::Unchanged => {}
                SecretOutcome::Change(secret) => change.secrets.push(secret),
                SecretOutcome::Foreign(secret) => {
                    change.reason = Some(format!(
                        "a Secret named {secret:?} exists and is not the agent's (it lacks the agent's labels): its write is refused and the sync reports the Application as failed"
                    ));
                }
            }
        }
        let mut changes = Vec::with_capacity(1 + replaces.len());
        for old in replaces {
            change.replaces.push(old.name.clone());
            let mut deleted =
                ApplicationChange::new(&old.name, &application_id, ApplicationVerb::Delete);
            deleted.replaced_by = Some(name.clone());
            deleted.secrets = old
                .secrets
                .iter()
                .map(|secret| self.deleted_secret(secret))
                .collect();
            changes.push(deleted);
        }
        changes.insert(0, change);
        Ok(changes)
    }

    async fn read_application(&self, name: &str) -> Result<Option<DynamicObject>, Trouble> {
        self.applications.get_opt(name).await.map_err(|error| {
            Trouble::Failed(format!(
                "cannot read Application {name}: {}",
                report(&error)
            ))
        })
    }

    async fn read_secret(&self, name: &str) -> Result<Option<Secret>, Trouble> {
        self.secrets.get_opt(name).await.map_err(|error| {
            Trouble::Failed(format!(
                "cannot read Secret {}/{name}: {}",
                self.namespace,
                report(&error)
            ))
        })
    }

    fn deleted_secret(&self, name: &str) -> SecretChange {
        SecretChange {
            namespace: self.namespace.clone(),
            name: name.to_string(),
            action: SecretVerb::Delete,
            fields: Vec::new(),
            keys: Vec::new(),
            reason: None,
        }
    }

    /// What the write of one Secret would change.
    async fn describe_secret(
        &self,
        action: SecretAction,
        app: &str,
        owner_uid: &str,
    ) -> Result<SecretOutcome, Trouble> {
        let (wanted, creates) = match action {
            SecretAction::Delete(name) => {
                return Ok(SecretOutcome::Change(self.deleted_secret(&name)))
            }
            SecretAction::Create(wanted) => (wanted, true),
            SecretAction::Update(wanted) => (wanted, false),
        };
        let body = secret_body(&wanted, app, owner_uid);
        let mut change = SecretChange {
            namespace: self.namespace.clone(),
            name: wanted.name().to_string(),
            action: SecretVerb::Create,
            fields: Vec::new(),
            keys: wanted
                .data()
                .iter()
                .map(|(key, _)| key.to_string())
                .collect(),
            reason: None,
        };
        // A create finds one of that name that the list did not (it lacks
        // the labels) and replaces it when it is the agent's; an update
        // replaces it whole. Read one by one, a Secret to create is known
        // to be missing.
        if creates && !self.secrets_listed {
            return Ok(SecretOutcome::Change(change));
        }
        let Some(current) = self.read_secret(wanted.name()).await? else {
            return Ok(SecretOutcome::Change(change));
        };
        if !ActualSecret::from_metadata(current.metadata.clone()).is_the_agents() {
            return Ok(SecretOutcome::Foreign(wanted.name().to_string()));
        }
        let fields = report::secret_fields(&current, &body);
        if fields.is_empty() {
            return Ok(SecretOutcome::Unchanged);
        }
        change.action = SecretVerb::Update;
        change.keys.clear();
        change.fields = fields;
        Ok(SecretOutcome::Change(change))
    }
}

/// What the write of one Secret would do.
enum SecretOutcome {
    /// It would write the Secret as it is.
    Unchanged,
    Change(SecretChange),
    /// A Secret of that name that is not the agent's: the write is refused.
    Foreign(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::plan::Replaced;

    fn plan(name: &str, action: ApplicationAction, replaces: usize) -> ApplicationPlan {
        ApplicationPlan {
            name: name.into(),
            application_id: format!("{name}-id"),
            action,
            existing_uid: None,
            secrets: Vec::new(),
            replaces: (0..replaces)
                .map(|i| Replaced {
                    name: format!("old-{name}-{i}"),
                    uid: None,
                    secrets: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_status_error_names_the_refused_applications_by_name_out_of_every_result() {
        let plan = Plan {
            applications: vec![
                plan("b", ApplicationAction::Refused("taken".into()), 0),
                plan("c", ApplicationAction::Unchanged, 1),
                plan(
                    "a",
                    ApplicationAction::Refused("two with one name".into()),
                    0,
                ),
            ],
            deferred: Vec::new(),
        };
        let (failed, total) = failures(&plan);
        assert_eq!(failed, ["a: two with one name", "b: taken"]);
        assert_eq!(total, 4, "three plans and one Application replaced");
        let (state, error, _) = decide::after_apply(&failed, total, None, None);
        assert_eq!(state, ConnectionState::Synchronized);
        assert_eq!(
            error,
            "2 of 4 applications could not be synchronized: a: two with one name; b: taken"
        );
    }
}
