//! When the next cycle runs ([`next_run`], the one function every requeue
//! goes through), the backoff after failures, and when a maintenance asks the
//! certificate-secured Connector.

use std::time::Duration;

use jiff::Timestamp;

use super::time::{after, remaining, until};

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
    /// A reconcile came before its time (our own writes trigger them, and
    /// so do watches): it did nothing, and waits for the rest, as
    /// [`next_step`](super::next_step) said (`Step::Wait`).
    Early(Duration),
    /// `compass-connection` is gone (read afresh): it is created anew, and
    /// that starts the next cycle.
    Gone,
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
/// - after a write conflict: again shortly, after a deletion (or the object
///   found gone): when the object is back; neither counts as a failure nor
///   moves the scheduled attempt;
/// - after a reset: nothing remembered, the next attempt may come at once;
/// - a reconcile that came early: the rest of its wait, and nothing else
///   changes.
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
        Cause::Early(wait) => NextRun {
            run: Run::After(wait),
            backoff,
        },
        Cause::WriteFailed(WriteFailure::Gone) | Cause::Gone => NextRun {
            run: Run::OnChange,
            backoff,
        },
        Cause::Reset => NextRun {
            run: Run::After(Duration::ZERO),
            backoff: Backoff::default(),
        },
    }
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
/// cycles of the last, and a fleet started in one minute sends all its
/// requests in the same minute of every period (BENCHMARKS.md, "Fleet
/// simulation", has the figures). Stretched, each runtime's cycles fall at
/// a random moment of the period, as in a fleet that started at random
/// times. A runtime in its steady state keeps the plain period: its rate
/// of requests is the same. `jitter` is in [0, 1).
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::{at, status, MIN};
    use super::super::step::{next_step, Step};
    use super::*;
    use crate::crd::compass_connection::ConnectionState;

    #[test]
    fn backoff_doubles_is_jittered_and_capped() {
        let base = Duration::from_secs(10);
        let cap = Duration::from_secs(300);
        assert_eq!(
            backoff_delay(1, base, cap, 0.999_999),
            Duration::from_secs(10).mul_f64(0.999_999_5)
        );
        assert_eq!(backoff_delay(1, base, cap, 0.0), Duration::from_secs(5));
        assert_eq!(backoff_delay(3, base, cap, 0.0), Duration::from_secs(20));
        assert_eq!(backoff_delay(30, base, cap, 0.0), Duration::from_secs(150));
        assert!(backoff_delay(1000, base, cap, 1.0) <= cap);
    }

    #[test]
    fn backoff_stays_within_its_cap_for_any_settings() {
        // Found by the backoff_and_lease fuzz target: a panic near
        // Duration::MAX, and 1-2 ns above a cap beyond 2^53 ns.
        let almost_one = 1.0 - f64::EPSILON / 2.0;
        assert!(backoff_delay(39, Duration::MAX, Duration::MAX, almost_one) <= Duration::MAX);
        let cap = Duration::new(9_909_326_555_114_763_765, 298_478_725);
        let base = Duration::from_secs(17_700_000_000_000_000_000);
        assert!(backoff_delay(u32::MAX, base, cap, almost_one) <= cap);
        assert_eq!(
            backoff_delay(1, Duration::from_secs(10), cap, f64::NAN),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn success_requeues_at_the_sync_period_or_at_renewal() {
        let period = Duration::from_secs(20);
        assert_eq!(requeue_after_success(at(0), period, None), period);
        assert_eq!(
            requeue_after_success(at(0), period, Some(at(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            requeue_after_success(at(10), period, Some(at(5))),
            Duration::from_secs(1)
        );
    }

    fn next_run_input(cause: Cause, backoff: Backoff) -> NextRunInput {
        NextRunInput {
            now: at(0),
            cause,
            backoff,
            renewal_due_at: None,
            sync_period: Duration::from_secs(20),
            minimal_sync_time: MIN,
            max_retry_delay: Duration::from_secs(300),
            jitter: 0.0,
        }
    }

    fn failures(consecutive_failures: u32, next_attempt_at: Option<i64>) -> Backoff {
        Backoff {
            consecutive_failures,
            next_attempt_at: next_attempt_at.map(at),
        }
    }

    #[test]
    fn after_a_success_the_next_run_is_the_sync_period_and_failures_are_forgotten() {
        let next = next_run(next_run_input(
            Cause::Cycle(Requeue::AfterSuccess),
            failures(4, Some(-3)),
        ));
        assert_eq!(
            next,
            NextRun {
                run: Run::After(Duration::from_secs(20)),
                backoff: failures(0, Some(20)),
            }
        );
    }

    #[test]
    fn a_renewal_sooner_than_the_sync_period_comes_first() {
        let next = next_run(NextRunInput {
            renewal_due_at: Some(at(7)),
            ..next_run_input(Cause::Cycle(Requeue::AfterSuccess), Backoff::default())
        });
        assert_eq!(next.run, Run::After(Duration::from_secs(7)));
        assert_eq!(next.backoff, failures(0, Some(7)));

        // A renewal that is due already: the next cycle in a second, not at once.
        let overdue = next_run(NextRunInput {
            renewal_due_at: Some(at(-100)),
            ..next_run_input(Cause::Cycle(Requeue::AfterSuccess), Backoff::default())
        });
        assert_eq!(overdue.run, Run::After(Duration::from_secs(1)));

        // One later than the period does not matter.
        let later = next_run(NextRunInput {
            renewal_due_at: Some(at(1000)),
            ..next_run_input(Cause::Cycle(Requeue::AfterSuccess), Backoff::default())
        });
        assert_eq!(later.run, Run::After(Duration::from_secs(20)));
    }

    #[test]
    fn credentials_that_stopped_working_reconnect_after_the_minimal_time_without_backoff() {
        let next = next_run(next_run_input(
            Cause::Cycle(Requeue::Reconnect),
            failures(6, Some(100)),
        ));
        assert_eq!(
            next,
            NextRun {
                run: Run::After(MIN),
                backoff: failures(0, Some(10)),
            }
        );
    }

    #[test]
    fn failures_back_off_from_the_minimal_time_doubling_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let mut delays = Vec::new();
        for _ in 0..8 {
            // The top of the jitter: the full delay.
            let next = next_run(NextRunInput {
                jitter: 1.0,
                ..next_run_input(Cause::Cycle(Requeue::Backoff), backoff)
            });
            let Run::After(delay) = next.run else {
                panic!("a failure waits: {next:?}")
            };
            let seconds = delay.as_secs();
            assert_eq!(
                next.backoff.next_attempt_at,
                Some(at(i64::try_from(seconds).unwrap()))
            );
            backoff = next.backoff;
            delays.push(seconds);
        }
        assert_eq!(backoff.consecutive_failures, 8);
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);

        // The bottom of the jitter: half of it.
        let low = next_run(next_run_input(
            Cause::Cycle(Requeue::Backoff),
            failures(2, None),
        ));
        assert_eq!(low.run, Run::After(Duration::from_secs(20)));
        assert_eq!(low.backoff, failures(3, Some(20)));
    }

    #[test]
    fn the_backoff_starts_at_a_second_when_the_minimal_time_is_shorter() {
        let next = next_run(NextRunInput {
            minimal_sync_time: Duration::ZERO,
            ..next_run_input(Cause::Cycle(Requeue::Backoff), Backoff::default())
        });
        assert_eq!(next.run, Run::After(Duration::from_millis(500)));
    }

    #[test]
    fn a_failed_write_backs_off_as_a_failed_cycle_does() {
        let backoff = failures(2, Some(5));
        let written = next_run(next_run_input(
            Cause::WriteFailed(WriteFailure::Other),
            backoff,
        ));
        let cycle = next_run(next_run_input(Cause::Cycle(Requeue::Backoff), backoff));
        assert_eq!(written, cycle);
        assert_eq!(written.backoff.consecutive_failures, 3);
    }

    #[test]
    fn a_write_conflict_retries_shortly_and_a_deletion_waits_for_the_new_object() {
        let backoff = failures(3, Some(40));
        assert_eq!(
            next_run(next_run_input(
                Cause::WriteFailed(WriteFailure::Conflict),
                backoff
            )),
            NextRun {
                run: Run::After(Duration::from_millis(200)),
                backoff,
            }
        );
        assert_eq!(
            next_run(next_run_input(
                Cause::WriteFailed(WriteFailure::Gone),
                backoff
            )),
            NextRun {
                run: Run::OnChange,
                backoff,
            }
        );
    }

    #[test]
    fn an_early_reconcile_waits_the_rest_and_one_that_found_the_object_gone_waits_for_it() {
        let backoff = failures(3, Some(40));
        // What next_step said: the rest of the scheduled wait.
        let step = next_step(
            at(25),
            &Default::default(),
            &status(ConnectionState::Synchronized, None),
            MIN,
            backoff.next_attempt_at,
        );
        let Step::Wait(rest) = step else {
            panic!("an early reconcile waits: {step:?}")
        };
        assert_eq!(
            next_run(next_run_input(Cause::Early(rest), backoff)),
            NextRun {
                run: Run::After(Duration::from_secs(15)),
                backoff,
            },
            "nothing remembered changes"
        );
        assert_eq!(
            next_run(next_run_input(Cause::Gone, backoff)),
            NextRun {
                run: Run::OnChange,
                backoff,
            }
        );
    }

    #[test]
    fn a_reset_forgets_failures_and_the_scheduled_attempt() {
        let next = next_run(next_run_input(Cause::Reset, failures(9, Some(300))));
        assert_eq!(
            next,
            NextRun {
                run: Run::After(Duration::ZERO),
                backoff: Backoff::default(),
            }
        );
        // So the next reconcile does not wait for it.
        assert_eq!(
            next_step(
                at(0),
                &Default::default(),
                &status(ConnectionState::ConnectionFailed, None),
                MIN,
                next.backoff.next_attempt_at,
            ),
            Step::Establish
        );
    }

    #[test]
    fn a_delay_beyond_any_timestamp_schedules_no_attempt_time() {
        let next = next_run(NextRunInput {
            sync_period: Duration::MAX,
            ..next_run_input(Cause::Cycle(Requeue::AfterSuccess), Backoff::default())
        });
        assert_eq!(next.run, Run::After(Duration::MAX));
        assert_eq!(next.backoff, Backoff::default());
    }

    #[test]
    fn the_connector_is_asked_when_it_matters_and_else_once_an_interval() {
        let hour = Duration::from_secs(3600);
        let idle = ConnectorCheck {
            now: at(10_000),
            last: Some(at(10_000 - 600)),
            interval: hour,
            renewal_due: false,
            refresh_asked: false,
            director_refused: false,
        };
        assert!(!connector_check_due(idle), "an idle cycle within the hour");
        assert!(connector_check_due(ConnectorCheck {
            last: Some(at(10_000 - 3600)),
            ..idle
        }));
        assert!(
            connector_check_due(ConnectorCheck { last: None, ..idle }),
            "after a start"
        );
        assert!(connector_check_due(ConnectorCheck {
            renewal_due: true,
            ..idle
        }));
        assert!(connector_check_due(ConnectorCheck {
            refresh_asked: true,
            ..idle
        }));
        assert!(connector_check_due(ConnectorCheck {
            director_refused: true,
            ..idle
        }));
        assert!(
            connector_check_due(ConnectorCheck {
                interval: Duration::ZERO,
                ..idle
            }),
            "0: every cycle, as the original"
        );
    }

    #[test]
    fn the_first_success_after_failures_or_a_start_waits_between_one_and_two_periods() {
        let period = Duration::from_secs(180);
        for backoff in [failures(3, Some(-5)), Backoff::default()] {
            assert_eq!(period_after_success(backoff, period, 0.0), period);
            assert_eq!(
                period_after_success(backoff, period, 0.5),
                Duration::from_secs(270)
            );
            let longest = period_after_success(backoff, period, 0.999_999);
            assert!(longest > Duration::from_secs(359) && longest < 2 * period);
            // Out-of-range samples stay within the two periods.
            assert_eq!(period_after_success(backoff, period, f64::NAN), period);
            assert_eq!(period_after_success(backoff, period, 7.0), 2 * period);
            assert_eq!(
                period_after_success(backoff, Duration::MAX, 0.999),
                Duration::MAX
            );
        }
        // Through next_run: stretched, and the renewal still comes first.
        let next = next_run(NextRunInput {
            jitter: 0.5,
            ..next_run_input(Cause::Cycle(Requeue::AfterSuccess), failures(6, Some(-3)))
        });
        assert_eq!(next.run, Run::After(Duration::from_secs(30)));
        assert_eq!(next.backoff, failures(0, Some(30)));
        let renewal_first = next_run(NextRunInput {
            jitter: 0.5,
            renewal_due_at: Some(at(25)),
            ..next_run_input(Cause::Cycle(Requeue::AfterSuccess), Backoff::default())
        });
        assert_eq!(renewal_first.run, Run::After(Duration::from_secs(25)));
    }

    #[test]
    fn a_runtime_in_its_steady_state_keeps_the_plain_period() {
        let period = Duration::from_secs(180);
        let steady = failures(0, Some(0));
        for jitter in [0.0, 0.3, 0.999] {
            assert_eq!(period_after_success(steady, period, jitter), period);
            let next = next_run(NextRunInput {
                jitter,
                ..next_run_input(Cause::Cycle(Requeue::AfterSuccess), steady)
            });
            assert_eq!(next.run, Run::After(Duration::from_secs(20)));
        }
    }

    #[test]
    fn a_fleet_that_returns_together_spreads_over_a_period() {
        // 1,000 runtimes synchronized within the same second after an outage:
        // their next cycles fall into every tenth of the period beyond it.
        let period = Duration::from_secs(180);
        let mut tenths = [0u32; 10];
        for i in 0..1000 {
            let jitter = f64::from(i) / 1000.0;
            let wait = period_after_success(failures(5, Some(0)), period, jitter);
            let beyond = (wait - period).as_secs_f64() / period.as_secs_f64();
            tenths[(beyond * 10.0) as usize] += 1;
        }
        assert_eq!(tenths, [100; 10]);
    }
}
