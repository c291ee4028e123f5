//! The pure timing decisions: the retry backoff after failures
//! (`controller::decide::backoff_delay`) and leader election on a Lease
//! (`controller::leader::decide`, the spec written when taking or renewing
//! it, `held_spec`, and the timings of `ElectionConfig::from_settings`).
//!
//! Input: bytes, decoded with `arbitrary::Unstructured` into failure counts
//! (0, small, any `u32`, `u32::MAX`), durations (zero, seconds, milliseconds,
//! a few seconds to the nanosecond, any, `Duration::MAX`), a random number in [0, 1) as `rand::random` gives
//! it (or out of that range now and then: any non-NaN `f64`), and a Lease:
//! absent, or with a holder (none, empty, us, another, any text), a
//! `leaseDurationSeconds` (none, any `i32` including 0 and negatives),
//! renew and acquire times anywhere in jiff's range, a transition count (any
//! `i32`), how long its record has been unchanged, our identity and lease
//! duration, the time now, and another replica's identity, lease duration
//! and how long it has seen our record unchanged (often a part of our
//! duration).
//!
//! Properties, backoff: no panic; the delay never exceeds the cap; it never
//! exceeds `base × 2^(n-1)` nor falls below half of `min(base × 2^min(n-1,
//! 30), cap)` (the "equal jitter" of its doc comment) by more than the f64
//! rounding of the jitter (a nanosecond, or two units in the last place);
//! it grows with the failure count and with the random number. Lease: no panic; no Lease means create; our own
//! Lease is always renewed; a Lease without holder is taken; another holder's
//! Lease is taken exactly when its record has been unchanged for its
//! `leaseDurationSeconds` (ours when it has none or a non-positive one),
//! otherwise we wait for the rest of it; what we write names us, counts from
//! now, states our duration in whole seconds rounded up (1 to `i32::MAX`),
//! counts a transition whenever the Lease changes hands, a released one
//! included, as client-go does (saturating), is renewed by us and is
//! respected by any other replica for our whole renew deadline; the
//! election timings (`ElectionConfig::from_settings`) keep the renew
//! deadline within the lease duration, for any duration, and never use an
//! empty identity.
//!
//! The inputs of what it found on 2026-11-27 (fuzz/README.md, "Findings";
//! all fixed) are seeds in `corpus/backoff_and_lease`, replayed first on
//! every run.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use compass_runtime_agent::agent::election::{decide, held_spec, ElectionConfig, LeaseDecision};
use compass_runtime_agent::config::Settings;
use compass_runtime_agent::controller::decide::backoff_delay;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// `n` times in `d`; never once the input is used up (where
/// `Unstructured::ratio` would always say yes).
fn chance(u: &mut Unstructured, n: u8, d: u8) -> Result<bool> {
    Ok(u.int_in_range(1..=d)? > d - n)
}

fn duration(u: &mut Unstructured) -> Result<Duration> {
    Ok(match u.int_in_range(0..=8)? {
        0 => Duration::ZERO,
        8 => Duration::new(u.int_in_range(0..=5)?, u.int_in_range(0..=999_999_999)?),
        1 => Duration::MAX,
        2 => Duration::new(u.arbitrary()?, u.int_in_range(0..=999_999_999)?),
        3 => Duration::from_millis(u.int_in_range(0..=100_000)?),
        4 => Duration::from_millis(u.int_in_range(0..=100_000_000)?),
        _ => Duration::from_secs(u.int_in_range(0..=3600)?),
    })
}

fn failures(u: &mut Unstructured) -> Result<u32> {
    Ok(match u.int_in_range(0..=5)? {
        0 => u32::MAX,
        1 => u.arbitrary()?,
        _ => u.int_in_range(0..=40)?,
    })
}

/// In [0, 1) as `rand::random::<f64>()` gives it, or (`false`) any other
/// number but NaN.
fn random(u: &mut Unstructured) -> Result<(f64, bool)> {
    Ok(match u.int_in_range(0..=7)? {
        0 => (0.0, true),
        1 => (1.0 - f64::EPSILON / 2.0, true),
        2 => {
            let value = f64::from_bits(u.arbitrary()?);
            if value.is_nan() {
                (0.5, true)
            } else {
                (value, (0.0..1.0).contains(&value))
            }
        }
        _ => (
            (u.arbitrary::<u64>()? >> 11) as f64 / (1u64 << 53) as f64,
            true,
        ),
    })
}

fn timestamp(u: &mut Unstructured) -> Result<Timestamp> {
    let second = u.int_in_range(Timestamp::MIN.as_second()..=Timestamp::MAX.as_second())?;
    let nanosecond = u.int_in_range(0..=999_999_999)?;
    Ok(Timestamp::new(second, nanosecond).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn text(u: &mut Unstructured, pool: &[&str]) -> Result<String> {
    if chance(u, 1, 8)? {
        let len = u.int_in_range(0..=8)?.min(u.len());
        return Ok(String::from_utf8_lossy(u.bytes(len)?).into_owned());
    }
    Ok(u.choose(pool)?.to_string())
}

fn small_or_any(u: &mut Unstructured) -> Result<Option<i32>> {
    Ok(match u.int_in_range(0..=5)? {
        0 => None,
        1 => Some(u.arbitrary()?),
        2 => Some(i32::MAX),
        3 => Some(i32::MIN),
        _ => Some(u.int_in_range(-2..=30)?),
    })
}

fn lease(u: &mut Unstructured, identity: &str) -> Result<Option<LeaseSpec>> {
    if chance(u, 1, 8)? {
        return Ok(None);
    }
    let holder_identity = match u.int_in_range(0..=4)? {
        0 => None,
        1 => Some(String::new()),
        2 => Some(identity.to_string()),
        _ => Some(text(u, &["b", "pod-1", "a"])?),
    };
    let time = |u: &mut Unstructured| -> Result<Option<MicroTime>> {
        Ok(if u.arbitrary()? {
            Some(MicroTime(timestamp(u)?))
        } else {
            None
        })
    };
    Ok(Some(LeaseSpec {
        holder_identity,
        lease_duration_seconds: small_or_any(u)?,
        renew_time: time(u)?,
        acquire_time: time(u)?,
        lease_transitions: small_or_any(u)?,
        ..LeaseSpec::default()
    }))
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    if let Ok(input) = backoff_input(&mut u) {
        check_backoff(input);
    }
    if let Ok(input) = lease_input(&mut u) {
        check_lease(&input);
    }
});

struct BackoffInput {
    failures: u32,
    base: Duration,
    cap: Duration,
    random: f64,
    in_domain: bool,
}

fn backoff_input(u: &mut Unstructured) -> Result<BackoffInput> {
    let (random, in_domain) = random(u)?;
    Ok(BackoffInput {
        failures: failures(u)?,
        base: duration(u)?,
        cap: duration(u)?,
        random,
        in_domain,
    })
}

/// `min(base × 2^min(n-1, 30), cap)`: the most the n-th failure waits.
fn full(failures: u32, base: Duration, cap: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let nanos = base.as_nanos() << exponent;
    nanos_to_duration(nanos).min(cap)
}

fn nanos_to_duration(nanos: u128) -> Duration {
    u64::try_from(nanos / 1_000_000_000)
        .map(|secs| Duration::new(secs, (nanos % 1_000_000_000) as u32))
        .unwrap_or(Duration::MAX)
}

fn check_backoff(input: BackoffInput) {
    let BackoffInput {
        failures,
        base,
        cap,
        random,
        in_domain,
    } = input;
    let delay = backoff_delay(failures, base, cap, random);
    let context = format!("backoff_delay({failures}, {base:?}, {cap:?}, {random:e}) = {delay:?}");
    let most = full(failures, base, cap);
    // The jitter is computed in f64 seconds: up to a nanosecond, or two
    // units in the last place of the full delay (a millisecond when it is
    // a million years) either way.
    let rounding =
        Duration::from_secs_f64(most.as_secs_f64() * f64::EPSILON * 2.0) + Duration::from_nanos(1);
    assert!(delay <= cap, "above the cap: {context}");
    let shift = failures.saturating_sub(1);
    let nanos = base.as_nanos();
    let uncapped = if shift >= 128 || nanos.leading_zeros() < shift {
        u128::MAX
    } else {
        nanos << shift
    };
    assert!(
        delay.as_nanos() <= uncapped.saturating_add(rounding.as_nanos()),
        "above base × 2^(n-1): {context}"
    );
    assert!(
        delay <= most.saturating_add(rounding),
        "above the full delay {most:?}: {context}"
    );
    assert!(
        delay.saturating_add(rounding) >= most / 2,
        "below half the full delay {most:?}: {context}"
    );
    if !in_domain {
        return;
    }
    // Grows with the count of failures, and with the random number.
    if let Some(more) = failures.checked_add(1) {
        let next = backoff_delay(more, base, cap, random);
        assert!(next >= delay, "{next:?} after {more} failures: {context}");
    }
    let higher = (random + (1.0 - random) / 2.0).min(1.0 - f64::EPSILON / 2.0);
    let later = backoff_delay(failures, base, cap, higher);
    assert!(later >= delay, "{later:?} for random {higher:e}: {context}");
}

struct LeaseInput {
    identity: String,
    lease: Option<LeaseSpec>,
    unchanged_for: Duration,
    our_duration: Duration,
    other: String,
    other_unchanged_for: Duration,
    other_duration: Duration,
    now: Timestamp,
}

fn lease_input(u: &mut Unstructured) -> Result<LeaseInput> {
    let identity = text(u, &["a", "pod-0"])?;
    let lease = lease(u, &identity)?;
    let unchanged_for = duration(u)?;
    let our_duration = duration(u)?;
    Ok(LeaseInput {
        lease,
        unchanged_for,
        our_duration,
        other: text(u, &["b", "pod-1"])?,
        // Often a part of ours: around the renew deadline and the duration.
        other_unchanged_for: if u.arbitrary()? {
            (our_duration / 1000)
                .checked_mul(u.int_in_range(0..=1500)?)
                .unwrap_or(our_duration)
        } else {
            duration(u)?
        },
        other_duration: duration(u)?,
        now: timestamp(u)?,
        identity,
    })
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(Settings::defaults)
}

fn check_lease(input: &LeaseInput) {
    let LeaseInput {
        identity,
        lease,
        unchanged_for,
        our_duration,
        now,
        ..
    } = input;
    let (unchanged_for, our_duration) = (*unchanged_for, *our_duration);
    // An empty holder reads as a free Lease, so the agent never runs with an
    // empty identity: the one it uses comes from `ElectionConfig`.
    if identity.trim().is_empty() {
        let mut settings = settings().clone();
        settings.leader_election_identity = Some(identity.clone());
        let config = ElectionConfig::from_settings(&settings);
        assert!(
            !config.identity.trim().is_empty(),
            "identity {identity:?} kept: {config:?}"
        );
        return;
    }
    let decision = decide(lease.as_ref(), identity, unchanged_for, our_duration);
    let context = format!(
        "decide({lease:?}, {identity:?}, {unchanged_for:?}, {our_duration:?}) = {decision:?}"
    );
    let Some(spec) = lease else {
        assert_eq!(decision, LeaseDecision::Create, "{context}");
        return;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == identity {
        assert_eq!(decision, LeaseDecision::Renew, "our own Lease: {context}");
    } else if holder.is_empty() {
        assert_eq!(decision, LeaseDecision::Acquire, "a free Lease: {context}");
    } else {
        let lease_duration = match spec.lease_duration_seconds {
            Some(seconds) if seconds > 0 => Duration::from_secs(seconds as u64),
            _ => our_duration,
        };
        if unchanged_for < lease_duration {
            assert_eq!(
                decision,
                LeaseDecision::Wait {
                    holder: holder.to_string(),
                    free_in: lease_duration - unchanged_for,
                },
                "another holder renewed it within its duration: {context}"
            );
        } else {
            assert_eq!(decision, LeaseDecision::Acquire, "expired: {context}");
        }
    }

    // What we write on taking or renewing it (whatever the decision: the
    // elector computes it before it knows).
    let written = held_spec(Some(spec), identity, our_duration, *now);
    check_written(spec, &written, input);
    let fresh = held_spec(None, identity, our_duration, *now);
    assert_eq!(fresh.lease_transitions, Some(0));
    assert_eq!(
        fresh.acquire_time,
        Some(MicroTime(*now)),
        "a new Lease is acquired now: {fresh:?}"
    );
}

fn check_written(previous: &LeaseSpec, written: &LeaseSpec, input: &LeaseInput) {
    let LeaseInput {
        identity,
        our_duration,
        other,
        other_unchanged_for,
        other_duration,
        now,
        ..
    } = input;
    let context =
        format!("held_spec({previous:?}, {identity:?}, {our_duration:?}, {now}) = {written:?}");
    assert_eq!(
        written.holder_identity.as_deref(),
        Some(identity.as_str()),
        "{context}"
    );
    assert_eq!(written.renew_time, Some(MicroTime(*now)), "{context}");
    let seconds = written.lease_duration_seconds.unwrap_or(0);
    // Ours in whole seconds, rounded up, and at most the largest i32 (68
    // years).
    let ours_rounded_up = our_duration
        .as_secs()
        .saturating_add(u64::from(our_duration.subsec_nanos() > 0));
    assert_eq!(
        seconds as u64,
        ours_rounded_up.clamp(1, i32::MAX as u64),
        "another duration than ours written: {context}"
    );
    let previous_holder = previous.holder_identity.as_deref().unwrap_or("");
    let taken_over = previous_holder != identity;
    if taken_over {
        assert_eq!(written.acquire_time, Some(MicroTime(*now)), "{context}");
    } else {
        assert_eq!(written.acquire_time, previous.acquire_time, "{context}");
    }
    let transitions = previous.lease_transitions.unwrap_or(0);
    // Whenever the Lease changes hands (released or not), one more.
    let expected = if taken_over {
        transitions.saturating_add(1)
    } else {
        transitions
    };
    assert_eq!(written.lease_transitions, Some(expected), "{context}");

    // We renew what we wrote, however long ago and whatever our duration.
    assert_eq!(
        decide(
            Some(written),
            identity,
            *other_unchanged_for,
            *other_duration
        ),
        LeaseDecision::Renew,
        "{context}"
    );
    // Our timings for that duration: renew deadline 2/3, retry period 2/15
    // of it, for any duration.
    let mut settings = settings().clone();
    settings.leader_election_lease_duration = *our_duration;
    let config = ElectionConfig::from_settings(&settings);
    assert!(config.renew_deadline <= config.lease_duration);
    assert!(config.retry_period >= Duration::from_millis(100));

    // Another replica waits for the duration written, whatever its own.
    if !other.is_empty() && other != identity {
        let taken = decide(Some(written), other, *other_unchanged_for, *other_duration);
        let held_for = Duration::from_secs(seconds as u64);
        assert_eq!(
            matches!(taken, LeaseDecision::Wait { .. }),
            *other_unchanged_for < held_for,
            "{other:?} decides {taken:?} after {other_unchanged_for:?}: {context}"
        );
        // The leader stops writing when it could not renew within its renew
        // deadline, which must come before another replica may take over.
        if *other_unchanged_for < config.renew_deadline {
            assert!(
                matches!(taken, LeaseDecision::Wait { .. }),
                "{other:?} takes the Lease after {other_unchanged_for:?}, within our renew deadline {:?} (lease duration {our_duration:?}): {context}",
                config.renew_deadline
            );
        }
    }
}
