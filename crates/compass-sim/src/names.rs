//! Application names as the Director serves them to a runtime.
//!
//! `applicationsForRuntime` normalizes each name when the runtime's
//! `isNormalized` label is missing or the string `"true"` (any other value,
//! a JSON `true` included, leaves the names as registered), and then appends
//! `-<systemNumber>` to the name of an application that has a system number.
//! The Director sets `isNormalized: "true"` on every new runtime. Only that
//! list's names change: `application(id)` serves the name as registered.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The runtime label that says whether the Director normalizes names.
pub const IS_NORMALIZED_LABEL: &str = "isNormalized";

/// What the Director does to application names. JSON: `"normalizedByDirector"`
/// or `"asRegistered"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ApplicationNames {
    /// As Compass: normalized unless the runtime's `isNormalized` label says
    /// otherwise, with the system number appended.
    #[default]
    NormalizedByDirector,
    /// The names exactly as registered, whatever the label: a Director that
    /// leaves naming to the agent, for tests of the agent's own normalization.
    AsRegistered,
}

impl ApplicationNames {
    /// The name `applicationsForRuntime` serves for an application registered
    /// as `name` (with `system_number`), to a runtime with `labels`.
    pub fn served(
        self,
        runtime_labels: &Map<String, Value>,
        name: &str,
        system_number: Option<&str>,
    ) -> String {
        if self == ApplicationNames::AsRegistered {
            return name.to_string();
        }
        let name = if normalizes(runtime_labels) {
            normalize(name)
        } else {
            name.to_string()
        };
        match system_number {
            Some(number) => format!("{name}-{number}"),
            None => name,
        }
    }
}

/// Whether the Director normalizes names for a runtime with these labels:
/// when `isNormalized` is missing (or null) or the string `"true"`.
pub fn normalizes(runtime_labels: &Map<String, Value>) -> bool {
    match runtime_labels.get(IS_NORMALIZED_LABEL) {
        None | Some(Value::Null) => true,
        Some(value) => value.as_str() == Some("true"),
    }
}

const PREFIX: &str = "mp-";

/// The Director's default normalization: a name that starts with `mp-` and is
/// its own normal form stays; any other becomes `mp-` + the name, lower-cased
/// (one character for one, as Go's `strings.ToLower`), every character
/// outside `[-a-z0-9]` a `-`, runs of `-` one, a trailing `-` removed.
pub fn normalize(name: &str) -> String {
    if name.starts_with(PREFIX) && normal_form(name) == name {
        return name.to_string();
    }
    normal_form(&format!("{PREFIX}{name}"))
}

fn normal_form(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let lower = c.to_lowercase().next().unwrap_or(c);
        let c = if lower.is_ascii_lowercase() || lower.is_ascii_digit() || lower == '-' {
            lower
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    if out.ends_with('-') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(value: Option<Value>) -> Map<String, Value> {
        let mut map = Map::new();
        if let Some(value) = value {
            map.insert(IS_NORMALIZED_LABEL.into(), value);
        }
        map
    }

    #[test]
    fn names_are_normalized_as_the_director_does() {
        for (name, normalized) in [
            ("orders", "mp-orders"),
            ("Café Orders", "mp-caf-orders"),
            ("my_app", "mp-my-app"),
            ("MP-Already", "mp-mp-already"),
            ("mp-ok", "mp-ok"),
            ("mp-Not_ok", "mp-mp-not-ok"),
            ("Some  App--", "mp-some-app"),
            ("", "mp"),
            ("İstanbul", "mp-istanbul"),
        ] {
            assert_eq!(normalize(name), normalized, "{name:?}");
        }
    }

    #[test]
    fn the_label_missing_or_the_string_true_normalizes_anything_else_does_not() {
        let names = ApplicationNames::NormalizedByDirector;
        for value in [None, Some(Value::Null), Some(json!("true"))] {
            assert_eq!(
                names.served(&labels(value.clone()), "Shop", None),
                "mp-shop",
                "{value:?}"
            );
        }
        for value in [json!("false"), json!("True"), json!(true)] {
            assert_eq!(
                names.served(&labels(Some(value.clone())), "Shop", None),
                "Shop",
                "{value}"
            );
        }
    }

    #[test]
    fn a_system_number_is_appended_to_the_served_name() {
        let names = ApplicationNames::NormalizedByDirector;
        assert_eq!(
            names.served(&labels(None), "Shop", Some("42")),
            "mp-shop-42"
        );
        assert_eq!(
            names.served(&labels(Some(json!("false"))), "Shop", Some("42")),
            "Shop-42"
        );
    }

    #[test]
    fn as_registered_serves_the_names_untouched() {
        assert_eq!(
            ApplicationNames::AsRegistered.served(&labels(None), "Shop_1", Some("42")),
            "Shop_1"
        );
    }
}
