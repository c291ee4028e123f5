//! The Director: `runtime(id)`, `applicationsForRuntime` (paged at every
//! level), `application(id)` and `setRuntimeLabel`, in the tenant of the
//! caller's SystemAuth (the `Tenant` header plays no part, as behind Compass's
//! gateway), with the Director's error shapes and list order. Who may see
//! what is decided here; the queries, the mutation and the types they serve
//! have their own modules.

mod application;
mod credentials;
mod definitions;
mod mutation;
mod page;
mod query;
mod runtime;

use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, Result, Schema};

use crate::state::{Shared, SystemAuthIdentity};

pub use mutation::DirectorMutation;
pub use query::DirectorQuery;

pub type DirectorSchema = Schema<DirectorQuery, DirectorMutation, EmptySubscription>;

/// Who calls: the SystemAuth that the client certificate's CN names, with
/// its runtime and tenant; and the `Tenant` header as sent (logged, not used).
#[derive(Debug, Clone)]
pub struct DirectorCaller {
    pub identity: SystemAuthIdentity,
    pub tenant_header: Option<String>,
}

pub fn schema_without_data() -> DirectorSchema {
    Schema::build(DirectorQuery, DirectorMutation, EmptySubscription).finish()
}

fn caller<'a>(ctx: &'a Context<'_>) -> Result<(&'a Arc<Shared>, &'a SystemAuthIdentity)> {
    Ok((
        ctx.data::<Arc<Shared>>()?,
        &ctx.data::<DirectorCaller>()?.identity,
    ))
}

/// Whether runtime `id` exists in the caller's tenant (another tenant's
/// runtime does not exist for it).
fn in_tenant(shared: &Shared, caller: &SystemAuthIdentity, id: &str) -> bool {
    shared
        .with_runtime(id, |rt| rt.spec.tenant == caller.tenant)
        .unwrap_or(false)
}
