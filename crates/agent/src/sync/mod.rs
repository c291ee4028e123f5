//! Synchronization: Director applications → `Application` resources and their
//! Secrets, pure; the writes are in `k8s::applications`.
//!
//! `convert` turns a Director application into what the cluster should hold
//! (`wanted`); `actual` is what the cluster holds, summarized; `plan`
//! compares the two by their `digest`s. `names` are the Kubernetes names;
//! `compact` the memory-saving forms the others keep their data in.
//!
//! The data flow keeps memory flat however many applications there are: each
//! Director application is converted and held ([`hold`]: packed, or settled
//! to names when the cluster already holds it) as it arrives, each cluster
//! object is summarized as it is read, and the plan compares digests; only
//! what must be written is unpacked, one at a time. An application whose
//! Director answer is byte for byte the last sync's is not even parsed:
//! `known_answers` remembers each answer's digest with what it wanted, and
//! settles it when the cluster still holds that.

pub mod actual;
pub mod compact;
pub mod convert;
pub mod digest;
pub mod known_answers;
pub mod names;
pub mod plan;
pub mod wanted;

pub use actual::{
    ActualApplication, ActualIndex, ActualSecret, ActualState, ListedApplication, SummaryCache,
};
pub use compact::{map_exact, NameList};
pub use convert::{to_wanted_application, ConversionSettings};
pub use digest::{DataDigest, OwnedDigest, WantedDigest};
pub use known_answers::{AnswerDigest, AnswerRecord, KnownAnswers};
pub use plan::{
    hold, plan, settle, ApplicationAction, ApplicationPlan, Deferred, Deletions, Plan, SecretAction,
};
pub use wanted::{
    fetch_waits_for_cluster, HeldApplication, PackedApplication, Packer, WantedApplication,
    WantedSecret, UNREAD_HOLD_BUDGET,
};
