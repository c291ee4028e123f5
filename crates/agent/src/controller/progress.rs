//! Whether the cycles make progress: what the cycle in flight waits for
//! (for the log line of a cycle abandoned at its deadline), and since when
//! a cycle has been due without one recording its outcome in
//! `compass-connection` (for `/healthz` and `cycle_overdue_seconds`).
//!
//! A cycle that failed but wrote its status is progress: the operator sees
//! what is wrong, and a restart would not mend a Compass outage. A cycle that
//! could not write its status (the API server unreachable, or the cycle
//! abandoned) is not: the due time it answered stays, so that a link that
//! stays dead fails the liveness probe after [`liveness_bound`].

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a cycle can wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Reading `compass-connection` afresh.
    Connection,
    /// The Secret or ConfigMap with the connection parameters.
    Configuration,
    /// The Connector's `configuration`.
    Connector,
    /// The Connector signing a CSR.
    Signing,
    /// Reading or writing the certificate Secrets.
    CredentialsSecrets,
    /// The Director's runtime and applications.
    Director,
    /// Listing the cluster's Applications and their Secrets.
    ClusterRead,
    /// Writing Applications and Secrets.
    ApplicationWrites,
    /// Labelling the Runtime in the Director.
    RuntimeLabels,
    /// Publishing an Event.
    Event,
    /// Writing `compass-connection`'s spec or status.
    StatusWrite,
}

impl Wait {
    const ALL: [Wait; 11] = [
        Wait::Connection,
        Wait::Configuration,
        Wait::Connector,
        Wait::Signing,
        Wait::CredentialsSecrets,
        Wait::Director,
        Wait::ClusterRead,
        Wait::ApplicationWrites,
        Wait::RuntimeLabels,
        Wait::Event,
        Wait::StatusWrite,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Wait::Connection => "reading CompassConnection compass-connection",
            Wait::Configuration => "reading the connection configuration",
            Wait::Connector => "the Connector's configuration",
            Wait::Signing => "the Connector signing the certificate",
            Wait::CredentialsSecrets => "the certificate Secrets",
            Wait::Director => "the Director's applications",
            Wait::ClusterRead => "listing the cluster's Applications and Secrets",
            Wait::ApplicationWrites => "writing Applications and Secrets",
            Wait::RuntimeLabels => "labelling the Runtime in the Director",
            Wait::Event => "publishing an Event",
            Wait::StatusWrite => "writing compass-connection",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// When a cycle is due, as far as the liveness probe is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Due {
    /// The earliest due time that no cycle has answered by recording its
    /// outcome; `None` while nothing is due (a standby replica, or
    /// `compass-connection` gone and awaited).
    since: Option<Instant>,
}

/// See the module's text. One per agent, shared by the reconcile, the
/// process (leadership) and the health endpoint.
#[derive(Debug, Default)]
pub struct CycleProgress {
    due: Mutex<Due>,
    waiting: [AtomicU16; Wait::ALL.len()],
}

/// Marks a wait for as long as it lives (also when its cycle is dropped).
#[must_use = "the wait ends when the guard is dropped"]
pub struct Waiting<'a> {
    progress: &'a CycleProgress,
    what: Wait,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.progress.waiting[self.what.index()].fetch_sub(1, Ordering::Relaxed);
    }
}

impl CycleProgress {
    /// The cycle waits for `what` until the guard is dropped.
    pub fn waiting(&self, what: Wait) -> Waiting<'_> {
        self.waiting[what.index()].fetch_add(1, Ordering::Relaxed);
        Waiting {
            progress: self,
            what,
        }
    }

    /// What the cycle in flight waits for now, in the order of a cycle.
    pub fn waiting_for(&self) -> Vec<Wait> {
        Wait::ALL
            .into_iter()
            .filter(|what| self.waiting[what.index()].load(Ordering::Relaxed) > 0)
            .collect()
    }

    fn due(&self) -> std::sync::MutexGuard<'_, Due> {
        self.due.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A cycle wrote its outcome; the next is due at `next` (`None`: when
    /// `compass-connection` changes).
    pub fn recorded(&self, next: Option<Instant>) {
        self.due().since = next;
    }

    /// A cycle is due at `at`, or one that was due earlier still is: a cycle
    /// that ended without recording its outcome does not move the due time.
    pub fn due_at(&self, at: Instant) {
        let mut due = self.due();
        due.since = Some(due.since.map_or(at, |since| since.min(at)));
    }

    /// Nothing is due: this replica does not lead, or waits for
    /// `compass-connection` to be created anew.
    pub fn not_due(&self) {
        self.due().since = None;
    }

    /// How long a due cycle has waited, at `now`, for one to record its
    /// outcome; zero when none is due or it is not due yet.
    pub fn overdue(&self, now: Instant) -> Duration {
        self.due()
            .since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// Why `/healthz` fails at `now`, if it does.
    pub fn stalled(&self, now: Instant, bound: Duration) -> Option<String> {
        let overdue = self.overdue(now);
        (overdue > bound).then(|| {
            format!(
                "no cycle has recorded its outcome in compass-connection for {}s while one was due (the bound is {}s)",
                overdue.as_secs(),
                bound.as_secs()
            )
        })
    }
}

/// How long a due cycle may go unrecorded before `/healthz` fails: a cycle
/// abandoned at its deadline, the longest backoff before the next attempt,
/// and that attempt.
pub fn liveness_bound(cycle_timeout: Duration, max_retry_delay: Duration) -> Duration {
    cycle_timeout
        .saturating_mul(2)
        .saturating_add(max_retry_delay)
}

/// What the cycle waited for, for a log line: `a, b` or `nothing the agent
/// tracks` (its own computation).
pub fn describe_waits(waits: &[Wait]) -> String {
    if waits.is_empty() {
        return "nothing the agent tracks (its own work)".into();
    }
    waits
        .iter()
        .map(|wait| wait.describe())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_guard_marks_its_wait_while_it_lives_also_when_nested() {
        let progress = CycleProgress::default();
        assert!(progress.waiting_for().is_empty());
        let director = progress.waiting(Wait::Director);
        {
            let _read = progress.waiting(Wait::ClusterRead);
            let _also_read = progress.waiting(Wait::ClusterRead);
            assert_eq!(
                progress.waiting_for(),
                vec![Wait::Director, Wait::ClusterRead]
            );
        }
        assert_eq!(progress.waiting_for(), vec![Wait::Director]);
        drop(director);
        assert!(progress.waiting_for().is_empty());
        assert_eq!(
            describe_waits(&[Wait::Director, Wait::StatusWrite]),
            "the Director's applications, writing compass-connection"
        );
    }

    #[test]
    fn a_recorded_cycle_moves_the_due_time_an_unrecorded_one_does_not() {
        let start = Instant::now();
        let progress = CycleProgress::default();
        assert_eq!(progress.overdue(start + 100 * SECOND), Duration::ZERO);
        progress.due_at(start);
        assert_eq!(progress.overdue(start + 5 * SECOND), 5 * SECOND);
        // The status could not be written: the next attempt is scheduled,
        // but the cycle due at `start` is still unanswered.
        progress.due_at(start + 10 * SECOND);
        assert_eq!(progress.overdue(start + 30 * SECOND), 30 * SECOND);
        // A cycle wrote its outcome: due again after the sync period.
        progress.recorded(Some(start + 60 * SECOND));
        assert_eq!(progress.overdue(start + 59 * SECOND), Duration::ZERO);
        assert_eq!(progress.overdue(start + 61 * SECOND), SECOND);
        // Standing by: nothing due.
        progress.not_due();
        assert_eq!(progress.overdue(start + 1000 * SECOND), Duration::ZERO);
        progress.recorded(None);
        assert_eq!(progress.overdue(start + 1000 * SECOND), Duration::ZERO);
    }

    #[test]
    fn health_fails_only_past_the_bound() {
        let start = Instant::now();
        let progress = CycleProgress::default();
        let bound = liveness_bound(10 * SECOND, 5 * SECOND);
        assert_eq!(bound, 25 * SECOND);
        progress.due_at(start);
        assert_eq!(progress.stalled(start + 25 * SECOND, bound), None);
        let why = progress.stalled(start + 26 * SECOND, bound).unwrap();
        assert!(why.contains("for 26s while one was due"), "{why}");
        assert_eq!(
            liveness_bound(Duration::MAX, SECOND),
            Duration::MAX,
            "no overflow"
        );
    }
}
