//! The one-time connection parameters: `CONNECTOR_URL`, `RUNTIME_ID`, `TENANT`
//! and `TOKEN`, from a Secret or a ConfigMap.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use super::{NamespacedName, SourceKind};

#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionParameters {
    pub connector_url: String,
    pub runtime_id: String,
    pub tenant: String,
    /// The one-time token. Never logged.
    pub token: String,
}

impl std::fmt::Debug for ConnectionParameters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionParameters")
            .field("connector_url", &self.connector_url)
            .field("runtime_id", &self.runtime_id)
            .field("tenant", &self.tenant)
            .field("token", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("the connection configuration {kind} {source_name} does not exist")]
    Missing {
        kind: &'static str,
        source_name: String,
    },
    #[error("cannot read the connection configuration {kind} {source_name}: {reason}")]
    Unreadable {
        kind: &'static str,
        source_name: String,
        reason: String,
    },
    #[error("the connection configuration {source_name} lacks {}", keys.join(", "))]
    MissingKeys {
        source_name: String,
        keys: Vec<&'static str>,
    },
    #[error("CONNECTOR_URL {url:?} in {source_name} is not a valid http(s) URL: {reason}")]
    InvalidUrl {
        source_name: String,
        url: String,
        reason: String,
    },
}

impl SourceError {
    pub fn category(&self) -> &'static str {
        match self {
            SourceError::Missing { .. } => "ConfigurationMissing",
            SourceError::Unreadable { .. } => "ConfigurationUnreadable",
            SourceError::MissingKeys { .. } | SourceError::InvalidUrl { .. } => {
                "ConfigurationInvalid"
            }
        }
    }
}

impl ConnectionParameters {
    /// Checks the keys of a source; every problem is named at once.
    pub fn from_map(
        source_name: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<ConnectionParameters, SourceError> {
        let get = |key: &str| {
            values
                .get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let keys = ["CONNECTOR_URL", "RUNTIME_ID", "TENANT", "TOKEN"];
        let missing: Vec<&'static str> =
            keys.into_iter().filter(|key| get(key).is_none()).collect();
        if !missing.is_empty() {
            return Err(SourceError::MissingKeys {
                source_name: source_name.to_string(),
                keys: missing,
            });
        }
        let connector_url = get("CONNECTOR_URL").unwrap_or_default();
        match url::Url::parse(&connector_url) {
            Ok(url) if url.scheme() == "https" || url.scheme() == "http" => {}
            Ok(url) => {
                return Err(SourceError::InvalidUrl {
                    source_name: source_name.to_string(),
                    url: connector_url.clone(),
                    reason: format!("scheme {:?}", url.scheme()),
                })
            }
            Err(error) => {
                return Err(SourceError::InvalidUrl {
                    source_name: source_name.to_string(),
                    url: connector_url.clone(),
                    reason: error.to_string(),
                })
            }
        }
        Ok(ConnectionParameters {
            connector_url,
            runtime_id: get("RUNTIME_ID").unwrap_or_default(),
            tenant: get("TENANT").unwrap_or_default(),
            token: get("TOKEN").unwrap_or_default(),
        })
    }

    /// Reads the source from the cluster.
    pub async fn read(
        client: &Client,
        kind: SourceKind,
        name: &NamespacedName,
    ) -> Result<ConnectionParameters, SourceError> {
        let kind_name = match kind {
            SourceKind::Secret => "Secret",
            SourceKind::ConfigMap => "ConfigMap",
        };
        let unreadable = |error: kube::Error| SourceError::Unreadable {
            kind: kind_name,
            source_name: name.to_string(),
            reason: error.to_string(),
        };
        let missing = || SourceError::Missing {
            kind: kind_name,
            source_name: name.to_string(),
        };
        let values: BTreeMap<String, String> = match kind {
            SourceKind::Secret => {
                let secret = Api::<Secret>::namespaced(client.clone(), &name.namespace)
                    .get_opt(&name.name)
                    .await
                    .map_err(unreadable)?
                    .ok_or_else(missing)?;
                let mut values: BTreeMap<String, String> = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(key, value)| (key, String::from_utf8_lossy(&value.0).into_owned()))
                    .collect();
                values.extend(secret.string_data.unwrap_or_default());
                values
            }
            SourceKind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), &name.namespace)
                .get_opt(&name.name)
                .await
                .map_err(unreadable)?
                .ok_or_else(missing)?
                .data
                .unwrap_or_default(),
        };
        ConnectionParameters::from_map(&name.to_string(), &values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn all_four_keys_make_parameters() {
        let parameters = ConnectionParameters::from_map(
            "kyma-system/c",
            &values(&[
                ("CONNECTOR_URL", "https://compass/connector/graphql"),
                ("RUNTIME_ID", "r1"),
                ("TENANT", "t1"),
                ("TOKEN", "secret-token"),
            ]),
        )
        .unwrap();
        assert_eq!(parameters.runtime_id, "r1");
        assert!(
            !format!("{parameters:?}").contains("secret-token"),
            "Debug must not print the token"
        );
    }

    #[test]
    fn every_missing_or_empty_key_is_named() {
        let error = ConnectionParameters::from_map(
            "ns/c",
            &values(&[("RUNTIME_ID", "r1"), ("TOKEN", " ")]),
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("CONNECTOR_URL") && text.contains("TENANT") && text.contains("TOKEN"),
            "{text}"
        );
        assert!(!text.contains("RUNTIME_ID"), "{text}");
        assert!(text.contains("ns/c"), "{text}");
    }

    #[test]
    fn an_unparsable_connector_url_is_an_error() {
        for url in ["not a url", "ftp://compass/graphql"] {
            let error = ConnectionParameters::from_map(
                "ns/c",
                &values(&[
                    ("CONNECTOR_URL", url),
                    ("RUNTIME_ID", "r"),
                    ("TENANT", "t"),
                    ("TOKEN", "x"),
                ]),
            )
            .unwrap_err();
            assert!(matches!(error, SourceError::InvalidUrl { .. }), "{error}");
            assert!(error.to_string().contains(url), "{error}");
        }
    }
}
