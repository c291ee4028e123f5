//! The controller's decisions, as pure functions of time and status: what to do
//! next, what the status becomes after a cycle (and what in the spec), how
//! long to wait after failures, and the conditions to report.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::certificates::CertificateInfo;
use crate::crd::compass_connection::{
    ApplicationSyncResult, CertificateStatus, CompassConnectionSpec, CompassConnectionStatus,
    ConnectionState, ManagementInfo, SyncOperation, SynchronizationStatus, MAX_LISTED_RESULTS,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do before this much time has passed.
    Wait(Duration),
    /// Get a certificate with the configured one-time token.
    Establish,
    /// Check the connection with the certificate (and renew it when due).
    Maintain,
}

/// What the reconcile does now. `next_attempt_at` is when the last reconcile
/// scheduled the next attempt (the sync period after a success, the backoff
/// after a failure); it is unknown after a restart.
pub fn next_step(
    now: Timestamp,
    spec: &CompassConnectionSpec,
    status: &CompassConnectionStatus,
    minimal_sync_time: Duration,
    next_attempt_at: Option<Timestamp>,
) -> Step {
    let forced = spec.resync_now || spec.refresh_credentials_now;
    if !forced {
        let mut wait = Duration::ZERO;
        if let Some(last) = status.connection_status.last_sync.as_ref() {
            wait = wait.max(remaining(now, last.0, minimal_sync_time));
        }
        if let Some(not_before) = next_attempt_at {
            wait = wait.max(until(now, not_before));
        }
        if !wait.is_zero() {
            return Step::Wait(wait);
        }
    }
    if status.connection_state == ConnectionState::ConnectionFailed {
        Step::Establish
    } else {
        Step::Maintain
    }
}

/// What establishing or maintaining the connection came to.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnectionOutcome {
    /// A certificate for the one-time token.
    Established {
        certificate: CertificateInfo,
        management_info: ManagementInfo,
        /// A part of the credentials that could not be stored (the CA), and
        /// its category: the certificate works, the state says what failed.
        credentials_problem: Option<(String, &'static str)>,
    },
    /// The stored certificate works; it was renewed or not; the Connector
    /// told the management URLs, or did not.
    Maintained {
        certificate: CertificateInfo,
        renewed: bool,
        management_info: Option<ManagementInfo>,
        credentials_problem: Option<(String, &'static str)>,
    },
    Failed {
        /// For the status.
        error: String,
        /// The Event's reason, a metrics label.
        category: &'static str,
        /// The credentials can no longer work: only the token can help.
        credentials_gone: bool,
    },
}

impl ConnectionOutcome {
    fn credentials_problem(&self) -> Option<&(String, &'static str)> {
        match self {
            ConnectionOutcome::Established {
                credentials_problem,
                ..
            }
            | ConnectionOutcome::Maintained {
                credentials_problem,
                ..
            } => credentials_problem.as_ref(),
            ConnectionOutcome::Failed { .. } => None,
        }
    }

    /// The certificate the agent works with after it, if any.
    pub fn certificate(&self) -> Option<&CertificateInfo> {
        match self {
            ConnectionOutcome::Established { certificate, .. }
            | ConnectionOutcome::Maintained { certificate, .. } => Some(certificate),
            ConnectionOutcome::Failed { .. } => None,
        }
    }
}

/// What a synchronization of Applications came to.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncReport {
    pub state: ConnectionState,
    pub status: SynchronizationStatus,
    /// The category of its failure, if it failed.
    pub failure: Option<&'static str>,
}

/// Short for the state every cycle aims at.
pub const SYNCHRONIZED: ConnectionState = ConnectionState::Synchronized;

/// The state, the synchronization error and the failure's category after the
/// Applications were applied (`failed`: `<name>: <error>` of each that
/// failed, of `total`) and the Runtime labelled.
///
/// The original agent's contract, which the components that provision
/// runtimes wait on: `Synchronized` once the sync ran and the Runtime was
/// labelled, whatever single Applications did (they are named, bounded, in
/// the error, and are no failure of the cycle: no backoff); labels that could
/// not be set are `MetadataUpdateFailed`. Beyond it: a list of applications
/// that did not come whole (`incomplete`: why; nothing was deleted) is
/// `SynchronizationFailed`, which those components accept too.
pub fn after_apply(
    failed: &[String],
    total: usize,
    labels_error: Option<String>,
    incomplete: Option<String>,
) -> (ConnectionState, String, Option<&'static str>) {
    let failed_summary = failed_applications(failed, total);
    let joined = |first: String, rest: Option<String>| match rest {
        Some(rest) if !rest.is_empty() => format!("{first}; {rest}"),
        _ => first,
    };
    if let Some(problem) = incomplete {
        let error = format!(
            "the Director's list of applications did not come whole ({problem}), so no Application was deleted in this cycle"
        );
        let rest = labels_error.map(|labels| joined(labels, failed_summary.clone()));
        return (
            ConnectionState::SynchronizationFailed,
            joined(error, rest.or(failed_summary)),
            Some("InconsistentAnswer"),
        );
    }
    match labels_error {
        Some(labels) => (
            ConnectionState::MetadataUpdateFailed,
            joined(labels, failed_summary),
            Some("MetadataUpdateFailed"),
        ),
        None => (
            ConnectionState::Synchronized,
            failed_summary.unwrap_or_default(),
            None,
        ),
    }
}

/// The results the status lists, and how many it leaves out: at most
/// [`MAX_LISTED_RESULTS`], failures first, then changes (created, updated,
/// deleted), then the unchanged, each group in the order given; each error
/// bounded. Every result still has its log line; the counts of all are in
/// the metrics.
pub fn listed_results(
    mut results: Vec<ApplicationSyncResult>,
) -> (Vec<ApplicationSyncResult>, u32) {
    let rank = |operation: SyncOperation| match operation {
        SyncOperation::Failed => 0,
        SyncOperation::Created | SyncOperation::Updated | SyncOperation::Deleted => 1,
        SyncOperation::Unchanged => 2,
    };
    results.sort_by_key(|result| rank(result.operation));
    let not_listed = results.len().saturating_sub(MAX_LISTED_RESULTS);
    results.truncate(MAX_LISTED_RESULTS);
    for result in &mut results {
        result.error = crate::report::bounded(&result.error, FAILURE_REASON_LEN);
    }
    (results, u32::try_from(not_listed).unwrap_or(u32::MAX))
}

/// How many of the failed Applications are named in the status error; the
/// rest are counted (each one has its own log line and, with this project's
/// CRD, its result in `synchronizationStatus.applications`).
pub const NAMED_FAILURES: usize = 5;
/// The longest reason quoted for one Application.
const FAILURE_REASON_LEN: usize = 300;

/// `2 of 200 applications could not be synchronized: a: …; b: …` (the first
/// [`NAMED_FAILURES`], then `and N more`); `None` when none failed.
pub fn failed_applications(failed: &[String], total: usize) -> Option<String> {
    if failed.is_empty() {
        return None;
    }
    let named: Vec<String> = failed
        .iter()
        .take(NAMED_FAILURES)
        .map(|failure| crate::report::bounded(failure, FAILURE_REASON_LEN))
        .collect();
    let mut summary = format!(
        "{} of {total} applications could not be synchronized: {}",
        failed.len(),
        named.join("; ")
    );
    if failed.len() > NAMED_FAILURES {
        summary.push_str(&format!(
            "; and {} more (see the agent's log)",
            failed.len() - NAMED_FAILURES
        ));
    }
    Some(summary)
}

/// The management URLs after this outcome: the Connector's, when it told
/// them, else those in the spec.
pub fn management_info_after(
    spec: &CompassConnectionSpec,
    outcome: &ConnectionOutcome,
) -> ManagementInfo {
    match outcome {
        ConnectionOutcome::Established {
            management_info, ..
        }
        | ConnectionOutcome::Maintained {
            management_info: Some(management_info),
            ..
        } => management_info.clone(),
        _ => spec.management_info.clone(),
    }
}

/// Everything a cycle's status transition depends on.
pub struct Cycle<'a> {
    pub now: Timestamp,
    /// `Establish` or `Maintain` (a cycle that waits has no transition).
    pub step: Step,
    pub spec: &'a CompassConnectionSpec,
    pub previous: &'a CompassConnectionStatus,
    pub connection: &'a ConnectionOutcome,
    /// `None` when no synchronization ran (not due, or no credentials).
    pub sync: Option<SyncReport>,
    /// Where the connection parameters were read from, if they were read.
    pub configuration_source: Option<String>,
    /// The `metadata.generation` the cycle ran for.
    pub generation: Option<i64>,
    /// The digest of a one-time token presented in this cycle.
    pub presented_token: Option<String>,
    /// When certificate validity is judged for the conditions: at the end of
    /// the cycle, since a certificate issued during it is valid from a later
    /// second.
    pub judged_at: Timestamp,
}

/// What to write to the spec after a cycle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpecChanges {
    /// New management URLs, when they differ from the spec's.
    pub management_info: Option<ManagementInfo>,
    pub clear_resync_now: bool,
    pub clear_refresh_credentials_now: bool,
    /// The digest of the one-time token just presented, to record.
    pub presented_token: Option<String>,
}

impl SpecChanges {
    pub fn is_empty(&self) -> bool {
        self == &SpecChanges::default()
    }
}

/// When the next cycle comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// All went well: after the sync period, or sooner when the certificate
    /// becomes due for renewal.
    AfterSuccess,
    /// The certificate stopped working: connect anew with the token after
    /// the minimal sync time, without a backoff.
    Reconnect,
    /// A failure: back off.
    Backoff,
}

/// The outcome of a cycle, as data.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub status: CompassConnectionStatus,
    pub spec: SpecChanges,
    /// The category of the failure that decides the state, if any: the
    /// reason of the Warning Event.
    pub failure: Option<&'static str>,
    pub requeue: Requeue,
}

/// The status after a cycle, the spec changes to make, and the requeue.
pub fn transition(cycle: Cycle<'_>) -> Transition {
    let Cycle {
        now,
        step,
        spec,
        previous,
        connection,
        sync,
        configuration_source,
        generation,
        presented_token,
        judged_at,
    } = cycle;
    let mut status = previous.clone();
    let mut changes = SpecChanges {
        presented_token,
        ..SpecChanges::default()
    };
    let mut failure = None;
    let cs = &mut status.connection_status;
    cs.last_sync = Some(Time(now));
    let management_info = management_info_after(spec, connection);
    if management_info != spec.management_info {
        changes.management_info = Some(management_info);
    }
    match connection {
        ConnectionOutcome::Established { certificate, .. } => {
            cs.established = Some(Time(now));
            cs.last_success = Some(Time(now));
            cs.error.clear();
            cs.certificate_status = certificate_status(certificate, now);
            status.connection_state = ConnectionState::Connected;
            // A fresh certificate also answers a pending renewal request.
            changes.clear_refresh_credentials_now = spec.refresh_credentials_now;
        }
        ConnectionOutcome::Maintained {
            certificate,
            renewed,
            ..
        } => {
            cs.last_success = Some(Time(now));
            cs.error.clear();
            if *renewed {
                cs.renewed = Some(Time(now));
                cs.certificate_status = certificate_status(certificate, now);
                changes.clear_refresh_credentials_now = spec.refresh_credentials_now;
            } else {
                // Acquired when it was first seen, not at every check.
                let acquired = cs.certificate_status.acquired.clone();
                cs.certificate_status = certificate_status(certificate, now);
                cs.certificate_status.acquired = acquired.or(Some(Time(now)));
            }
            if !status.connection_state.is_connected() {
                status.connection_state = ConnectionState::Connected;
            }
        }
        ConnectionOutcome::Failed {
            error,
            category,
            credentials_gone,
        } => {
            cs.error = error.clone();
            status.connection_state = if step == Step::Establish || *credentials_gone {
                ConnectionState::ConnectionFailed
            } else {
                ConnectionState::ConnectionMaintenanceFailed
            };
            failure = Some(*category);
        }
    }
    if let Some(sync) = sync {
        changes.clear_resync_now = spec.resync_now;
        status.connection_state = sync.state;
        status.synchronization_status = Some(sync.status);
        if sync.failure.is_some() {
            failure = sync.failure;
        }
    }
    // The certificate works, but not all of the credentials could be stored:
    // the connection's maintenance failed, whatever the sync did.
    if let Some((problem, category)) = connection.credentials_problem() {
        status.connection_status.error = problem.clone();
        status.connection_state = ConnectionState::ConnectionMaintenanceFailed;
        failure = Some(*category);
    }
    if let Some(source) = configuration_source {
        status.connection_status.configuration_source = source;
    }
    let error = current_error(&status);
    status.conditions = conditions(
        &previous.conditions,
        status.connection_state,
        &error,
        connection.certificate(),
        judged_at,
        generation,
    );
    status.observed_generation = generation;
    let requeue = match failure {
        None => Requeue::AfterSuccess,
        // The stored certificate stopped working: the token may help at once.
        Some(_)
            if status.connection_state == ConnectionState::ConnectionFailed
                && step == Step::Maintain =>
        {
            Requeue::Reconnect
        }
        Some(_) => Requeue::Backoff,
    };
    Transition {
        status,
        spec: changes,
        failure,
        requeue,
    }
}

/// The category of a cycle abandoned at its deadline (`APP_CYCLE_TIMEOUT`).
pub const CYCLE_TIMEOUT: &str = "CycleTimeout";

/// Where a cycle was when it was abandoned at its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbandonedIn {
    /// Establishing or maintaining the connection (the Connector, the
    /// certificate Secrets).
    Connection,
    /// Anything after it: the synchronization, the status write.
    Synchronization,
}

/// The status after a cycle abandoned at its deadline (`error` says after
/// how long and what it waited for): the previous status, with the error
/// where the operator reads it and the state of the step that did not
/// finish. A connection that had failed stays `ConnectionFailed`; nothing
/// the cycle did not finish is claimed (no new timestamps of success).
pub fn after_deadline(
    previous: &CompassConnectionStatus,
    abandoned_in: AbandonedIn,
    error: String,
    now: Timestamp,
    generation: Option<i64>,
) -> CompassConnectionStatus {
    let mut status = previous.clone();
    status.connection_status.last_sync = Some(Time(now));
    match (previous.connection_state, abandoned_in) {
        (ConnectionState::ConnectionFailed, _) => {
            status.connection_status.error = error;
        }
        (_, AbandonedIn::Connection) => {
            status.connection_state = ConnectionState::ConnectionMaintenanceFailed;
            status.connection_status.error = error;
        }
        (_, AbandonedIn::Synchronization) => {
            status.connection_state = ConnectionState::SynchronizationFailed;
            let sync = status
                .synchronization_status
                .get_or_insert_with(Default::default);
            sync.last_attempt = Some(Time(now));
            sync.error = error;
        }
    }
    let certificate = previous
        .connection_status
        .certificate_status
        .not_before
        .as_ref()
        .zip(
            previous
                .connection_status
                .certificate_status
                .not_after
                .as_ref(),
        )
        .map(|(not_before, not_after)| CertificateInfo {
            subject: String::new(),
            common_name: String::new(),
            serial: String::new(),
            not_before: not_before.0,
            not_after: not_after.0,
        });
    status.conditions = conditions(
        &previous.conditions,
        status.connection_state,
        &current_error(&status),
        certificate.as_ref(),
        now,
        generation,
    );
    status.observed_generation = generation;
    status
}

/// The error an operator reads first: the connection's, else the last
/// synchronization's.
pub fn current_error(status: &CompassConnectionStatus) -> String {
    if !status.connection_status.error.is_empty() {
        return status.connection_status.error.clone();
    }
    status
        .synchronization_status
        .as_ref()
        .map(|s| s.error.clone())
        .unwrap_or_default()
}

fn certificate_status(certificate: &CertificateInfo, acquired: Timestamp) -> CertificateStatus {
    CertificateStatus {
        acquired: Some(Time(acquired)),
        not_before: Some(Time(certificate.not_before)),
        not_after: Some(Time(certificate.not_after)),
    }
}

/// What decides whether a maintenance asks the certificate-secured Connector.
#[derive(Clone, Copy, Debug)]
pub struct ConnectorCheck {
    pub now: Timestamp,
    /// When it last answered (unknown after a restart).
    pub last: Option<Timestamp>,
    /// `APP_CONNECTOR_CHECK_INTERVAL`; zero asks every cycle.
    pub interval: Duration,
    pub renewal_due: bool,
    /// `spec.refreshCredentialsNow`.
    pub refresh_asked: bool,
    /// The Director refused the certificate since the last answer.
    pub director_refused: bool,
}

/// The Connector's answer matters only when the certificate is to be
/// renewed, when the Director refused it, or for management URLs that may
/// have changed: so it is asked then, and otherwise once an interval (and
/// at the first maintenance after a start). The original agent asks at every
/// cycle: at Kyma's settings, half of a runtime's Compass requests.
pub fn connector_check_due(check: ConnectorCheck) -> bool {
    if check.renewal_due || check.refresh_asked || check.director_refused {
        return true;
    }
    match check.last {
        None => true,
        Some(last) => remaining(check.now, last, check.interval).is_zero(),
    }
}

/// Whether Applications are synchronized in this reconcile: at most once per
/// minimal sync time, unless `spec.resyncNow` asks for it.
pub fn sync_due(
    now: Timestamp,
    spec: &CompassConnectionSpec,
    sync: Option<&SynchronizationStatus>,
    minimal_sync_time: Duration,
) -> bool {
    if spec.resync_now {
        return true;
    }
    match sync.and_then(|s| s.last_attempt.as_ref()) {
        Some(last) => remaining(now, last.0, minimal_sync_time).is_zero(),
        None => true,
    }
}

/// What the agent remembers of failures between reconciles (lost on a
/// restart, by design: everything that matters is in the cluster).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    pub consecutive_failures: u32,
    /// When the next attempt was scheduled: reconciles that come earlier
    /// (our own writes trigger them) only wait, see [`next_step`].
    pub next_attempt_at: Option<Timestamp>,
}

/// How writing a reconcile's outcome failed, as `error_policy` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFailure {
    /// Someone changed `compass-connection` meanwhile: read it again, soon.
    Conflict,
    /// It was deleted: it is created anew, and that starts the next cycle.
    Gone,
    /// Any other failure: back off.
    Other,
}

/// Why the next run is decided now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A cycle ended, and its transition asked for this requeue.
    Cycle(Requeue),
    /// A cycle could not be written (see `reconcile::error_policy`).
    WriteFailed(WriteFailure),
    /// The failures no longer tell anything of the next attempt: the
    /// operator changed the configuration, `compass-connection` was deleted
    /// (it is created anew, in `ConnectionFailed`), or a new leader term
    /// starts from the cluster's state. Each of them starts a reconcile at
    /// once.
    Reset,
}

/// Everything the next run depends on.
#[derive(Clone, Copy, Debug)]
pub struct NextRunInput {
    pub now: Timestamp,
    pub cause: Cause,
    /// What was remembered before.
    pub backoff: Backoff,
    /// When the certificate in use becomes due for renewal, if there is one.
    pub renewal_due_at: Option<Timestamp>,
    /// `APP_CONTROLLER_SYNC_PERIOD`.
    pub sync_period: Duration,
    /// `APP_MINIMAL_COMPASS_SYNC_TIME`: the reconnect delay and the backoff's
    /// base (at least a second).
    pub minimal_sync_time: Duration,
    /// `APP_MAX_RETRY_DELAY`: the backoff's cap.
    pub max_retry_delay: Duration,
    /// A sample in [0, 1) for the backoff's jitter.
    pub jitter: f64,
}

/// When the next reconcile runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    After(Duration),
    /// When `compass-connection` changes (it is created anew).
    OnChange,
}

/// The next run and what to remember for the reconciles before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextRun {
    pub run: Run,
    pub backoff: Backoff,
}

/// How long a write conflict waits: the object is read again at once, the
/// short delay only lets the other writer finish.
pub const CONFLICT_RETRY: Duration = Duration::from_millis(200);

/// When the next cycle runs: the one place that decides it.
///
/// - after a success: the sync period, or sooner when the certificate
///   becomes due for renewal; failures are forgotten; the first success
///   after failures or after a start waits a jittered longer period (see
///   [`period_after_success`]);
/// - when the certificate stopped working: connect anew with the token after
///   the minimal sync time, without a backoff (the token may help at once);
/// - after a failed cycle or a failed write: exponential backoff with jitter,
///   from the minimal sync time up to the max retry delay;
/// - after a write conflict: again shortly, after a deletion: when the object
///   is back; neither counts as a failure nor moves the scheduled attempt;
/// - after a reset: nothing remembered, the next attempt may come at once.
pub fn next_run(input: NextRunInput) -> NextRun {
    let NextRunInput {
        now,
        cause,
        backoff,
        renewal_due_at,
        sync_period,
        minimal_sync_time,
        max_retry_delay,
        jitter,
    } = input;
    let forget_failures = |delay: Duration| NextRun {
        run: Run::After(delay),
        backoff: Backoff {
            consecutive_failures: 0,
            next_attempt_at: after(now, delay),
        },
    };
    match cause {
        Cause::Cycle(Requeue::AfterSuccess) => {
            let period = period_after_success(backoff, sync_period, jitter);
            forget_failures(requeue_after_success(now, period, renewal_due_at))
        }
        Cause::Cycle(Requeue::Reconnect) => forget_failures(minimal_sync_time),
        Cause::Cycle(Requeue::Backoff) | Cause::WriteFailed(WriteFailure::Other) => {
            let consecutive_failures = backoff.consecutive_failures.saturating_add(1);
            let delay = backoff_delay(
                consecutive_failures,
                minimal_sync_time.max(Duration::from_secs(1)),
                max_retry_delay,
                jitter,
            );
            NextRun {
                run: Run::After(delay),
                backoff: Backoff {
                    consecutive_failures,
                    next_attempt_at: after(now, delay),
                },
            }
        }
        Cause::WriteFailed(WriteFailure::Conflict) => NextRun {
            run: Run::After(CONFLICT_RETRY),
            backoff,
        },
        Cause::WriteFailed(WriteFailure::Gone) => NextRun {
            run: Run::OnChange,
            backoff,
        },
        Cause::Reset => NextRun {
            run: Run::After(Duration::ZERO),
            backoff: Backoff::default(),
        },
    }
}

/// `now + delay`, unless that is beyond what a timestamp holds.
fn after(now: Timestamp, delay: Duration) -> Option<Timestamp> {
    jiff::SignedDuration::try_from(delay)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
}

/// Exponential backoff with "equal jitter": the n-th consecutive failure waits
/// between half and all of `base × 2^(n-1)`, capped at `cap`. `random` is in [0, 1).
pub fn backoff_delay(
    consecutive_failures: u32,
    base: Duration,
    cap: Duration,
    random: f64,
) -> Duration {
    let exponent = consecutive_failures.saturating_sub(1).min(30);
    let full = base.saturating_mul(1 << exponent).min(cap);
    let random = if random.is_nan() {
        0.0
    } else {
        random.clamp(0.0, 1.0)
    };
    // In f64 seconds, which round: never above `full` (so never above the
    // cap), and no panic near `Duration::MAX`.
    Duration::try_from_secs_f64(full.as_secs_f64() * (0.5 + 0.5 * random))
        .map_or(full, |delay| delay.min(full))
}

/// The period after a successful cycle. After failures, or at the first
/// cycle after a start or a reset (nothing remembered), it is stretched by
/// `jitter` × itself: between one and two periods. A fleet that came back
/// from a Compass outage, or that started in the same minute (provisioned
/// at once, restarted by an upgrade), has come back or started within a
/// few minutes; with the plain period it would keep cycling in that
/// bunch, where the second cycles of the first to return meet the first
/// cycles of the last (after an outage: 1.55× the steady rate of requests
/// at 10,000 runtimes) and a fleet started in one minute sends all its
/// requests in one minute of every three (BENCHMARKS.md, "Fleet
/// simulation"). Stretched, each runtime's cycles fall at a random moment
/// of the period, as in a fleet that started at random times. A runtime in
/// its steady state keeps the plain period: its rate of requests is the
/// same. `jitter` is in [0, 1).
pub fn period_after_success(backoff: Backoff, sync_period: Duration, jitter: f64) -> Duration {
    let returning = backoff.consecutive_failures > 0 || backoff.next_attempt_at.is_none();
    if !returning {
        return sync_period;
    }
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    // In f64 seconds, as the backoff: no panic near `Duration::MAX`.
    let stretch = Duration::try_from_secs_f64(sync_period.as_secs_f64() * jitter)
        .map_or(sync_period, |stretch| stretch.min(sync_period));
    sync_period.saturating_add(stretch)
}

/// The next reconcile after a success: the sync period, or earlier when the
/// certificate becomes due for renewal before that.
pub fn requeue_after_success(
    now: Timestamp,
    sync_period: Duration,
    renewal_due_at: Option<Timestamp>,
) -> Duration {
    let mut after = sync_period;
    if let Some(due) = renewal_due_at {
        after = after.min(until(now, due).max(Duration::from_secs(1)));
    }
    after.max(Duration::from_millis(100))
}

fn remaining(now: Timestamp, since: Timestamp, period: Duration) -> Duration {
    let elapsed = now.duration_since(since);
    if elapsed.is_negative() {
        // A timestamp from the future (clock skew): do not wait forever.
        return Duration::ZERO;
    }
    period.saturating_sub(elapsed.unsigned_abs())
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    let left = then.duration_since(now);
    if left.is_negative() {
        Duration::ZERO
    } else {
        left.unsigned_abs()
    }
}

pub const CONDITION_CONNECTED: &str = "Connected";
pub const CONDITION_CERTIFICATE_VALID: &str = "CertificateValid";
pub const CONDITION_SYNCHRONIZED: &str = "Synchronized";

/// The standard conditions for a status. A condition keeps its
/// `lastTransitionTime` while its status does not change.
pub fn conditions(
    previous: &[Condition],
    state: ConnectionState,
    error: &str,
    certificate: Option<&CertificateInfo>,
    now: Timestamp,
    generation: Option<i64>,
) -> Vec<Condition> {
    let (connected, connected_reason, connected_message) = if state.is_connected() {
        (
            true,
            "Connected".to_string(),
            "the Runtime holds a working connection to Compass".to_string(),
        )
    } else {
        (false, state.to_string(), error.to_string())
    };
    let (valid, valid_reason, valid_message) = match certificate {
        Some(info) if info.is_valid_at(now) => {
            (true, "Valid", format!("valid until {}", info.not_after))
        }
        Some(info) if now >= info.not_after => {
            (false, "Expired", format!("expired at {}", info.not_after))
        }
        Some(info) => (
            false,
            "NotYetValid",
            format!("valid from {}", info.not_before),
        ),
        None => (
            false,
            "NoCertificate",
            "the agent holds no client certificate".to_string(),
        ),
    };
    let (synchronized, sync_reason, sync_message) = match state {
        ConnectionState::Synchronized => (
            true,
            "Synchronized".to_string(),
            "Applications match the Director".to_string(),
        ),
        ConnectionState::Connected => (
            false,
            "NotSynchronizedYet".to_string(),
            "no synchronization has finished yet".to_string(),
        ),
        other => (false, other.to_string(), error.to_string()),
    };
    [
        (
            CONDITION_CONNECTED,
            connected,
            connected_reason,
            connected_message,
        ),
        (
            CONDITION_CERTIFICATE_VALID,
            valid,
            valid_reason.to_string(),
            valid_message,
        ),
        (
            CONDITION_SYNCHRONIZED,
            synchronized,
            sync_reason,
            sync_message,
        ),
    ]
    .into_iter()
    .map(|(kind, ok, reason, message)| {
        let status = if ok { "True" } else { "False" };
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: kind.to_string(),
            status: status.to_string(),
            reason,
            message,
            last_transition_time,
            observed_generation: generation,
        }
    })
    .collect()
}

#[cfg(test)]
mod tests;
