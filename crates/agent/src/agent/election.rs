//! Leader election with a `coordination.k8s.io` Lease, so that two replicas
//! are safe: only the holder of the Lease runs the controller.
//!
//! The rules are client-go's. A Lease is free when it has no holder, or when
//! its record has not changed for `leaseDurationSeconds` as measured by *this*
//! process's clock (so clock skew between nodes does not matter). The leader
//! renews every retry period and steps down when it could not renew within the
//! renew deadline, which is shorter than the lease duration: it stops writing
//! before another replica may take over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::ObjectMeta;
use kube::Api;
use tokio_util::sync::CancellationToken;

use super::runner::{fault, ControllerError};
use crate::config::{NamespacedName, Settings};
use crate::controller::Context;
use crate::k8s::write_params;
use crate::report::Report;
use crate::telemetry::health::Readiness;

/// The longest lease duration a Lease can state (`leaseDurationSeconds`).
const MAX_LEASE_DURATION: Duration = Duration::from_secs(i32::MAX as u64);

/// How this replica takes part in the election.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    pub lease: NamespacedName,
    pub identity: String,
    pub lease_duration: Duration,
    /// The leader steps down when it could not renew for this long.
    pub renew_deadline: Duration,
    /// How often the leader renews and a candidate tries.
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// client-go's proportions: renew deadline 2/3 and retry period 2/15 of
    /// the lease duration (10 s and 2 s for the default 15 s).
    pub fn from_settings(settings: &Settings) -> ElectionConfig {
        // A Lease states its duration in whole seconds in an i32.
        let lease_duration = settings
            .leader_election_lease_duration
            .min(MAX_LEASE_DURATION);
        ElectionConfig {
            lease: settings.leader_election_lease.clone(),
            // An empty holder reads as a free Lease: never ours.
            identity: settings
                .leader_election_identity
                .clone()
                .filter(|identity| !identity.trim().is_empty())
                .unwrap_or_else(default_identity),
            lease_duration,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: (lease_duration * 2 / 15).max(Duration::from_millis(100)),
        }
    }
}

/// `POD_NAME` in a cluster (unique per Pod); elsewhere host name and process id.
pub fn default_identity() -> String {
    match std::env::var("POD_NAME") {
        Ok(pod) if !pod.is_empty() => return pod,
        _ => {}
    }
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "compass-runtime-agent".into());
    format!("{host}_{}", std::process::id())
}

/// What to do with the Lease as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// There is no Lease: create it, holding it.
    Create,
    /// The Lease is free or expired: take it over.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Another replica holds it; it expires in `free_in` unless renewed.
    Wait { holder: String, free_in: Duration },
}

/// The decision, from the Lease (if any), our identity, and how long its
/// record has stayed unchanged as seen by this process.
pub fn decide(
    lease: Option<&LeaseSpec>,
    identity: &str,
    unchanged_for: Duration,
    our_duration: Duration,
) -> LeaseDecision {
    let Some(spec) = lease else {
        return LeaseDecision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == identity {
        return LeaseDecision::Renew;
    }
    if holder.is_empty() {
        return LeaseDecision::Acquire;
    }
    let duration = spec
        .lease_duration_seconds
        .filter(|seconds| *seconds > 0)
        .map(|seconds| Duration::from_secs(seconds as u64))
        .unwrap_or(our_duration);
    if unchanged_for >= duration {
        LeaseDecision::Acquire
    } else {
        LeaseDecision::Wait {
            holder: holder.to_string(),
            free_in: duration - unchanged_for,
        }
    }
}

/// The spec written when we take or renew the Lease.
pub fn held_spec(
    previous: Option<&LeaseSpec>,
    identity: &str,
    duration: Duration,
    now: jiff::Timestamp,
) -> LeaseSpec {
    // As client-go counts: every time a Lease that exists changes hands,
    // a released one included (its count tells operators how often the
    // leader changed); a new Lease starts at zero.
    let existed = previous.is_some();
    let previous = previous.cloned().unwrap_or_default();
    let previous_holder = previous.holder_identity.as_deref().unwrap_or("");
    let taken_over = previous_holder != identity;
    LeaseSpec {
        holder_identity: Some(identity.to_string()),
        // Rounded up: the others must wait at least as long as we may lead
        // (our renew deadline) after they saw our last renewal.
        lease_duration_seconds: Some(lease_seconds(duration)),
        renew_time: Some(MicroTime(now)),
        acquire_time: if taken_over {
            Some(MicroTime(now))
        } else {
            previous.acquire_time.clone()
        },
        lease_transitions: Some(match previous.lease_transitions.unwrap_or(0) {
            n if taken_over && existed => n.saturating_add(1),
            n => n,
        }),
        ..previous
    }
}

/// `duration` in whole seconds, rounded up, within 1 and `i32::MAX`.
fn lease_seconds(duration: Duration) -> i32 {
    let seconds = duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0));
    seconds.clamp(1, i32::MAX as u64) as i32
}

/// The I/O around `decide`: one Lease, read and written with its
/// resourceVersion so that two candidates cannot both win.
pub struct Elector {
    api: Api<Lease>,
    config: ElectionConfig,
    /// The Lease's resourceVersion when we last saw it change, and when.
    observed: Option<(String, Instant)>,
}

impl Elector {
    pub fn new(client: kube::Client, config: ElectionConfig) -> Elector {
        Elector {
            api: Api::namespaced(client, &config.lease.namespace),
            config,
            observed: None,
        }
    }

    /// Takes or renews the Lease; `Ok(true)` when we hold it afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let name = &self.config.lease.name;
        let now = Instant::now();
        let current = self.api.get_opt(name).await?;
        if let Some(lease) = &current {
            let version = lease.metadata.resource_version.clone().unwrap_or_default();
            if self.observed.as_ref().map(|(v, _)| v) != Some(&version) {
                self.observed = Some((version, now));
            }
        }
        let unchanged_for = self
            .observed
            .as_ref()
            .map(|(_, since)| now.duration_since(*since))
            .unwrap_or_default();
        let spec = current.as_ref().and_then(|lease| lease.spec.as_ref());
        let decision = decide(
            current
                .as_ref()
                .map(|_| spec.cloned().unwrap_or_default())
                .as_ref(),
            &self.config.identity,
            unchanged_for,
            self.config.lease_duration,
        );
        let held = held_spec(
            spec,
            &self.config.identity,
            self.config.lease_duration,
            jiff::Timestamp::now(),
        );
        // The Lease counts from when the write was sent, not from when its
        // answer came: the other replicas' clocks start no later than that.
        let sent = Instant::now();
        let written = match decision {
            LeaseDecision::Wait { holder, free_in } => {
                tracing::debug!(%holder, ?free_in, "another replica holds the leader Lease");
                return Ok(false);
            }
            LeaseDecision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.config.lease.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(held),
                };
                self.api.create(&write_params(), &lease).await
            }
            LeaseDecision::Acquire | LeaseDecision::Renew => {
                let mut lease = current.unwrap_or_default();
                lease.spec = Some(held);
                // The resourceVersion travels along: a concurrent write wins
                // and we get 409 Conflict.
                self.api.replace(name, &write_params(), &lease).await
            }
        };
        match written {
            Ok(lease) => {
                let version = lease.metadata.resource_version.unwrap_or_default();
                self.observed = Some((version, sent));
                Ok(true)
            }
            Err(error) if crate::k8s::errors::is_conflict(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Gives the Lease up (at shutdown), so the next replica need not wait
    /// for it to expire.
    pub async fn release(&mut self) {
        let name = &self.config.lease.name;
        let Ok(Some(mut lease)) = self.api.get_opt(name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        match self.api.replace(name, &write_params(), &lease).await {
            Ok(_) => tracing::info!(lease = %self.config.lease, "released the leader Lease"),
            Err(error) => {
                tracing::warn!(error = %Report(&error), "cannot release the leader Lease")
            }
        }
    }
}

/// Why leading stopped.
enum TermEnd<T> {
    /// What it led until came, with its value.
    Done(T),
    /// The Lease could not be kept.
    Lost(String),
}

/// Runs the controller whenever this replica holds the Lease, until `shutdown`
/// (`Ok`), or until the controller ends by itself (`Err`, after releasing the
/// Lease, so that a standby takes over at once rather than after the lease
/// duration; `/healthz` fails from that moment).
pub async fn run_elected(
    ctx: Arc<Context>,
    readiness: Arc<Readiness>,
    config: ElectionConfig,
    shutdown: CancellationToken,
    faults: fault::Hook,
) -> Result<(), ControllerError> {
    let mut elector = Elector::new(ctx.client.clone(), config.clone());
    tracing::info!(identity = %config.identity, lease = %config.lease, "leader election: waiting for the Lease");
    loop {
        ctx.metrics.set_leader(false);
        readiness.set_standby(true);
        // A standby has no cycle due.
        ctx.progress.not_due();
        let mut last_renewal;
        loop {
            let sent = Instant::now();
            match elector.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renewal = sent;
                    break;
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(error = %Report(&error), "cannot read or take the leader Lease")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(jittered(config.retry_period)) => {}
            }
        }
        tracing::info!(identity = %config.identity, "became the leader");
        ctx.metrics.set_leader(true);
        readiness.set_standby(false);
        // A new term starts from the cluster's state, at once.
        ctx.reset_backoff();
        let term = shutdown.child_token();
        let mut controller = tokio::spawn(super::runner::run(ctx.clone(), term.clone(), faults));
        // The controller is watched while the Lease is renewed: one that
        // ended must not keep the Lease from a replica that can work.
        let end = lead(&mut elector, &config, &mut last_renewal, async {
            tokio::select! {
                _ = shutdown.cancelled() => None,
                ended = &mut controller => Some(ControllerError::of_task(ended)),
            }
        })
        .await;
        term.cancel();
        let ended = match end {
            // It ended by itself, or just as the shutdown came (`Ok`).
            TermEnd::Done(Some(ended)) => ended,
            // Let the cycle in flight finish, still holding (and renewing)
            // the Lease: another replica may take over only after our last
            // write. If the Lease cannot be kept meanwhile, stop writing.
            TermEnd::Done(None) => {
                match lead(&mut elector, &config, &mut last_renewal, &mut controller).await {
                    TermEnd::Done(ended) => ControllerError::of_task(ended),
                    TermEnd::Lost(why) => {
                        controller.abort();
                        let _ = controller.await;
                        tracing::warn!(reason = %why, "lost the leadership while finishing; the controller stopped");
                        ctx.metrics.set_leader(false);
                        return Ok(());
                    }
                }
            }
            TermEnd::Lost(why) => {
                // Someone else may lead now: stop writing at once.
                controller.abort();
                let ended = ControllerError::of_task(controller.await);
                tracing::warn!(reason = %why, "lost the leadership; the controller stopped");
                match ended {
                    Ok(()) | Err(ControllerError::Cancelled) => continue,
                    // It had ended by itself before: the Lease is gone anyway.
                    Err(error) => {
                        stopped(&readiness, &error);
                        return Err(error);
                    }
                }
            }
        };
        if let Err(error) = &ended {
            stopped(&readiness, error);
            tracing::error!(error = %Report(error), "the controller ended while this replica led; releasing the Lease so that another replica takes over");
        }
        // Bounded: a Lease that cannot be released expires by itself.
        if tokio::time::timeout(config.renew_deadline, elector.release())
            .await
            .is_err()
        {
            tracing::warn!(lease = %config.lease, "cannot release the leader Lease in time; it expires by itself");
        }
        ctx.metrics.set_leader(false);
        return ended;
    }
}

/// `/healthz` fails from now on.
fn stopped(readiness: &Readiness, error: &ControllerError) {
    readiness.set_controller_stopped(Report(error).to_string());
}

/// Renews the Lease every retry period until `until` comes (`Done`) or the
/// Lease is lost: taken by another replica, or not renewed within the renew
/// deadline, counted from when the last successful renewal was sent.
async fn lead<T>(
    elector: &mut Elector,
    config: &ElectionConfig,
    last_renewal: &mut Instant,
    until: impl std::future::Future<Output = T>,
) -> TermEnd<T> {
    let mut until = std::pin::pin!(until);
    loop {
        tokio::select! {
            value = &mut until => return TermEnd::Done(value),
            _ = tokio::time::sleep(config.retry_period) => {}
        }
        let left = config.renew_deadline.saturating_sub(last_renewal.elapsed());
        let sent = Instant::now();
        match tokio::time::timeout(left, elector.try_acquire_or_renew()).await {
            Ok(Ok(true)) => *last_renewal = sent,
            Ok(Ok(false)) => return TermEnd::Lost("another replica holds the Lease".into()),
            Ok(Err(error)) => {
                tracing::warn!(error = %Report(&error), "cannot renew the leader Lease")
            }
            Err(_) => {}
        }
        if last_renewal.elapsed() >= config.renew_deadline {
            return TermEnd::Lost(format!(
                "the Lease was not renewed within {:?}",
                config.renew_deadline
            ));
        }
    }
}

/// Up to 20% more, so candidates do not all ask at once.
fn jittered(period: Duration) -> Duration {
    period.mul_f64(1.0 + rand::random::<f64>() * 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn held_by(holder: &str, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(seconds),
            lease_transitions: Some(3),
            acquire_time: Some(MicroTime(jiff::Timestamp::UNIX_EPOCH)),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(
            decide(None, "a", SECOND, 15 * SECOND),
            LeaseDecision::Create
        );
    }

    #[test]
    fn our_own_lease_is_renewed_even_when_it_looks_expired() {
        let spec = held_by("a", 15);
        assert_eq!(
            decide(Some(&spec), "a", 60 * SECOND, 15 * SECOND),
            LeaseDecision::Renew
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut spec = held_by("b", 1);
        spec.holder_identity = None;
        assert_eq!(
            decide(Some(&spec), "a", Duration::ZERO, 15 * SECOND),
            LeaseDecision::Acquire
        );
        spec.holder_identity = Some(String::new());
        assert_eq!(
            decide(Some(&spec), "a", Duration::ZERO, 15 * SECOND),
            LeaseDecision::Acquire
        );
    }

    #[test]
    fn another_holders_lease_is_respected_until_its_duration_passed_unchanged() {
        let spec = held_by("b", 10);
        assert_eq!(
            decide(Some(&spec), "a", 4 * SECOND, 15 * SECOND),
            LeaseDecision::Wait {
                holder: "b".into(),
                free_in: 6 * SECOND
            }
        );
        // The Lease's own duration counts, not ours.
        assert_eq!(
            decide(Some(&spec), "a", 10 * SECOND, 15 * SECOND),
            LeaseDecision::Acquire
        );
    }

    #[test]
    fn a_lease_without_duration_uses_ours() {
        let mut spec = held_by("b", 0);
        spec.lease_duration_seconds = None;
        assert!(matches!(
            decide(Some(&spec), "a", 14 * SECOND, 15 * SECOND),
            LeaseDecision::Wait { .. }
        ));
        assert_eq!(
            decide(Some(&spec), "a", 15 * SECOND, 15 * SECOND),
            LeaseDecision::Acquire
        );
    }

    #[test]
    fn taking_over_counts_a_transition_and_sets_the_acquire_time() {
        let now = jiff::Timestamp::from_second(1_000).unwrap();
        let spec = held_spec(Some(&held_by("b", 15)), "a", 15 * SECOND, now);
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(now)));
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }

    #[test]
    fn renewing_keeps_the_acquire_time_and_the_transitions() {
        let now = jiff::Timestamp::from_second(1_000).unwrap();
        let spec = held_spec(Some(&held_by("a", 15)), "a", 15 * SECOND, now);
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(
            spec.acquire_time,
            Some(MicroTime(jiff::Timestamp::UNIX_EPOCH))
        );
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
    }

    #[test]
    fn a_new_lease_starts_at_zero_transitions_and_a_released_one_counts_one_more() {
        let now = jiff::Timestamp::from_second(1_000).unwrap();
        assert_eq!(
            held_spec(None, "a", 15 * SECOND, now).lease_transitions,
            Some(0)
        );
        let released = LeaseSpec {
            lease_transitions: Some(2),
            ..LeaseSpec::default()
        };
        assert_eq!(
            held_spec(Some(&released), "a", 15 * SECOND, now).lease_transitions,
            Some(3)
        );
    }

    #[test]
    fn the_lease_we_write_outlasts_our_renew_deadline() {
        // Found by the backoff_and_lease fuzz target: 1.9 s was written as
        // 1 s, shorter than our renew deadline of 1.27 s.
        let now = jiff::Timestamp::from_second(1_000).unwrap();
        let duration = Duration::from_millis(1_900);
        let spec = held_spec(None, "a", duration, now);
        assert_eq!(spec.lease_duration_seconds, Some(2));
        // Even unclamped, the longest duration is written as the longest i32.
        let longest = held_spec(None, "a", Duration::MAX, now);
        assert_eq!(longest.lease_duration_seconds, Some(i32::MAX));
        let mut settings = Settings::defaults();
        for duration in [duration, Duration::from_millis(10), Duration::MAX] {
            settings.leader_election_lease_duration = duration;
            let config = ElectionConfig::from_settings(&settings);
            let written = held_spec(None, "a", config.lease_duration, now)
                .lease_duration_seconds
                .unwrap();
            assert!(written >= 1);
            assert!(
                Duration::from_secs(written as u64) >= config.renew_deadline,
                "{duration:?}: {written} s written, renew deadline {:?}",
                config.renew_deadline
            );
        }
    }

    #[test]
    fn a_transition_count_at_its_limit_stays_there() {
        let now = jiff::Timestamp::from_second(1_000).unwrap();
        let mut spec = held_by("b", 15);
        spec.lease_transitions = Some(i32::MAX);
        let taken = held_spec(Some(&spec), "a", 15 * SECOND, now);
        assert_eq!(taken.lease_transitions, Some(i32::MAX));
    }

    #[test]
    fn an_empty_identity_is_never_used() {
        // An empty holder reads as a free Lease: two replicas would lead.
        let mut settings = Settings::defaults();
        settings.leader_election_identity = Some(" ".into());
        let config = ElectionConfig::from_settings(&settings);
        assert!(!config.identity.trim().is_empty());
        assert_eq!(config.identity, default_identity());
    }

    #[test]
    fn proportions_follow_client_go() {
        let mut settings = Settings::defaults();
        settings.leader_election_identity = Some("me".into());
        let config = ElectionConfig::from_settings(&settings);
        assert_eq!(config.identity, "me");
        assert_eq!(config.lease_duration, 15 * SECOND);
        assert_eq!(config.renew_deadline, 10 * SECOND);
        assert_eq!(config.retry_period, 2 * SECOND);
    }
}
