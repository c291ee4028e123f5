//! The simulator's state and the operations on it, shared by the GraphQL
//! resolvers, the admin API and the library API: the runtimes, their
//! applications, SystemAuths and one-time tokens, the certificates issued,
//! and the settings. Each part's operations live in its own module.

mod applications;
mod certificates;
mod error;
mod runtimes;
mod settings;
mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};

use crate::ca::CertificateAuthority;
use crate::clock::Clock;
use crate::faults::FaultTable;
use crate::log::RequestLog;

pub use certificates::CertificateInfo;
pub(crate) use certificates::ClientCa;
pub use error::SimError;
pub use runtimes::RuntimeInfo;
pub(crate) use runtimes::RuntimeState;
pub use settings::Settings;
pub use tokens::SystemAuthIdentity;

#[derive(Default)]
pub(crate) struct State {
    pub runtimes: BTreeMap<String, RuntimeState>,
    system_auths: HashMap<String, tokens::SystemAuthRecord>,
    tokens: HashMap<String, tokens::TokenRecord>,
    /// By fingerprint.
    certificates: BTreeMap<String, certificates::CertRecord>,
    pub settings: Settings,
}

/// The URLs clients use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Urls {
    /// Token-secured Connector (`CONNECTOR_URL`).
    pub connector_url: String,
    /// Certificate-secured Connector (`certificateSecuredConnectorURL`).
    pub cert_secured_connector_url: String,
    pub director_url: String,
    /// `None` when the admin listener is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_url: Option<String>,
}

/// Everything the servers share.
pub(crate) struct Shared {
    pub clock: Clock,
    pub urls: Urls,
    pub server_ca_pem: String,
    state: Mutex<State>,
    client_ca: RwLock<Arc<ClientCa>>,
    pub faults: Mutex<FaultTable>,
    pub log: Mutex<RequestLog>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn new(
        clock: Clock,
        urls: Urls,
        server_ca_pem: String,
        client_ca: CertificateAuthority,
        settings: Settings,
        log_capacity: usize,
    ) -> Self {
        Self {
            clock,
            urls,
            server_ca_pem,
            state: Mutex::new(State {
                settings,
                ..State::default()
            }),
            client_ca: RwLock::new(Arc::new(ClientCa {
                ca: client_ca,
                generation: 1,
            })),
            faults: Mutex::new(FaultTable::default()),
            log: Mutex::new(RequestLog::new(log_capacity)),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn faults(&self) -> MutexGuard<'_, FaultTable> {
        lock(&self.faults)
    }

    pub fn log(&self) -> MutexGuard<'_, RequestLog> {
        lock(&self.log)
    }

    pub fn settings(&self) -> Settings {
        self.state().settings
    }

    pub fn update_settings(&self, f: impl FnOnce(&mut Settings)) -> Settings {
        let mut state = self.state();
        let order = state.settings.list_order;
        f(&mut state.settings);
        if state.settings.list_order != order {
            for runtime in state.runtimes.values_mut() {
                runtime.forget_served_order();
            }
        }
        state.settings
    }
}
