//! Parsers for setting values, kept pure so they can be unit-tested and fuzzed.

use std::fmt;
use std::time::Duration;

use crate::crd::names::{check_name, NameForm, NameProblem};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("duration {0:?} is empty")]
    EmptyDuration(String),
    #[error("duration {input:?} is not valid: {reason} (use Go's format, e.g. 20s, 1m30s, 500ms, 2160h)")]
    InvalidDuration { input: String, reason: &'static str },
    #[error("{input:?} is not a valid namespace/name: {reason}")]
    InvalidNamespacedName { input: String, reason: String },
    #[error("{input:?} is not a number between 0 and 1")]
    InvalidFraction { input: String },
    #[error("{input:?} is not a size in bytes of at least 1 (a whole number, optionally with Ki, Mi or Gi, e.g. 32Mi)")]
    InvalidByteSize { input: String },
    #[error(
        "{input:?} is not a boolean (1, t, T, TRUE, true, True, 0, f, F, FALSE, false or False)"
    )]
    InvalidBool { input: String },
}

/// A boolean as the original agent reads it (Go's `strconv.ParseBool`): `1`,
/// `t`, `T`, `TRUE`, `true`, `True` and the same forms of false, nothing else
/// (no surrounding spaces, no `yes`), so a value Kyma's manifest sets means
/// the same to both agents.
pub fn parse_go_bool(input: &str) -> Result<bool, ParseError> {
    match input {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(ParseError::InvalidBool {
            input: input.to_string(),
        }),
    }
}

/// Parses a duration in Go's `time.ParseDuration` format (`20s`, `1m30s`,
/// `1.5h`, `300ms`, `0`), which is what the original agent's settings use.
/// Negative durations are refused: no setting of the agent can use one.
pub fn parse_go_duration(input: &str) -> Result<Duration, ParseError> {
    let invalid = |reason| ParseError::InvalidDuration {
        input: input.to_string(),
        reason,
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(ParseError::EmptyDuration(input.to_string()));
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    if text.is_empty() {
        return Err(invalid("expected a number after '+'"));
    }
    if text.starts_with('-') {
        return Err(invalid("negative durations are not allowed"));
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(invalid("expected a number"));
        }
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            "" => return Err(invalid("a number needs a unit (ns, us, ms, s, m, h)")),
            _ => return Err(invalid("unknown unit (use ns, us, ms, s, m, h)")),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(invalid("malformed number"));
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid("number too large"))?
        };
        let mut nanos = whole
            .checked_mul(unit_nanos)
            .ok_or_else(|| invalid("duration too large"))?;
        // Fractions: only the digits that still matter at nanosecond precision.
        let mut scale = unit_nanos;
        for digit in fraction.bytes().take(30) {
            scale /= 10;
            nanos = nanos
                .checked_add(u128::from(digit - b'0') * scale)
                .ok_or_else(|| invalid("duration too large"))?;
        }
        total_nanos = total_nanos
            .checked_add(nanos)
            .ok_or_else(|| invalid("duration too large"))?;
        rest = after;
    }
    let secs =
        u64::try_from(total_nanos / 1_000_000_000).map_err(|_| invalid("duration too large"))?;
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

/// A `namespace/name` reference to a Secret or ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl NamespacedName {
    /// `namespace/name`; a bare `name` means namespace `default`, as in the original.
    pub fn parse(input: &str) -> Result<NamespacedName, ParseError> {
        let invalid = |reason: String| ParseError::InvalidNamespacedName {
            input: input.to_string(),
            reason,
        };
        let text = input.trim();
        let (namespace, name) = match text.split_once('/') {
            Some((namespace, name)) => (namespace, name),
            None => ("default", text),
        };
        if name.contains('/') {
            return Err(invalid("more than one '/'".into()));
        }
        let reason = |what: &str, value: &str, problem: NameProblem| match problem {
            NameProblem::Empty => format!("the {what} is empty"),
            problem => format!("the {what} {value:?}: {problem}"),
        };
        check_name(namespace, NameForm::Label)
            .map_err(|problem| invalid(reason("namespace", namespace, problem)))?;
        check_name(name, NameForm::Subdomain)
            .map_err(|problem| invalid(reason("name", name, problem)))?;
        Ok(NamespacedName {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A size in bytes: `1048576`, `512Ki`, `32Mi`, `1Gi` (Kubernetes' binary
/// suffixes); at least one byte.
pub fn parse_byte_size(input: &str) -> Result<u64, ParseError> {
    let invalid = || ParseError::InvalidByteSize {
        input: input.to_string(),
    };
    let text = input.trim();
    let (number, factor) = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)]
        .into_iter()
        .find_map(|(suffix, factor)| Some((text.strip_suffix(suffix)?, factor)))
        .unwrap_or((text, 1));
    let number: u64 = number.parse().map_err(|_| invalid())?;
    number
        .checked_mul(factor)
        .filter(|bytes| *bytes > 0)
        .ok_or_else(invalid)
}

/// A fraction in `[0, 1]`, such as the renewal threshold `0.3`.
pub fn parse_fraction(input: &str) -> Result<f64, ParseError> {
    match input.trim().parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(ParseError::InvalidFraction {
            input: input.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_plus_is_not_a_duration() {
        assert!(parse_go_duration("+").is_err());
        assert_eq!(parse_go_duration("+5s").unwrap(), Duration::from_secs(5));
    }

    #[test]
    fn names_follow_dns_1123_around_each_dot() {
        for bad in ["ns/a..b", "ns/a.-b", "ns/a-.b", "ns/.a", "ns/a."] {
            assert!(NamespacedName::parse(bad).is_err(), "{bad} was accepted");
        }
        let ok = NamespacedName::parse("ns/a.b-c.d").unwrap();
        assert_eq!(ok.name, "a.b-c.d");
    }

    #[test]
    fn go_durations_of_the_original_defaults_parse() {
        assert_eq!(parse_go_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_go_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(
            parse_go_duration("2160h"),
            Ok(Duration::from_secs(2160 * 3600))
        );
    }

    #[test]
    fn go_durations_combine_units_and_fractions() {
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_go_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(
            parse_go_duration("1h2m3s4ms5us6ns"),
            Ok(Duration::new(3723, 4_005_006))
        );
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("2µs"), Ok(Duration::from_micros(2)));
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        for (input, needle) in [
            ("20", "needs a unit"),
            ("20x", "unknown unit"),
            ("s", "expected a number"),
            ("-5s", "negative"),
            ("1..5s", "malformed"),
            ("99999999999999999999999999999999999999999h", "too large"),
        ] {
            let error = parse_go_duration(input).unwrap_err().to_string();
            assert!(error.contains(needle), "{input}: {error}");
        }
        assert!(matches!(
            parse_go_duration(""),
            Err(ParseError::EmptyDuration(_))
        ));
    }

    #[test]
    fn a_fraction_that_overflows_the_total_is_too_large_not_a_panic() {
        // Whole hours just below the u128 nanosecond limit, and a fraction that
        // crosses it: a panic in debug builds, and in release builds a wrapped
        // sum, i.e. a short duration instead of an error.
        let input = "94522879700260684295381835.9h";
        let error = parse_go_duration(input).unwrap_err().to_string();
        assert!(error.contains("too large"), "{error}");
    }

    #[test]
    fn namespaced_names_default_to_the_default_namespace() {
        assert_eq!(
            NamespacedName::parse("kyma-system/compass-agent-configuration").unwrap(),
            NamespacedName {
                namespace: "kyma-system".into(),
                name: "compass-agent-configuration".into()
            }
        );
        assert_eq!(
            NamespacedName::parse("only-name").unwrap().namespace,
            "default"
        );
        assert_eq!(
            NamespacedName::parse("ns/a.b").unwrap().to_string(),
            "ns/a.b"
        );
    }

    #[test]
    fn bad_namespaced_names_are_refused_with_the_reason() {
        for (input, needle) in [
            ("", "empty"),
            ("ns/", "name is empty"),
            ("/name", "namespace is empty"),
            ("a/b/c", "more than one"),
            ("Kyma/x", "lower-case"),
            ("ns/-x", "start and end"),
            ("n.s/x", "namespace"),
        ] {
            let error = NamespacedName::parse(input).unwrap_err().to_string();
            assert!(error.contains(needle), "{input:?}: {error}");
        }
    }

    #[test]
    fn byte_sizes_take_binary_suffixes() {
        assert_eq!(parse_byte_size("32Mi"), Ok(32 << 20));
        assert_eq!(parse_byte_size("512Ki"), Ok(512 << 10));
        assert_eq!(parse_byte_size("1Gi"), Ok(1 << 30));
        assert_eq!(parse_byte_size("1000"), Ok(1000));
        for bad in ["", "0", "Mi", "-1Mi", "1.5Mi", "32MB", "99999999999Gi"] {
            assert!(parse_byte_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn booleans_are_read_as_go_reads_them() {
        for text in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(text), Ok(true), "{text}");
        }
        for text in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(text), Ok(false), "{text}");
        }
        for text in ["yes", "tRUE", " true", "", "2"] {
            let error = parse_go_bool(text).unwrap_err().to_string();
            assert!(error.contains("not a boolean"), "{text}: {error}");
        }
    }

    #[test]
    fn fractions_must_lie_between_zero_and_one() {
        assert_eq!(parse_fraction("0.3"), Ok(0.3));
        assert!(parse_fraction("1.5").is_err());
        assert!(parse_fraction("NaN").is_err());
        assert!(parse_fraction("x").is_err());
    }
}
