//! The one-time connection parameters: `CONNECTOR_URL`, `RUNTIME_ID`, `TENANT`
//! and `TOKEN`, from a Secret or a ConfigMap.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use zeroize::Zeroizing;

use super::{NamespacedName, SourceKind};

#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionParameters {
    pub connector_url: String,
    pub runtime_id: String,
    pub tenant: String,
    /// The one-time token. Never logged; wiped from memory when dropped.
    pub token: Zeroizing<String>,
    /// Where they were read from.
    pub origin: SourceOrigin,
}

impl std::fmt::Debug for ConnectionParameters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionParameters")
            .field("connector_url", &self.connector_url)
            .field("runtime_id", &self.runtime_id)
            .field("tenant", &self.tenant)
            .field("token", &"<redacted>")
            .field("origin", &self.origin)
            .finish()
    }
}

/// The object the parameters came from, e.g. `Secret kyma-system/compass-agent-configuration`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceOrigin {
    /// `Secret` or `ConfigMap`.
    pub kind: &'static str,
    pub name: NamespacedName,
}

impl std::fmt::Display for SourceOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("the connection configuration {looked_for} does not exist{note}")]
    Missing {
        /// `Secret ns/name`, `ConfigMap ns/name` or `Secret or ConfigMap ns/name`.
        looked_for: String,
        /// Why a place was not looked at, if one was not.
        note: String,
    },
    #[error("cannot read the connection configuration {origin}")]
    Unreadable {
        origin: SourceOrigin,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("the connection configuration {origin} lacks {}", keys.join(", "))]
    MissingKeys {
        origin: SourceOrigin,
        keys: Vec<&'static str>,
    },
    #[error("CONNECTOR_URL {url:?} in {origin} is not a valid http(s) URL: {reason}")]
    InvalidUrl {
        origin: SourceOrigin,
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

/// Where to look for the parameters: what the settings name, and whether the
/// agent may read ConfigMaps there (see `k8s::access`).
#[derive(Clone, Debug)]
pub struct SourceLocation {
    pub kind: SourceKind,
    pub name: NamespacedName,
    pub may_read_config_map: bool,
}

/// What a synchronization needs of the configuration: which runtime, of
/// which tenant. The token and the Connector's URL serve the connection
/// only: an operator may remove the spent token without stopping the sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeParameters {
    pub runtime_id: String,
    pub tenant: String,
    pub origin: SourceOrigin,
}

impl RuntimeParameters {
    pub fn from_map(
        origin: SourceOrigin,
        values: &BTreeMap<String, String>,
    ) -> Result<RuntimeParameters, SourceError> {
        let [runtime_id, tenant] = required(&origin, values, ["RUNTIME_ID", "TENANT"])?;
        Ok(RuntimeParameters {
            runtime_id,
            tenant,
            origin,
        })
    }

    /// Reads the source from the cluster (see [`ConnectionParameters::read`]).
    pub async fn read(
        client: &Client,
        location: &SourceLocation,
    ) -> Result<RuntimeParameters, SourceError> {
        let (origin, values) = read_values(client, location).await?;
        RuntimeParameters::from_map(origin, &values)
    }
}

/// The values of `keys`, trimmed, or every key that is missing or empty.
fn required<const N: usize>(
    origin: &SourceOrigin,
    values: &BTreeMap<String, String>,
    keys: [&'static str; N],
) -> Result<[String; N], SourceError> {
    let get = |key: &str| {
        values
            .get(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let missing: Vec<&'static str> = keys.into_iter().filter(|key| get(key).is_none()).collect();
    if !missing.is_empty() {
        return Err(SourceError::MissingKeys {
            origin: origin.clone(),
            keys: missing,
        });
    }
    Ok(keys.map(|key| get(key).unwrap_or_default()))
}

impl ConnectionParameters {
    /// Checks the keys of a source; every problem is named at once.
    pub fn from_map(
        origin: SourceOrigin,
        values: &BTreeMap<String, String>,
    ) -> Result<ConnectionParameters, SourceError> {
        let [connector_url, runtime_id, tenant, token] = required(
            &origin,
            values,
            ["CONNECTOR_URL", "RUNTIME_ID", "TENANT", "TOKEN"],
        )?;
        let invalid = |origin, reason| SourceError::InvalidUrl {
            origin,
            url: connector_url.clone(),
            reason,
        };
        match url::Url::parse(&connector_url) {
            Ok(url) if url.scheme() == "https" || url.scheme() == "http" => {}
            Ok(url) => return Err(invalid(origin, format!("scheme {:?}", url.scheme()))),
            Err(error) => return Err(invalid(origin, error.to_string())),
        }
        Ok(ConnectionParameters {
            connector_url,
            runtime_id,
            tenant,
            token: Zeroizing::new(token),
            origin,
        })
    }

    /// Reads the source from the cluster: the Secret or the ConfigMap, or
    /// with `auto` the Secret and, when there is none, the ConfigMap.
    pub async fn read(
        client: &Client,
        location: &SourceLocation,
    ) -> Result<ConnectionParameters, SourceError> {
        let (origin, values) = read_values(client, location).await?;
        ConnectionParameters::from_map(origin, &values)
    }
}

/// The source's keys and values, and where they were found.
pub async fn read_values(
    client: &Client,
    location: &SourceLocation,
) -> Result<(SourceOrigin, BTreeMap<String, String>), SourceError> {
    let name = &location.name;
    let secret = SourceOrigin {
        kind: "Secret",
        name: name.clone(),
    };
    let config_map = SourceOrigin {
        kind: "ConfigMap",
        name: name.clone(),
    };
    let missing = |looked_for: String, note: &str| SourceError::Missing {
        looked_for,
        note: note.to_string(),
    };
    match location.kind {
        SourceKind::Secret => match read_secret(client, &secret).await? {
            Some(values) => Ok((secret, values)),
            None => Err(missing(secret.to_string(), "")),
        },
        SourceKind::ConfigMap => match read_config_map(client, &config_map).await? {
            Some(values) => Ok((config_map, values)),
            None => Err(missing(config_map.to_string(), "")),
        },
        SourceKind::Auto => {
            if let Some(values) = read_secret(client, &secret).await? {
                return Ok((secret, values));
            }
            if !location.may_read_config_map {
                return Err(missing(
                    secret.to_string(),
                    " (a ConfigMap of that name is not looked at: the agent may not read ConfigMaps there)",
                ));
            }
            match read_config_map(client, &config_map).await? {
                Some(values) => Ok((config_map, values)),
                None => Err(missing(format!("Secret or ConfigMap {name}"), "")),
            }
        }
    }
}

async fn read_secret(
    client: &Client,
    origin: &SourceOrigin,
) -> Result<Option<BTreeMap<String, String>>, SourceError> {
    let secret = Api::<Secret>::namespaced(client.clone(), &origin.name.namespace)
        .get_opt(&origin.name.name)
        .await
        .map_err(|source| SourceError::Unreadable {
            origin: origin.clone(),
            source: Box::new(source),
        })?;
    Ok(secret.map(|secret| {
        let mut values: BTreeMap<String, String> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, String::from_utf8_lossy(&value.0).into_owned()))
            .collect();
        values.extend(secret.string_data.unwrap_or_default());
        values
    }))
}

async fn read_config_map(
    client: &Client,
    origin: &SourceOrigin,
) -> Result<Option<BTreeMap<String, String>>, SourceError> {
    let config_map = Api::<ConfigMap>::namespaced(client.clone(), &origin.name.namespace)
        .get_opt(&origin.name.name)
        .await
        .map_err(|source| SourceError::Unreadable {
            origin: origin.clone(),
            source: Box::new(source),
        })?;
    Ok(config_map.map(|map| map.data.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(name: &str) -> SourceOrigin {
        SourceOrigin {
            kind: "Secret",
            name: NamespacedName::parse(name).unwrap(),
        }
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn all_four_keys_make_parameters() {
        let parameters = ConnectionParameters::from_map(
            origin("kyma-system/c"),
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
            origin("ns/c"),
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
    fn a_synchronization_needs_the_runtime_and_the_tenant_only() {
        let parameters = RuntimeParameters::from_map(
            origin("ns/c"),
            &values(&[("RUNTIME_ID", "r1"), ("TENANT", " t1 ")]),
        )
        .unwrap();
        assert_eq!(
            (parameters.runtime_id.as_str(), parameters.tenant.as_str()),
            ("r1", "t1")
        );
        let error = RuntimeParameters::from_map(origin("ns/c"), &values(&[("TOKEN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("RUNTIME_ID, TENANT") && !error.contains("TOKEN"),
            "{error}"
        );
    }

    #[test]
    fn an_unparsable_connector_url_is_an_error() {
        for url in ["not a url", "ftp://compass/graphql"] {
            let error = ConnectionParameters::from_map(
                origin("ns/c"),
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
