//! When to renew the client certificate.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::CertificateInfo;

/// How early renewal may move for jitter, as a share of the renewal window.
const JITTER_SHARE: f64 = 0.1;

/// The moment from which the certificate is due for renewal: when the time left
/// falls below `threshold × lifetime` (the original's rule), moved earlier by up
/// to 10% of that window by a jitter that is fixed for each certificate (derived
/// from what tells it apart, see [`certificate_fraction`]) so a fleet of
/// runtimes issued certificates at the same time does not renew in step; and
/// never later than twice the minimal sync time before expiry, so a
/// short-lived certificate is renewed while it still works.
pub fn renewal_due_at(
    info: &CertificateInfo,
    threshold: f64,
    minimal_sync_time: Duration,
) -> Timestamp {
    let lifetime = info
        .not_after
        .duration_since(info.not_before)
        .as_secs_f64()
        .max(0.0);
    let jitter = certificate_fraction(info);
    let window = lifetime * threshold * (1.0 + JITTER_SHARE * jitter);
    let floor = 2.0 * minimal_sync_time.as_secs_f64();
    let lead = window.max(floor).min(lifetime.max(floor));
    // A lead beyond any duration or timestamp (an absurd minimal sync time)
    // means: due since the beginning of time, i.e. at once.
    SignedDuration::try_from_secs_f64(lead)
        .ok()
        .and_then(|lead| info.not_after.checked_sub(lead).ok())
        .unwrap_or(Timestamp::MIN)
}

/// Whether the certificate should be renewed now.
pub fn renewal_due(
    info: &CertificateInfo,
    now: Timestamp,
    threshold: f64,
    minimal_sync_time: Duration,
) -> bool {
    now >= renewal_due_at(info, threshold, minimal_sync_time)
}

/// A stable number in [0, 1) for the certificate: a digest of its serial,
/// subject and validity. Not of the serial alone: the real Connector gives
/// every certificate the serial number 2 (spec.md, section 9), so a fleet
/// issued certificates in the same minute would renew in the same minute
/// (BENCHMARKS.md, "Fleet simulation"). The subject's CN names the runtime
/// (the real Connector's: the SystemAuth id of its token), the validity
/// changes with each certificate of it.
fn certificate_fraction(info: &CertificateInfo) -> f64 {
    use sha1::Digest;
    let mut hasher = sha1::Sha1::new();
    for part in [info.serial.as_bytes(), info.subject.as_bytes()] {
        hasher.update(part);
        hasher.update([0]);
    }
    hasher.update(info.not_before.as_second().to_be_bytes());
    hasher.update(info.not_after.as_second().to_be_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(lifetime_secs: i64, serial: &str) -> CertificateInfo {
        let not_before = Timestamp::from_second(1_700_000_000).unwrap();
        CertificateInfo {
            subject: "CN=r".into(),
            common_name: "r".into(),
            serial: serial.into(),
            not_before,
            not_after: not_before + SignedDuration::from_secs(lifetime_secs),
        }
    }

    const NINETY_DAYS: i64 = 2160 * 3600;

    #[test]
    fn a_fresh_certificate_is_not_due() {
        let cert = certificate(NINETY_DAYS, "01");
        assert!(!renewal_due(
            &cert,
            cert.not_before,
            0.3,
            Duration::from_secs(10)
        ));
    }

    #[test]
    fn renewal_comes_when_less_than_the_threshold_of_the_lifetime_is_left() {
        let cert = certificate(NINETY_DAYS, "01");
        let due = renewal_due_at(&cert, 0.3, Duration::from_secs(10));
        let left = cert.not_after.duration_since(due).as_secs_f64();
        let window = 0.3 * NINETY_DAYS as f64;
        assert!(
            left >= window && left <= window * 1.1,
            "renews with {left}s left, window {window}s"
        );
        let before_window = cert.not_after - SignedDuration::from_secs_f64(window - 1.0);
        assert!(renewal_due(
            &cert,
            before_window,
            0.3,
            Duration::from_secs(10)
        ));
        let long_before = cert.not_after - SignedDuration::from_secs_f64(window * 1.2);
        assert!(!renewal_due(
            &cert,
            long_before,
            0.3,
            Duration::from_secs(10)
        ));
    }

    #[test]
    fn jitter_spreads_a_fleet_but_is_stable_for_one_certificate() {
        let times: Vec<Timestamp> = (0..50)
            .map(|i| {
                renewal_due_at(
                    &certificate(NINETY_DAYS, &format!("{i:02x}:aa")),
                    0.3,
                    Duration::from_secs(10),
                )
            })
            .collect();
        let earliest = times.iter().min().unwrap();
        let latest = times.iter().max().unwrap();
        assert!(
            latest.duration_since(*earliest).as_secs() > 3600,
            "50 runtimes renew within an hour of each other"
        );
        let cert = certificate(NINETY_DAYS, "ab:cd");
        assert_eq!(
            renewal_due_at(&cert, 0.3, Duration::from_secs(10)),
            renewal_due_at(&cert, 0.3, Duration::from_secs(10))
        );
    }

    #[test]
    fn a_fleet_issued_in_one_minute_with_one_serial_renews_over_days() {
        // The real Connector: serial 2 for every certificate, the CN the
        // SystemAuth id of each runtime's token, all issued in one minute.
        let issued = Timestamp::from_second(1_700_000_000).unwrap();
        let times: Vec<Timestamp> = (0..50)
            .map(|i| {
                let not_before = issued + SignedDuration::from_secs(i % 60);
                let cert = CertificateInfo {
                    subject: format!("C=DE, O=Organization, OU=OrgUnit, CN=4c2a{i:04}-5c1e-4b9b-9d5e-0e7a1c9f3b2d"),
                    common_name: String::new(),
                    serial: "02".into(),
                    not_before,
                    not_after: not_before + SignedDuration::from_secs(NINETY_DAYS),
                };
                renewal_due_at(&cert, 0.3, Duration::from_secs(15))
            })
            .collect();
        let earliest = times.iter().min().unwrap();
        let latest = times.iter().max().unwrap();
        // The window is 10% of 0.3 × 90 days: 64.8 hours.
        assert!(
            latest.duration_since(*earliest).as_secs() > 24 * 3600,
            "50 runtimes with one serial renew within a day of each other: {earliest} to {latest}"
        );
        // A renewed certificate (same subject and serial) moves to another moment.
        let first = certificate(NINETY_DAYS, "02");
        let mut renewed = first.clone();
        renewed.not_before += SignedDuration::from_secs(63 * 86_400);
        renewed.not_after += SignedDuration::from_secs(63 * 86_400);
        let lead = |c: &CertificateInfo| {
            c.not_after
                .duration_since(renewal_due_at(c, 0.3, Duration::from_secs(15)))
        };
        assert_ne!(lead(&first), lead(&renewed));
    }

    #[test]
    fn a_short_lived_certificate_is_renewed_two_sync_periods_before_expiry() {
        // 30 s certificate, threshold 0.3 → 9 s window, below 2 × 10 s.
        let cert = certificate(30, "01");
        let due = renewal_due_at(&cert, 0.3, Duration::from_secs(10));
        assert_eq!(cert.not_after.duration_since(due).as_secs(), 20);
    }

    #[test]
    fn a_certificate_shorter_than_the_floor_is_due_at_once() {
        let cert = certificate(5, "01");
        assert!(renewal_due(
            &cert,
            cert.not_before,
            0.3,
            Duration::from_secs(10)
        ));
    }

    #[test]
    fn an_absurd_minimal_sync_time_makes_renewal_due_at_once_not_a_panic() {
        // Twice the minimal sync time reaches before the earliest timestamp
        // (found by fuzzing: `APP_MINIMAL_COMPASS_SYNC_TIME=60000000h`), or
        // beyond any signed duration (`u64::MAX` seconds).
        let cert = certificate(NINETY_DAYS, "01");
        for minimal_sync_time in [
            Duration::from_secs(60_000_000 * 3600),
            Duration::from_secs(u64::MAX),
        ] {
            let due = renewal_due_at(&cert, 0.3, minimal_sync_time);
            assert_eq!(due, Timestamp::MIN);
            assert!(renewal_due(&cert, cert.not_before, 0.3, minimal_sync_time));
        }
    }

    #[test]
    fn threshold_zero_still_renews_before_expiry() {
        let cert = certificate(NINETY_DAYS, "01");
        let due = renewal_due_at(&cert, 0.0, Duration::from_secs(10));
        assert_eq!(cert.not_after.duration_since(due).as_secs(), 20);
    }
}
