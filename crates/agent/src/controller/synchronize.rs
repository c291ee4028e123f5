//! Synchronizing Applications: fetch from the Director (with the runtime's
//! labels), read the cluster, plan, apply, label the Runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::context::Context;
use super::decide::{self, SyncReport};
use super::errors::{SyncError, MAX_ERROR_LEN};
use super::progress::Wait;
use super::read_gate::{self, ReadGate};
use crate::certificates::ClientCredentials;
use crate::compass::director::{
    Arrival, DirectorClient, FetchOutcome, Handled, RuntimeLabelValues,
};
use crate::crd::compass_connection::{ManagementInfo, SyncOperation, SynchronizationStatus};
use crate::k8s::applications::{ApplyOutcome, Replacement};
use crate::report::{bounded, report, Report};
use crate::sync::{
    self, known_answers, names, ActualIndex, ActualState, AnswerDigest, AnswerRecord,
    ConversionSettings, Deletions, HeldApplication, KnownAnswers, OwnedDigest, Packer,
};

pub const EVENTS_URL_LABEL: &str = "runtime_eventServiceUrl";
pub const CONSOLE_URL_LABEL: &str = "runtime_consoleUrl";

/// Fetches, plans, applies and labels. Never deletes anything unless the fetch
/// succeeded completely. Returns what it came to, and the Applications that
/// were replaced by one under a new name.
pub(super) async fn synchronize(
    ctx: &Context,
    credentials: &ClientCredentials,
    management_info: &ManagementInfo,
    previous: Option<SynchronizationStatus>,
    now: Timestamp,
    request_id: &str,
) -> (SyncReport, Vec<Replacement>) {
    let started = Instant::now();
    let mut status = previous.unwrap_or_default();
    status.last_attempt = Some(Time(now));
    status.error.clear();
    let applied = fetch_and_apply(
        ctx,
        credentials,
        management_info,
        &mut status,
        now,
        request_id,
    )
    .await;
    ctx.metrics.record_sync(started.elapsed().as_secs_f64());
    let (report, replaced) = match applied {
        Ok(applied) => {
            let labels_error = applied.labels.err().map(|error| {
                tracing::warn!(error = %Report(&error), "cannot label the Runtime");
                report(&error)
            });
            let (state, error, failure) = decide::after_apply(
                &applied.failed,
                applied.total,
                labels_error,
                applied.incomplete,
            );
            status.error = bounded(&error, MAX_ERROR_LEN);
            (
                SyncReport {
                    state,
                    status,
                    failure,
                },
                applied.replaced,
            )
        }
        Err(error) => {
            tracing::warn!(error = %Report(&error), "synchronization failed");
            if let SyncError::Fetch(compass) = &error {
                if compass.is_refusal() {
                    // The Connector may say why (new URLs), or renew.
                    ctx.remembered().want_connector_check();
                }
            }
            status.error = bounded(&report(&error), MAX_ERROR_LEN);
            (
                SyncReport {
                    state: error.state(),
                    status,
                    failure: Some(error.category()),
                },
                Vec::new(),
            )
        }
    };
    if report.state == decide::SYNCHRONIZED {
        ctx.metrics.set_last_successful_sync(now.as_second());
    }
    (report, replaced)
}

/// What applying the Director's applications did.
struct Applied {
    /// `<name>: <error>` of each Application that failed.
    failed: Vec<String>,
    /// How many Applications the plan had.
    total: usize,
    replaced: Vec<Replacement>,
    /// Labelling the Runtime, after the Applications.
    labels: Result<(), SyncError>,
    /// Why the list of applications did not come whole (nothing was deleted).
    incomplete: Option<String>,
}

/// What one synchronization would write: the plan against the cluster as
/// read, with what the Director said. Nothing is written to make it.
pub struct PlannedSync {
    pub plan: sync::Plan,
    /// The Director client of this sync, to label the Runtime with.
    pub director: DirectorClient,
    /// The Runtime's labels, as read with the applications.
    pub labels: RuntimeLabelValues,
    /// Why the list of applications did not come whole (nothing is deleted).
    pub incomplete: Option<String>,
    /// How many applications the Director has for the Runtime.
    pub wanted: usize,
    /// How many of them the cluster already held as wanted when they arrived.
    pub settled: usize,
    /// How many of those were settled from their remembered answer, not
    /// parsed ([`sync::known_answers`]).
    pub recalled: usize,
    pub fetch_time: std::time::Duration,
    pub read_time: std::time::Duration,
}

/// Reads the Director and the cluster and plans the writes; sets
/// `sync.last_successful_fetch` once the Director's applications came.
pub async fn plan_sync(
    ctx: &Context,
    credentials: &ClientCredentials,
    management_info: &ManagementInfo,
    sync: &mut SynchronizationStatus,
    now: Timestamp,
    request_id: &str,
) -> Result<PlannedSync, SyncError> {
    let parameters = ctx.read_runtime_parameters().await?;
    let graphql = ctx
        .graphql(&management_info.director_url, Some(credentials), request_id)
        .map_err(SyncError::Fetch)?;
    let director = DirectorClient::new(
        graphql,
        &parameters.runtime_id,
        &parameters.tenant,
        ctx.settings.director_page_size,
    );
    // The Director and the cluster are read at the same time; nothing is
    // planned (so nothing deleted) unless the fetch succeeded completely.
    // Once the cluster has been read, each Director application is compared
    // with it as it arrives, and one the cluster already holds keeps only its
    // names ([`sync::settle`]): an idle sync does not hold every
    // application's wanted state until the fetch ends; one whose answer is
    // the last fetch's is not even parsed ([`sync::known_answers`]). Before
    // the read has ended, the fetch waits for it rather than hold too much
    // whole, or, when answers are known, rather than parse them
    // ([`sync::fetch_waits_for_cluster`], [`read_gate`]).
    let cluster: OnceLock<Arc<ActualState>> = OnceLock::new();
    let known = ctx.remembered().take_known_answers();
    let (director_ref, cluster_ref, known_ref) = (&director, &cluster, &known);
    let fetch = |read_gate: ReadGate| async move {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let _waiting = ctx.progress.waiting(Wait::Director);
            let fetched =
                fetch_applications(ctx, director_ref, cluster_ref, &read_gate, known_ref).await?;
            let problem = fetched
                .outcome
                .inconsistency
                .clone()
                .or_else(|| fetched.wanted.iter().find_map(|w| w.inconsistency.clone()));
            match problem {
                // Most often a change between two page requests: again.
                Some(problem) if attempt < FETCH_TRIES => {
                    tracing::info!(attempt, %problem, "the Director's answer did not come whole; fetching again");
                }
                _ => return Ok::<_, SyncError>((fetched, started.elapsed())),
            }
        }
    };
    let read_cluster = async {
        let started = Instant::now();
        let _waiting = ctx.progress.waiting(Wait::ClusterRead);
        let actual = ctx.applications.read_actual().await?;
        // Only a whole list of the Secrets can tell that one is as wanted.
        if actual.secrets_listed {
            let _ = cluster.set(actual);
            Ok::<_, SyncError>((None, started.elapsed()))
        } else {
            Ok((Some(actual), started.elapsed()))
        }
    };
    let (fetched, read) = read_gate::fetch_while_reading(fetch, read_cluster).await;
    // What a fetch that failed saw is not the Director's whole answer: the
    // answers known before stay.
    let (
        Fetched {
            mut wanted,
            outcome,
            seen,
            recalled,
        },
        fetch_time,
    ) = match fetched {
        Ok(fetched) => fetched,
        Err(error) => {
            ctx.remembered().keep_known_answers(known);
            return Err(error);
        }
    };
    drop(known);
    ctx.remembered().keep_known_answers(seen);
    sync.last_successful_fetch = Some(Time(now));
    let (unlisted, read_time) = read?;
    let actual = match unlisted {
        Some(actual) => {
            // Not listed, so not kept: this sync's own.
            let mut actual = Arc::unwrap_or_clone(actual);
            let wanted_secrets: Vec<String> = wanted
                .iter()
                .flat_map(HeldApplication::secret_names)
                .map(String::from)
                .collect();
            let _waiting = ctx.progress.waiting(Wait::ClusterRead);
            ctx.applications
                .read_named_secrets(&mut actual, wanted_secrets)
                .await?;
            Arc::new(actual)
        }
        None => cluster.into_inner().unwrap_or_default(),
    };
    // Those that came before the cluster had been read. None, when the read
    // finished before the first page: then the cluster is indexed once, as
    // the first application arrives, and not a second time here.
    if wanted.iter().any(|held| !held.is_settled()) {
        let index = ActualIndex::new(&actual);
        wanted = wanted
            .into_iter()
            .map(|held| sync::settle(held, &index))
            .collect();
    }
    let settled = wanted.iter().filter(|w| w.is_settled()).count();
    let wanted_count = wanted.len();
    // A list of applications that did not come whole cannot say which are
    // gone: create and update, but delete nothing.
    let deletions = match &outcome.inconsistency {
        None => Deletions::Allowed,
        Some(problem) => {
            tracing::warn!(%problem, tries = FETCH_TRIES, "the Director's list of applications did not come whole; no Application is deleted in this cycle");
            Deletions::Skipped
        }
    };
    let plan = sync::plan(wanted, &actual, deletions);
    drop(actual);
    Ok(PlannedSync {
        plan,
        director,
        labels: outcome.labels,
        incomplete: outcome.inconsistency,
        wanted: wanted_count,
        settled,
        recalled,
        fetch_time,
        read_time,
    })
}

async fn fetch_and_apply(
    ctx: &Context,
    credentials: &ClientCredentials,
    management_info: &ManagementInfo,
    sync: &mut SynchronizationStatus,
    now: Timestamp,
    request_id: &str,
) -> Result<Applied, SyncError> {
    let PlannedSync {
        plan,
        director,
        labels,
        incomplete,
        wanted: wanted_count,
        settled,
        recalled,
        fetch_time,
        read_time,
    } = plan_sync(ctx, credentials, management_info, sync, now, request_id).await?;
    let phase = Instant::now();
    for waiting in &plan.deferred {
        tracing::info!(application = %waiting.name, secrets = ?waiting.owned_secrets, "the Application is deleted at a later cycle: it owns Secrets another Application refers to, which get that Application as their owner first");
    }
    let planned_writes = plan.writes();
    let ApplyOutcome { results, replaced } = {
        let _waiting = ctx.progress.waiting(Wait::ApplicationWrites);
        ctx.applications.apply(plan).await
    };
    let apply_time = phase.elapsed();
    let failed: Vec<_> = results
        .iter()
        .filter(|r| r.operation == SyncOperation::Failed)
        .collect();
    tracing::info!(
        applications = wanted_count,
        unchanged_on_arrival = settled,
        recalled,
        writes = planned_writes,
        failed = failed.len(),
        fetch_ms = fetch_time.as_millis() as u64,
        read_cluster_ms = read_time.as_millis() as u64,
        apply_ms = apply_time.as_millis() as u64,
        "applications synchronized"
    );
    ctx.metrics.set_applications_managed(wanted_count);
    ctx.metrics.set_applications_failed(failed.len());
    ctx.metrics.set_applications_recalled(recalled);
    // One line per failure: with Kyma's CRD the status names only the first
    // few, and there are no Events under Kyma's RBAC.
    for failure in &failed {
        tracing::warn!(application = %failure.name, error = %failure.error, "the Application could not be synchronized");
    }
    if failed.is_empty() {
        sync.last_successful_application = Some(Time(now));
    }
    let failed: Vec<String> = failed
        .iter()
        .map(|r| format!("{}: {}", r.name, r.error))
        .collect();
    let total = results.len();
    (sync.applications, sync.applications_not_listed) = decide::listed_results(results);
    let labels = {
        let _waiting = ctx.progress.waiting(Wait::RuntimeLabels);
        label_runtime(ctx, &director, &labels).await
    };
    Ok(Applied {
        failed,
        total,
        replaced,
        labels,
        incomplete,
    })
}

/// How often a list that did not come whole is fetched before the agent
/// goes on without deleting.
const FETCH_TRIES: usize = 3;

/// One fetch of the Director's applications. Each is converted and packed
/// (or settled to its names) as it arrives, and its fetched form dropped:
/// the fetched forms are never all in memory at once. An application whose
/// answer is one of `known`, and which the cluster (once read) holds as that
/// answer wanted, is settled from its answer's digest without being parsed
/// or converted. Returns besides what this fetch's answers wanted, for the
/// next fetch to recall.
async fn fetch_applications(
    ctx: &Context,
    director: &DirectorClient,
    cluster: &OnceLock<Arc<ActualState>>,
    read_gate: &ReadGate,
    known: &KnownAnswers,
) -> Result<Fetched, SyncError> {
    let mut wanted: Vec<HeldApplication> = Vec::new();
    // The wanted state held whole while the cluster is unread.
    let held_whole = AtomicUsize::new(0);
    let mut conversion: Option<ConversionSettings> = None;
    let mut index: Option<ActualIndex> = None;
    let mut packer = Packer::default();
    let mut record = AnswerRecord::with_room_of(known);
    // The digest of the answer being parsed, until it arrives whole.
    let mut parsing: Option<AnswerDigest> = None;
    let mut recalled = 0;
    let outcome = director
        .for_each_application(
            |labels, arrival| {
                // The runtime's labels decide how Applications are named.
                let conversion = conversion.get_or_insert_with(|| ConversionSettings {
                    normalize_application_names: names::normalizes_application_names(labels),
                    ..ctx.conversion.clone()
                });
                if index.is_none() {
                    if let Some(actual) = cluster.get() {
                        // Just read: settle those that came before.
                        let actual = index.insert(ActualIndex::new(actual));
                        wanted = std::mem::take(&mut wanted)
                            .into_iter()
                            .map(|held| sync::settle(held, actual))
                            .collect();
                    }
                }
                let fetched = match arrival {
                    Arrival::Answer { text, id, name } => {
                        let answer = AnswerDigest::of(text, conversion);
                        let remembered = index.as_ref().and_then(|actual| {
                            known.recall(&answer, (id, name), conversion, actual)
                        });
                        if let Some((held, wants)) = remembered {
                            record.remember(answer, wants);
                            wanted.push(held);
                            recalled += 1;
                            return Handled::Known;
                        }
                        parsing = Some(answer);
                        return Handled::Parse;
                    }
                    Arrival::Whole(fetched) => fetched,
                };
                let converted = sync::to_wanted_application(&fetched.application, conversion);
                // Made once: both the answer's record and the hold need it.
                let owned = OwnedDigest::of(&converted.application.spec);
                if let Some(answer) = parsing.take() {
                    if fetched.in_one_answer && fetched.inconsistency.is_none() {
                        record.remember(answer, known_answers::wanted_digest(owned, &converted));
                    }
                }
                let held = match fetched.inconsistency {
                    None => sync::hold(converted, owned, index.as_ref(), &mut packer),
                    Some(problem) => HeldApplication::packed_with(converted, owned, &mut packer)
                        .incomplete(Some(problem)),
                };
                if index.is_none() {
                    held_whole.fetch_add(held.wanted_size(), Ordering::Relaxed);
                }
                wanted.push(held);
                Handled::Parse
            },
            || {
                let read = read_gate.has_opened() || cluster.get().is_some();
                let waits = sync::fetch_waits_for_cluster(
                    held_whole.load(Ordering::Relaxed),
                    !known.is_empty(),
                    read,
                    ctx.access.list_credential_secrets.allowed(),
                );
                let read_gate = read_gate.clone();
                async move {
                    if waits {
                        let _waiting = ctx.progress.waiting(Wait::ClusterRead);
                        // Opens when the read ends, whether it succeeded or not.
                        read_gate.wait().await;
                    }
                }
            },
        )
        .await
        .map_err(SyncError::Fetch)?;
    Ok(Fetched {
        wanted,
        outcome,
        seen: record.finish(),
        recalled,
    })
}

/// What one fetch of the Director's applications came to.
struct Fetched {
    wanted: Vec<HeldApplication>,
    outcome: FetchOutcome,
    /// Its answers, for the next fetch to recall.
    seen: KnownAnswers,
    /// How many applications were settled from a remembered answer.
    recalled: usize,
}

/// Sets the Runtime's URL labels that are missing or differ, and no others.
/// `labels` are the Runtime's labels as read with the applications.
async fn label_runtime(
    ctx: &Context,
    director: &DirectorClient,
    labels: &RuntimeLabelValues,
) -> Result<(), SyncError> {
    for (key, value) in [
        (EVENTS_URL_LABEL, ctx.settings.runtime_events_url.as_str()),
        (CONSOLE_URL_LABEL, ctx.settings.runtime_console_url.as_str()),
    ] {
        if labels.get(key).and_then(|v| v.as_str()) != Some(value) {
            director
                .set_runtime_label(key, value)
                .await
                .map_err(SyncError::Labels)?;
        }
    }
    Ok(())
}
