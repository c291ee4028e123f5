//! SystemAuths and their one-time tokens: a SystemAuth for each token the
//! Director issues for a runtime, a new token for the same SystemAuth at
//! every `configuration`, each token spent once. Who a caller is follows from
//! its token or its certificate's CN, both naming a SystemAuth.

use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::{Shared, SimError, State};
use crate::clock::rfc3339;

/// Who a caller acts as, resolved from its one-time token or from the CN of
/// its client certificate, as Compass's gateway resolves it: the SystemAuth,
/// its runtime and the runtime's tenant. The `Tenant` header plays no part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemAuthIdentity {
    pub system_auth: String,
    pub runtime_id: String,
    pub tenant: String,
}

/// A SystemAuth of a runtime: made for each one-time token issued for the
/// runtime; it holds one live token at a time.
pub(super) struct SystemAuthRecord {
    pub(super) runtime_id: String,
    live_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenState {
    Live,
    Used,
    /// A newer token was issued for its SystemAuth before it was used.
    Replaced,
}

pub(super) struct TokenRecord {
    system_auth: String,
    runtime_id: String,
    expires_at: SystemTime,
    state: TokenState,
}

impl Shared {
    /// A one-time token for a runtime, as the Director's
    /// `requestOneTimeTokenForRuntime`: for a new SystemAuth of the runtime.
    pub fn issue_token(&self, runtime_id: &str) -> Result<String, SimError> {
        let mut state = self.state();
        if !state.runtimes.contains_key(runtime_id) {
            return Err(SimError::UnknownRuntime(runtime_id.to_string()));
        }
        let system_auth = uuid::Uuid::new_v4().to_string();
        state.system_auths.insert(
            system_auth.clone(),
            SystemAuthRecord {
                runtime_id: runtime_id.to_string(),
                live_token: None,
            },
        );
        Ok(self.new_token(&mut state, &system_auth))
    }

    /// A new one-time token for the same SystemAuth, as every `configuration`
    /// call makes the Connector generate: it replaces the SystemAuth's token
    /// if that one was not used yet.
    pub fn issue_token_for(&self, identity: &SystemAuthIdentity) -> Result<String, String> {
        let mut state = self.state();
        if !state.system_auths.contains_key(&identity.system_auth) {
            return Err(format!(
                "SystemAuth {:?} no longer exists",
                identity.system_auth
            ));
        }
        Ok(self.new_token(&mut state, &identity.system_auth))
    }

    fn new_token(&self, state: &mut State, system_auth: &str) -> String {
        let now = self.clock.now();
        // Spent and expired tokens are kept for clear refusals, but not forever.
        state
            .tokens
            .retain(|_, t| t.expires_at + Duration::from_secs(24 * 3600) > now);
        let token = new_token();
        let Some(auth) = state.system_auths.get_mut(system_auth) else {
            return token;
        };
        if let Some(previous) = auth.live_token.replace(token.clone()) {
            if let Some(record) = state.tokens.get_mut(&previous) {
                if record.state == TokenState::Live {
                    record.state = TokenState::Replaced;
                }
            }
        }
        let runtime_id = auth.runtime_id.clone();
        state.tokens.insert(
            token.clone(),
            TokenRecord {
                system_auth: system_auth.to_string(),
                runtime_id,
                expires_at: now + state.settings.token_ttl,
                state: TokenState::Live,
            },
        );
        token
    }

    /// The SystemAuth a token belongs to, without spending it.
    pub fn token_system_auth(&self, token: &str) -> Option<String> {
        self.state()
            .tokens
            .get(token)
            .map(|t| t.system_auth.clone())
    }

    /// The runtime a token belongs to, without spending it (for the log).
    pub fn token_owner(&self, token: &str) -> Option<String> {
        self.state().tokens.get(token).map(|t| t.runtime_id.clone())
    }

    /// Spends a one-time token; the identity it stands for, or the error the
    /// Connector answers.
    pub fn spend_token(&self, token: Option<&str>) -> Result<SystemAuthIdentity, String> {
        const PREFIX: &str = "Failed to authenticate request, token is invalid";
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
            "Failed to authenticate request, token not provided: send the one-time token in the Connector-Token header".to_string()
        })?;
        let now = self.clock.now();
        let mut state = self.state();
        let record = state
            .tokens
            .get_mut(token)
            .ok_or_else(|| format!("{PREFIX}: unknown token"))?;
        match record.state {
            TokenState::Used => return Err(format!("{PREFIX}: the token has already been used")),
            TokenState::Replaced => {
                return Err(format!(
                    "{PREFIX}: a newer token was issued for its SystemAuth"
                ))
            }
            TokenState::Live => {}
        }
        if now >= record.expires_at {
            return Err(format!(
                "{PREFIX}: the token expired at {}",
                rfc3339(record.expires_at)
            ));
        }
        record.state = TokenState::Used;
        let system_auth = record.system_auth.clone();
        let runtime_id = record.runtime_id.clone();
        drop(state);
        self.system_auth(&system_auth)
            .ok_or_else(|| format!("{PREFIX}: runtime {runtime_id:?} no longer exists"))
    }

    /// The SystemAuth with this id, its runtime and the runtime's tenant.
    pub fn system_auth(&self, id: &str) -> Option<SystemAuthIdentity> {
        let state = self.state();
        let auth = state.system_auths.get(id)?;
        let runtime = state.runtimes.get(&auth.runtime_id)?;
        Some(SystemAuthIdentity {
            system_auth: id.to_string(),
            runtime_id: auth.runtime_id.clone(),
            tenant: runtime.spec.tenant.clone(),
        })
    }

    /// The subject string and key algorithm the Connector hands out.
    pub fn csr_info(&self, identity: &SystemAuthIdentity) -> Result<(String, String), SimError> {
        self.with_runtime(&identity.runtime_id, |rt| {
            (
                rt.subject(&identity.system_auth).to_compass_string(),
                rt.key_algorithm(),
            )
        })
    }
}

/// 32 random bytes, URL-safe base64 (43 characters).
fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
