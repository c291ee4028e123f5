//! Setting values: Go durations (`parse_go_duration`), `namespace/name`
//! references (`NamespacedName::parse`), fractions (`parse_fraction`), the
//! connection parameters of the configuration Secret or ConfigMap
//! (`ConnectionParameters::from_map`), and what the settings feed into: the
//! certificate renewal time (`renewal_due_at`).
//!
//! Input: lines. Every line goes through every value parser. Then line 1 is the
//! minimal sync time, line 2 the renewal threshold, line 3 a certificate's
//! `<not before> <not after> <serial>` (Unix seconds), and the lines from the
//! fourth on are `KEY=value` entries of the connection source.
//!
//! Properties: no panic; a parsed duration formats back to itself; a parsed
//! name is a valid Kubernetes name and round-trips through `Display`; a parsed
//! fraction lies in [0, 1]; accepted connection parameters are complete and
//! have an http(s) URL; the renewal time is never after the expiry.
#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use compass_runtime_agent::certificates::renewal::renewal_due_at;
use compass_runtime_agent::certificates::CertificateInfo;
use compass_runtime_agent::config::parse::{parse_fraction, parse_go_duration};
use compass_runtime_agent::config::{ConnectionParameters, NamespacedName, SourceOrigin};
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();
    for line in &lines {
        check_duration(line);
        check_name(line);
        check_fraction(line);
    }

    let line = |i: usize| lines.get(i).copied().unwrap_or_default();
    let minimal_sync_time = parse_go_duration(line(0)).unwrap_or(Duration::from_secs(10));
    let threshold = parse_fraction(line(1)).unwrap_or(0.3);
    if let Some(info) = certificate(line(2)) {
        let due = renewal_due_at(&info, threshold, minimal_sync_time);
        assert!(due <= info.not_after, "{due} after {}", info.not_after);
    }

    let values: BTreeMap<String, String> = lines
        .iter()
        .skip(3)
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    let origin = SourceOrigin {
        kind: "Secret",
        name: NamespacedName::parse("kyma-system/compass-agent-configuration").unwrap(),
    };
    match ConnectionParameters::from_map(origin, &values) {
        Ok(parameters) => {
            for value in [
                &parameters.connector_url,
                &parameters.runtime_id,
                &parameters.tenant,
                &parameters.token,
            ] {
                assert!(!value.is_empty() && value.trim() == value);
            }
            let url = url::Url::parse(&parameters.connector_url).unwrap();
            assert!(matches!(url.scheme(), "http" | "https"));
            assert!(format!("{parameters:?}").contains("token: \"<redacted>\""));
        }
        Err(error) => {
            let _ = (error.to_string(), error.category());
        }
    }
});

fn check_duration(input: &str) {
    let Ok(duration) = parse_go_duration(input) else {
        return;
    };
    // The same duration written in nanoseconds, and in seconds with a fraction.
    assert_eq!(
        parse_go_duration(&format!("{}ns", duration.as_nanos())),
        Ok(duration)
    );
    assert_eq!(
        parse_go_duration(&format!(
            "{}.{:09}s",
            duration.as_secs(),
            duration.subsec_nanos()
        )),
        Ok(duration)
    );
}

fn check_name(input: &str) {
    let Ok(name) = NamespacedName::parse(input) else {
        return;
    };
    let dns = |value: &str, max: usize, dots: bool| {
        !value.is_empty()
            && value.len() <= max
            && value.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.')
            })
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    assert!(dns(&name.namespace, 63, false), "{name:?}");
    assert!(dns(&name.name, 253, true), "{name:?}");
    assert_eq!(NamespacedName::parse(&name.to_string()), Ok(name));
}

fn check_fraction(input: &str) {
    if let Ok(value) = parse_fraction(input) {
        assert!((0.0..=1.0).contains(&value), "{input:?} → {value}");
    }
}

/// `<not before> <not after> <serial>`, seconds clamped into what a parsed
/// certificate can hold.
fn certificate(line: &str) -> Option<CertificateInfo> {
    let mut fields = line.splitn(3, ' ');
    let mut time = || -> Option<Timestamp> {
        let seconds: i64 = fields.next()?.trim().parse().ok()?;
        let seconds = seconds.clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
        Timestamp::from_second(seconds).ok()
    };
    let not_before = time()?;
    let not_after = time()?;
    let serial = fields.next().unwrap_or_default().to_string();
    Some(CertificateInfo {
        subject: "CN=runtime".into(),
        common_name: "runtime".into(),
        serial,
        not_before,
        not_after,
    })
}
