//! What a synchronization of Applications came to, as the status says it:
//! the state, the error naming the Applications that failed (bounded), and
//! the results listed.

use crate::crd::compass_connection::{
    ApplicationSyncResult, ConnectionState, SyncOperation, SynchronizationStatus,
    MAX_LISTED_RESULTS,
};

/// What a synchronization of Applications came to.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncReport {
    pub state: ConnectionState,
    pub status: SynchronizationStatus,
    /// The category of its failure, if it failed.
    pub failure: Option<&'static str>,
}

/// Short for the state every cycle aims at.
pub const SYNCHRONIZED: ConnectionState = ConnectionState::Synchronized;

/// The state, the synchronization error and the failure's category after the
/// Applications were applied (`failed`: `<name>: <error>` of each that
/// failed, of `total`) and the Runtime labelled.
///
/// The original agent's contract, which the components that provision
/// runtimes wait on: `Synchronized` once the sync ran and the Runtime was
/// labelled, whatever single Applications did (they are named, bounded, in
/// the error, and are no failure of the cycle: no backoff); labels that could
/// not be set are `MetadataUpdateFailed`. Beyond it: a list of applications
/// that did not come whole (`incomplete`: why; nothing was deleted) is
/// `SynchronizationFailed`, which those components accept too.
pub fn after_apply(
    failed: &[String],
    total: usize,
    labels_error: Option<String>,
    incomplete: Option<String>,
) -> (ConnectionState, String, Option<&'static str>) {
    let failed_summary = failed_applications(failed, total);
    let joined = |first: String, rest: Option<String>| match rest {
        Some(rest) if !rest.is_empty() => format!("{first}; {rest}"),
        _ => first,
    };
    if let Some(problem) = incomplete {
        let error = format!(
            "the Director's list of applications did not come whole ({problem}), so no Application was deleted in this cycle"
        );
        let rest = labels_error.map(|labels| joined(labels, failed_summary.clone()));
        return (
            ConnectionState::SynchronizationFailed,
            joined(error, rest.or(failed_summary)),
            Some("InconsistentAnswer"),
        );
    }
    match labels_error {
        Some(labels) => (
            ConnectionState::MetadataUpdateFailed,
            joined(labels, failed_summary),
            Some("MetadataUpdateFailed"),
        ),
        None => (
            ConnectionState::Synchronized,
            failed_summary.unwrap_or_default(),
            None,
        ),
    }
}

/// The results the status lists, and how many it leaves out: at most
/// [`MAX_LISTED_RESULTS`], failures first, then changes (created, updated,
/// deleted), then the unchanged, each group in the order given; each error
/// bounded. Every result still has its log line; the counts of all are in
/// the metrics.
pub fn listed_results(
    mut results: Vec<ApplicationSyncResult>,
) -> (Vec<ApplicationSyncResult>, u32) {
    let rank = |operation: SyncOperation| match operation {
        SyncOperation::Failed => 0,
        SyncOperation::Created | SyncOperation::Updated | SyncOperation::Deleted => 1,
        SyncOperation::Unchanged => 2,
    };
    results.sort_by_key(|result| rank(result.operation));
    let not_listed = results.len().saturating_sub(MAX_LISTED_RESULTS);
    results.truncate(MAX_LISTED_RESULTS);
    for result in &mut results {
        result.error = crate::report::bounded(&result.error, FAILURE_REASON_LEN);
    }
    (results, u32::try_from(not_listed).unwrap_or(u32::MAX))
}

/// How many of the failed Applications are named in the status error; the
/// rest are counted (each one has its own log line and, with this project's
/// CRD, its result in `synchronizationStatus.applications`).
pub const NAMED_FAILURES: usize = 5;
/// The longest reason quoted for one Application.
const FAILURE_REASON_LEN: usize = 300;

/// `2 of 200 applications could not be synchronized: a: …; b: …` (the first
/// [`NAMED_FAILURES`], then `and N more`); `None` when none failed.
pub fn failed_applications(failed: &[String], total: usize) -> Option<String> {
    if failed.is_empty() {
        return None;
    }
    let named: Vec<String> = failed
        .iter()
        .take(NAMED_FAILURES)
        .map(|failure| crate::report::bounded(failure, FAILURE_REASON_LEN))
        .collect();
    let mut summary = format!(
        "{} of {total} applications could not be synchronized: {}",
        failed.len(),
        named.join("; ")
    );
    if failed.len() > NAMED_FAILURES {
        summary.push_str(&format!(
            "; and {} more (see the agent's log)",
            failed.len() - NAMED_FAILURES
        ));
    }
    Some(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_failed_applications_leave_the_runtime_synchronized_as_the_original_does() {
        let none: Vec<String> = vec![];
        assert_eq!(
            after_apply(&none, 3, None, None),
            (ConnectionState::Synchronized, String::new(), None)
        );
        let failed = vec!["shop: forbidden".to_string()];
        assert_eq!(
            after_apply(&failed, 3, None, None),
            (
                ConnectionState::Synchronized,
                "1 of 3 applications could not be synchronized: shop: forbidden".into(),
                None
            )
        );
    }

    #[test]
    fn labels_that_cannot_be_set_are_a_metadata_failure_naming_failed_applications_too() {
        let none: Vec<String> = vec![];
        assert_eq!(
            after_apply(&none, 3, Some("cannot label".into()), None),
            (
                ConnectionState::MetadataUpdateFailed,
                "cannot label".into(),
                Some("MetadataUpdateFailed")
            )
        );
        let failed = vec!["shop: forbidden".to_string()];
        let (state, error, failure) = after_apply(&failed, 3, Some("cannot label".into()), None);
        assert_eq!(state, ConnectionState::MetadataUpdateFailed);
        assert_eq!(failure, Some("MetadataUpdateFailed"));
        assert_eq!(
            error,
            "cannot label; 1 of 3 applications could not be synchronized: shop: forbidden"
        );
    }

    #[test]
    fn a_list_that_did_not_come_whole_comes_first() {
        let failed = vec!["shop: forbidden".to_string()];
        let (state, error, failure) = after_apply(
            &failed,
            3,
            None,
            Some("the totalCount changed from 4 to 3 between pages".into()),
        );
        assert_eq!(state, ConnectionState::SynchronizationFailed);
        assert_eq!(failure, Some("InconsistentAnswer"));
        assert!(
            error.starts_with(
                "the Director's list of applications did not come whole (the totalCount changed"
            ) && error.contains("no Application was deleted")
                && error.ends_with("shop: forbidden"),
            "{error}"
        );
    }

    #[test]
    fn the_failed_applications_named_in_the_status_are_bounded() {
        let failed: Vec<String> = (0..40)
            .map(|i| format!("app-{i}: {}", "x".repeat(2_000)))
            .collect();
        let summary = failed_applications(&failed, 1_000).unwrap();
        assert!(summary.starts_with("40 of 1000 applications could not be synchronized: app-0: "));
        assert!(
            summary.contains("app-4: ") && !summary.contains("app-5: "),
            "{summary}"
        );
        assert!(
            summary.ends_with("; and 35 more (see the agent's log)"),
            "{summary}"
        );
        assert!(summary.len() < 2_000, "{} bytes", summary.len());
    }

    #[test]
    fn the_status_lists_at_most_the_cap_of_results_failures_first() {
        use crate::crd::compass_connection::{ApplicationSyncResult, MAX_LISTED_RESULTS};
        let result = |i: usize, operation| ApplicationSyncResult {
            name: format!("app-{i}"),
            application_id: format!("id-{i}"),
            operation,
            error: match operation {
                SyncOperation::Failed => "e".repeat(5_000),
                _ => String::new(),
            },
        };
        let mut results: Vec<_> = (0..240)
            .map(|i| result(i, SyncOperation::Unchanged))
            .collect();
        results.extend((240..250).map(|i| result(i, SyncOperation::Updated)));
        results.extend((250..253).map(|i| result(i, SyncOperation::Failed)));
        let (listed, not_listed) = listed_results(results);
        assert_eq!(listed.len(), MAX_LISTED_RESULTS);
        assert_eq!(not_listed, 153);
        let operations: Vec<_> = listed.iter().map(|r| r.operation).collect();
        assert_eq!(operations[..3], [SyncOperation::Failed; 3]);
        assert_eq!(operations[3..13], [SyncOperation::Updated; 10]);
        assert!(operations[13..]
            .iter()
            .all(|o| *o == SyncOperation::Unchanged));
        assert!(listed.iter().all(|r| r.error.len() <= 400));
        let size = serde_json::to_vec(&listed).unwrap().len();
        assert!(size < 64 * 1024, "{size} bytes");

        let (few, none) = listed_results(vec![result(1, SyncOperation::Created)]);
        assert_eq!((few.len(), none), (1, 0));
    }
}
