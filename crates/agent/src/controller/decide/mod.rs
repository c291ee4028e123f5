//! The controller's decisions, as pure functions of time and status, one
//! file each:
//!
//! - `step`: what a reconcile does now ([`next_step`]), and whether it
//!   synchronizes ([`sync_due`]);
//! - `transition`: what the status (and the spec) becomes after a cycle
//!   ([`transition`]), or after a cycle abandoned at its deadline
//!   ([`after_deadline`]); `sync_report` what a synchronization came to;
//! - `schedule`: when the next cycle runs ([`next_run`]: every requeue goes
//!   through it), the backoff after failures, and when the Connector is
//!   asked ([`connector_check_due`]);
//! - `conditions`: the standard conditions of the status.

mod conditions;
mod schedule;
mod step;
mod sync_report;
mod time;
mod transition;

#[cfg(test)]
mod fixtures;

pub use conditions::{
    conditions, CONDITION_CERTIFICATE_VALID, CONDITION_CONNECTED, CONDITION_SYNCHRONIZED,
};
pub use schedule::{
    backoff_delay, connector_check_due, next_run, period_after_success, requeue_after_success,
    Backoff, Cause, ConnectorCheck, NextRun, NextRunInput, Requeue, Run, WriteFailure,
    CONFLICT_RETRY,
};
pub use step::{next_step, sync_due, Step};
pub use sync_report::{
    after_apply, failed_applications, listed_results, SyncReport, NAMED_FAILURES, SYNCHRONIZED,
};
pub use transition::{
    after_deadline, current_error, management_info_after, transition, AbandonedIn,
    ConnectionOutcome, Cycle, SpecChanges, Transition, CYCLE_TIMEOUT,
};
