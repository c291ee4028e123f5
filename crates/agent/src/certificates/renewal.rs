//! When to renew the client certificate.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::CertificateInfo;

/// How early renewal may move for jitter, as a share of the renewal window.
const JITTER_SHARE: f64 = 0.1;

/// The moment from which the certificate is due for renewal: when the time left
/// falls below `threshold × lifetime` (the original's rule), moved earlier by up
/// to 10% of that window by a jitter that is fixed for each certificate (derived
/// from its common name and serial) so a fleet of runtimes issued certificates
/// at the same time does not renew in step; and never later than twice the
/// minimal sync time before expiry, so a short-lived certificate is renewed
/// while it still works.
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
    let jitter = identity_fraction(info);
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

/// A stable number in [0, 1) from who the certificate names and its serial.
/// Compass gives every client certificate the serial number 2: it is the
/// common name (the id of the runtime's SystemAuth, one per runtime) that
/// tells a fleet's certificates apart.
fn identity_fraction(info: &CertificateInfo) -> f64 {
    // FNV-1a: stable across releases and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let identity: [&[u8]; 3] = [info.common_name.as_bytes(), b"\0", info.serial.as_bytes()];
    for byte in identity.into_iter().flatten().copied() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(lifetime_secs: i64, serial: &str) -> CertificateInfo {
        named_certificate(lifetime_secs, "r", serial)
    }

    fn named_certificate(lifetime_secs: i64, common_name: &str, serial: &str) -> CertificateInfo {
        let not_before = Timestamp::from_second(1_700_000_000).unwrap();
        CertificateInfo {
            subject: format!("CN={common_name}"),
            common_name: common_name.into(),
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
    fn jitter_spreads_a_fleet_whose_certificates_all_have_compass_serial_2() {
        // Compass's Connector gives every certificate the serial number 2; its
        // CN is the runtime's SystemAuth id.
        let times: Vec<Timestamp> = (0..50)
            .map(|i| {
                renewal_due_at(
                    &named_certificate(
                        NINETY_DAYS,
                        &format!("3f6c2a1e-8d4b-4c7a-9e21-{i:012x}"),
                        "02",
                    ),
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
