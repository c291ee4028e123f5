//! Synchronization: Director applications → `Application` resources and their
//! Secrets. `convert`, `pending`, `actual` and `plan` are pure; the writes are
//! in `k8s::applications`.
//!
//! The data flow keeps memory flat however many applications there are: each
//! Director application is converted and packed (`pending`) as it arrives,
//! each cluster object is summarized (`actual`) as it is read, and the plan
//! compares digests; only what must be written is unpacked, one at a time.

pub mod actual;
pub mod convert;
pub mod exact;
pub mod name_list;
pub mod names;
pub mod pending;
pub mod plan;

pub use actual::{
    ActualApplication, ActualIndex, ActualSecret, ActualState, ListedApplication, SummaryCache,
};
pub use exact::map_exact;
pub use name_list::NameList;
pub use pending::{Content, OwnedDigest, PackedApplication, PendingApplication};

pub use convert::{
    to_wanted_application, ConversionSettings, DataDigest, WantedApplication, WantedSecret,
};
pub use plan::{
    pending, plan, settle, ApplicationAction, ApplicationPlan, Deferred, Deletions, Plan,
    SecretAction,
};
