//! The cluster's state kept between syncs while nothing changes it.
//!
//! After a whole read (the lists of [`super::read`]), the Applications and
//! the credential Secrets are watched from the versions their lists were
//! read at. Until either watch reports a change, or ends in a way that may
//! have missed one, the next sync plans against the state as read and lists
//! nothing: at 10,000 applications an idle sync no longer moves the metadata
//! of 50,000 objects. Any event (the agent's own writes included), a watch
//! error, a `410 Gone`, a refused watch or a dropped connection forgets the
//! state, and the next sync lists as before.
//!
//! Nothing here waits without a bound: each watch asks the API server to end
//! it within [`WATCH_TIMEOUT_SECONDS`] (it is then resumed from the last
//! version it saw; one still running 5 s later is given up), its answer
//! must begin within the client's request
//! deadline, and a connection that stops carrying traffic is dropped by the
//! client's HTTP/2 pings (`k8s::client`), which ends the watch and forgets
//! the state. Each sync still writes the CompassConnection's status, so a
//! partition is reported whether the state was kept or not.
//!
//! Why not kube-runtime's `watcher`, which the controller uses: it begins
//! with a list of its own (every object again, in JSON) and, after a `410`
//! or an error, lists again and goes on, so it cannot say "nothing changed
//! since this version", which is all this needs.

use std::fmt::Debug;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use kube::api::{WatchEvent, WatchParams};
use kube::Api;
use serde::de::DeserializeOwned;

use crate::k8s::access::Access;
use crate::k8s::errors::is_forbidden;
use crate::report::Report;
use crate::sync::ActualState;

/// How long the API server lets one watch run before it ends it (kube-runtime's
/// watcher asks the same; the server refuses more than 295).
pub const WATCH_TIMEOUT_SECONDS: u32 = 290;

/// How much longer than its timeout a watch may run: one the server has not
/// ended by then (it ends them at the timeout) is given up.
const WATCH_GRACE: Duration = Duration::from_secs(5);

/// A watch that ends sooner than this without a word is not resumed: a
/// server that closes watches at once would otherwise be asked again and
/// again.
const SHORTEST_QUIET_WATCH: Duration = Duration::from_secs(1);

/// How many watches a kept state needs: the Applications and the credential
/// Secrets.
const WATCHES: usize = 2;

/// Where a watch starts: the version of a whole list of `api`'s objects.
pub struct WatchFrom<K> {
    pub api: Api<K>,
    pub params: WatchParams,
    pub version: String,
    /// What is watched, for the log ("Applications").
    pub what: &'static str,
}

/// The state of the last whole read, while its watches say nothing changed.
#[derive(Default)]
pub struct KeptState {
    inner: Arc<Mutex<Kept>>,
}

#[derive(Default)]
struct Kept {
    /// Which read's state and watches these are: a watch of an earlier one
    /// may end after a later one was kept, and must not forget it.
    generation: u64,
    state: Option<Arc<ActualState>>,
    /// How many of this generation's watches have begun (their answer came).
    begun: usize,
    watches: Vec<tokio::task::AbortHandle>,
}

impl Kept {
    fn stop_watches(&mut self) {
        for watch in self.watches.drain(..) {
            watch.abort();
        }
    }

    /// Keeps `state` as a new generation's, with none of its watches begun;
    /// the watches kept before are stopped.
    fn install(&mut self, state: Arc<ActualState>) -> u64 {
        self.stop_watches();
        self.generation += 1;
        self.state = Some(state);
        self.begun = 0;
        self.generation
    }

    fn watch_began(&mut self, generation: u64) {
        if self.generation == generation {
            self.begun += 1;
        }
    }

    /// A watch of `generation` stopped: its state is forgotten, unless a
    /// later read's state has taken its place. Whether it was.
    fn watch_stopped(&mut self, generation: u64) -> bool {
        if self.generation != generation {
            return false;
        }
        self.state = None;
        // The caller is one of them: it ends anyway.
        self.stop_watches();
        true
    }

    fn current(&self) -> Option<Arc<ActualState>> {
        (self.begun == WATCHES)
            .then(|| self.state.clone())
            .flatten()
    }
}

impl Drop for KeptState {
    /// The watches hold the shared part, not the store: they are stopped
    /// with the store, not when they next hear something.
    fn drop(&mut self) {
        self.lock().stop_watches();
    }
}

impl KeptState {
    fn lock(&self) -> MutexGuard<'_, Kept> {
        lock(&self.inner)
    }

    /// The state of the last whole read, if both its watches have begun and
    /// neither has seen a change since.
    pub fn current(&self) -> Option<Arc<ActualState>> {
        self.lock().current()
    }

    /// Whether the next read would be the kept state (for tests).
    pub fn is_kept(&self) -> bool {
        self.current().is_some()
    }

    /// Keeps `state`, read whole at the lists' versions, and watches both
    /// kinds from there; the state kept before, and its watches, go.
    pub fn keep<A, S>(
        &self,
        state: Arc<ActualState>,
        applications: WatchFrom<A>,
        secrets: WatchFrom<S>,
        access: &Arc<Access>,
    ) where
        A: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
        S: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let mut kept = self.lock();
        let generation = kept.install(state);
        let watches = [
            tokio::spawn(watch_for_changes(
                applications,
                Arc::clone(&self.inner),
                generation,
                Arc::clone(access),
            ))
            .abort_handle(),
            tokio::spawn(watch_for_changes(
                secrets,
                Arc::clone(&self.inner),
                generation,
                Arc::clone(access),
            ))
            .abort_handle(),
        ];
        kept.watches.extend(watches);
    }

    /// Forgets the kept state and stops its watches (the agent's rights
    /// changed, or a read failed).
    pub fn forget(&self) {
        let mut kept = self.lock();
        kept.state = None;
        kept.stop_watches();
    }
}

fn lock(inner: &Mutex<Kept>) -> MutexGuard<'_, Kept> {
    // Nothing done under this lock can panic (a counter, an `Arc`, abort
    // handles): a poisoned lock's data is whole.
    inner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why a watch stopped, for the log line that says the state is forgotten.
enum Stopped {
    Changed,
    Refused(kube::Error),
    Failed(kube::Error),
    /// The server did not end the watch at its timeout.
    Overran,
    /// An error event: `410 Gone` (the version is no longer in the server's
    /// window) or another.
    ErrorEvent {
        code: u16,
        message: String,
    },
    EndedQuietly,
}

/// Watches from `from.version` until something changes or the watch ends
/// in a way that may have missed a change, then forgets the state of
/// `generation`. A watch the server ends at its timeout is resumed from the
/// last version it reported.
async fn watch_for_changes<K>(
    from: WatchFrom<K>,
    kept: Arc<Mutex<Kept>>,
    generation: u64,
    access: Arc<Access>,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let WatchFrom {
        api,
        params,
        mut version,
        what,
    } = from;
    let mut began = false;
    let stopped = 'watching: loop {
        let started = Instant::now();
        let events = match api.watch_metadata(&params, &version).await {
            Ok(events) => events,
            Err(error) if is_forbidden(&error) => break Stopped::Refused(error),
            Err(error) => break Stopped::Failed(error),
        };
        if !began {
            began = true;
            lock(&kept).watch_began(generation);
        }
        let mut events = pin!(events);
        let mut heard = false;
        let ends_by = tokio::time::Instant::from_std(started)
            + Duration::from_secs(WATCH_TIMEOUT_SECONDS.into())
            + WATCH_GRACE;
        loop {
            let Ok(next) = tokio::time::timeout_at(ends_by, events.try_next()).await else {
                break 'watching Stopped::Overran;
            };
            match next {
                Ok(Some(WatchEvent::Bookmark(bookmark))) => {
                    version = bookmark.metadata.resource_version;
                    heard = true;
                }
                Ok(Some(
                    WatchEvent::Added(_) | WatchEvent::Modified(_) | WatchEvent::Deleted(_),
                )) => break 'watching Stopped::Changed,
                Ok(Some(WatchEvent::Error(status))) => {
                    break 'watching Stopped::ErrorEvent {
                        code: status.code,
                        message: status.message,
                    }
                }
                Err(error) => break 'watching Stopped::Failed(error),
                Ok(None) => break,
            }
        }
        if !heard && started.elapsed() < SHORTEST_QUIET_WATCH {
            break Stopped::EndedQuietly;
        }
    };
    if !lock(&kept).watch_stopped(generation) {
        return;
    }
    match stopped {
        Stopped::Changed => {
            tracing::debug!(
                watched = what,
                "a change in the cluster: the next sync reads it"
            )
        }
        Stopped::Refused(error) => access.watch_cluster_state.refused(&error),
        Stopped::Failed(error) => {
            tracing::debug!(watched = what, error = %Report(&error), "the watch ended: the next sync reads the cluster")
        }
        Stopped::ErrorEvent { code, message } => {
            tracing::debug!(watched = what, code, %message, "the watch ended: the next sync reads the cluster")
        }
        Stopped::Overran => {
            tracing::debug!(
                watched = what,
                "the watch outlived its timeout: the next sync reads the cluster"
            )
        }
        Stopped::EndedQuietly => {
            tracing::debug!(
                watched = what,
                "the API server ended the watch at once: the next sync reads the cluster"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_used_once_both_its_watches_have_begun_until_one_stops() {
        let mut kept = Kept::default();
        let state = Arc::new(ActualState::default());
        let generation = kept.install(Arc::clone(&state));
        assert!(kept.current().is_none(), "no watch has begun");
        kept.watch_began(generation);
        assert!(kept.current().is_none(), "one watch has begun");
        kept.watch_began(generation);
        assert!(Arc::ptr_eq(&kept.current().unwrap(), &state));
        assert!(kept.watch_stopped(generation));
        assert!(kept.current().is_none(), "a change forgets it");
        assert!(kept.state.is_none(), "and its memory");
    }

    #[test]
    fn a_watch_of_an_earlier_read_neither_counts_nor_forgets_a_later_state() {
        let mut kept = Kept::default();
        let earlier = kept.install(Arc::new(ActualState::default()));
        let later_state = Arc::new(ActualState::default());
        let later = kept.install(Arc::clone(&later_state));
        kept.watch_began(earlier);
        kept.watch_began(later);
        assert!(
            kept.current().is_none(),
            "the earlier read's watch does not count"
        );
        kept.watch_began(later);
        assert!(!kept.watch_stopped(earlier));
        assert!(Arc::ptr_eq(&kept.current().unwrap(), &later_state));
    }
}
