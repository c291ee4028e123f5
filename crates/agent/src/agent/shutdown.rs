//! The reconciles that are running, so that a shutdown waits for exactly
//! those and no longer.
//!
//! kube-runtime's graceful shutdown waits for the running reconciles, but it
//! also holds its runner until the watched object has been listed once. A
//! shutdown before that (the API server unreachable or slow at start, a
//! SIGTERM just after this replica became the leader, a role without `list`)
//! never ends: the Pod would hang in Terminating until it is killed. So the
//! agent ends the controller itself once no reconcile runs.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
pub struct InFlight {
    state: Mutex<State>,
    idle: Notify,
}

#[derive(Default)]
struct State {
    closed: bool,
    running: usize,
}

/// One running reconcile; it counts until dropped (finished or aborted).
pub struct Running(Arc<InFlight>);

impl InFlight {
    /// A reconcile starts, unless the shutdown has begun (`None`): then it
    /// must do nothing.
    pub fn start(self: &Arc<Self>) -> Option<Running> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.closed {
            return None;
        }
        state.running += 1;
        Some(Running(self.clone()))
    }

    /// Lets no reconcile start any more and returns once none runs.
    pub async fn close_and_wait(&self) {
        loop {
            let idle = self.idle.notified();
            let mut idle = std::pin::pin!(idle);
            // Registered before the count is read, so a reconcile that ends
            // in between still wakes us.
            idle.as_mut().enable();
            {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.closed = true;
                if state.running == 0 {
                    return;
                }
            }
            idle.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        state.running -= 1;
        if state.running == 0 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closing_waits_for_the_running_reconcile_and_no_new_one_starts() {
        let in_flight = Arc::new(InFlight::default());
        let running = in_flight.start().expect("open");
        let closing = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.close_and_wait().await }
        });
        // Closed while one runs: a new one may not start, and closing waits.
        while in_flight.start().is_some() {
            tokio::task::yield_now().await;
        }
        assert!(!closing.is_finished());
        drop(running);
        closing.await.unwrap();
        assert!(in_flight.start().is_none());
    }

    #[tokio::test]
    async fn closing_with_nothing_running_returns_at_once() {
        let in_flight = Arc::new(InFlight::default());
        drop(in_flight.start());
        in_flight.close_and_wait().await;
    }
}
