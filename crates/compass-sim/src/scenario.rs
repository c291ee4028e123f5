//! Scenario files (YAML or JSON) that seed runtimes and applications at start.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{generate_applications, Application, RuntimeSpec};
use crate::names::ApplicationNames;
use crate::order::ListOrder;
use crate::state::{Shared, SimError};

/// ```yaml
/// settings: { certValidity: 2160h, tokenTtl: 60m, strict: false }
/// runtimes:
///   - id: my-runtime
///     tenant: my-tenant
///     labels: { scenarios: [DEFAULT] }
///     applications: [ { id: app-1, name: orders, bundles: [] } ]
///     generate: { applications: 200, bundlesPerApplication: 2, apisPerBundle: 3 }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub settings: ScenarioSettings,
    #[serde(default)]
    pub runtimes: Vec<ScenarioRuntime>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScenarioSettings {
    /// humantime, e.g. `2160h`, `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_validity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ttl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// `{seeded: 42}` or `creation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_order: Option<ListOrder>,
    /// `normalizedByDirector` or `asRegistered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_names: Option<ApplicationNames>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioRuntime {
    #[serde(flatten)]
    pub spec: RuntimeSpec,
    #[serde(default)]
    pub applications: Vec<Application>,
    /// Generated applications, added after the listed ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<Generate>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Generate {
    pub applications: usize,
    #[serde(default)]
    pub bundles_per_application: usize,
    #[serde(default)]
    pub apis_per_bundle: usize,
    #[serde(default)]
    pub events_per_bundle: usize,
}

impl ScenarioRuntime {
    /// The listed applications followed by the generated ones.
    pub fn all_applications(&self) -> Vec<Application> {
        let mut apps = self.applications.clone();
        if let Some(g) = self.generate {
            apps.extend(generate_applications(
                g.applications,
                g.bundles_per_application,
                g.apis_per_bundle,
                g.events_per_bundle,
            ));
        }
        apps
    }
}

impl Scenario {
    /// Reads a YAML or JSON scenario file.
    pub fn from_file(path: &Path) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
            context: format!("reading scenario {}", path.display()),
            source,
        })?;
        Self::parse(&text)
            .map_err(|e| SimError::InvalidInput(format!("scenario {}: {e}", path.display())))
    }

    /// Parses YAML (which includes JSON). The YAML is read as JSON data first,
    /// so `credential: {basic: {...}}` means the same as in the admin API's JSON.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let value: serde_json::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}

/// Seeds runtimes, applications and settings from a scenario, or changes
/// nothing when one of its runtimes exists already.
pub(crate) fn seed(shared: &Shared, scenario: &Scenario) -> Result<(), SimError> {
    // Refuse before changing anything, so a bad scenario leaves no half state.
    let mut ids = std::collections::HashSet::new();
    for runtime in &scenario.runtimes {
        let id = &runtime.spec.id;
        if !ids.insert(id.as_str()) || shared.runtime_info(id).is_ok() {
            return Err(SimError::RuntimeExists(id.clone()));
        }
    }
    let s = &scenario.settings;
    let cert_validity = s.cert_validity.as_deref().map(parse_duration).transpose()?;
    let token_ttl = s.token_ttl.as_deref().map(parse_duration).transpose()?;
    shared.update_settings(|settings| {
        if let Some(v) = cert_validity {
            settings.cert_validity = v;
        }
        if let Some(v) = token_ttl {
            settings.token_ttl = v;
        }
        if let Some(v) = s.strict {
            settings.strict = v;
        }
        if let Some(v) = s.list_order {
            settings.list_order = v;
        }
        if let Some(v) = s.application_names {
            settings.application_names = v;
        }
    });
    for runtime in &scenario.runtimes {
        shared.create_runtime(runtime.spec.clone())?;
        shared.replace_applications(&runtime.spec.id, runtime.all_applications())?;
    }
    Ok(())
}

/// Parses a humantime duration (`2160h`, `90s`, `1h 30m`).
pub fn parse_duration(text: &str) -> Result<Duration, SimError> {
    humantime::parse_duration(text.trim())
        .map_err(|e| SimError::InvalidInput(format!("duration {text:?}: {e}")))
}

/// Renders a duration in the largest whole unit: `2160h`, `5m`, `90s`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.is_zero() {
        "0s".to_string()
    } else if d.subsec_nanos() != 0 || secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yaml_scenario_seeds_runtimes_and_generated_applications() {
        let scenario = Scenario::parse(
            r#"
settings: { certValidity: 30s, strict: true, listOrder: { seeded: 5 }, applicationNames: asRegistered }
runtimes:
  - id: rt-1
    tenant: t-1
    keyAlgorithm: rsa4096
    labels: { scenarios: [DEFAULT] }
    applications:
      - id: a1
        name: orders
        bundles:
          - id: b1
            name: Orders API
            defaultInstanceAuth:
              credential: { basic: { username: u, password: p } }
            apiDefinitions: [ { id: api1, name: orders, targetURL: "https://orders" } ]
    generate: { applications: 3, bundlesPerApplication: 1, apisPerBundle: 2 }
"#,
        )
        .unwrap();
        assert_eq!(scenario.settings.cert_validity.as_deref(), Some("30s"));
        assert_eq!(scenario.settings.list_order, Some(ListOrder::Seeded(5)));
        assert_eq!(
            scenario.settings.application_names,
            Some(ApplicationNames::AsRegistered)
        );
        let rt = &scenario.runtimes[0];
        assert_eq!(rt.spec.key_algorithm.as_deref(), Some("rsa4096"));
        assert_eq!(rt.spec.labels["scenarios"][0], "DEFAULT");
        let apps = rt.all_applications();
        assert_eq!(apps.len(), 4);
        assert_eq!(
            apps[0].bundles[0].api_definitions[0].target_url,
            "https://orders"
        );
    }

    #[test]
    fn the_demo_scenario_parses() {
        let scenario = Scenario::parse(include_str!("../examples/demo.yaml")).unwrap();
        assert_eq!(scenario.runtimes[0].all_applications().len(), 21);
    }

    #[test]
    fn durations_render_in_their_largest_whole_unit() {
        assert_eq!(format_duration(Duration::from_secs(2160 * 3600)), "2160h");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn durations_are_humantime() {
        assert_eq!(
            parse_duration("2160h").unwrap(),
            Duration::from_secs(2160 * 3600)
        );
        assert!(parse_duration("soon").is_err());
    }
}
