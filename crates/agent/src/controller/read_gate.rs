//! A sync reads the cluster and fetches from the Director at the same time,
//! and the fetch may wait for the read to end (`sync::fetch_waits_for_cluster`).
//! How the fetch learns that the read has ended, however it ended: with its
//! summaries, with an error, or not listing Secrets. A read that fails must
//! open the gate too, or the fetch would wait until the cycle's deadline.

use std::future::Future;

use tokio::sync::watch;

/// Opens when the cluster read has ended.
#[derive(Clone, Debug)]
pub struct ReadGate(watch::Receiver<bool>);

impl ReadGate {
    pub fn has_opened(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the read has ended.
    pub async fn wait(&self) {
        // An error means the read's side is gone: ended as well.
        let _ = self.0.clone().wait_for(|ended| *ended).await;
    }
}

/// Runs the `fetch` (handed the gate) and the `read` at the same time; the
/// gate opens when the read's future has returned, whatever it returned.
pub async fn fetch_while_reading<Fetch, Read>(
    fetch: impl FnOnce(ReadGate) -> Fetch,
    read: Read,
) -> (Fetch::Output, Read::Output)
where
    Fetch: Future,
    Read: Future,
{
    let (ended, gate) = watch::channel(false);
    let read = async move {
        let read = read.await;
        ended.send_replace(true);
        read
    };
    tokio::join!(fetch(ReadGate(gate)), read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Longer than any of these tests takes; a fetch still waiting then
    /// would wait for ever.
    const BOUND: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_fetch_waiting_for_a_read_that_fails_goes_on() {
        let joined = tokio::time::timeout(
            BOUND,
            fetch_while_reading(
                |gate| async move {
                    assert!(!gate.has_opened());
                    gate.wait().await;
                    "fetched"
                },
                async {
                    tokio::task::yield_now().await;
                    Err::<(), _>("the apiserver refused the list")
                },
            ),
        )
        .await;
        assert_eq!(
            joined,
            Ok(("fetched", Err("the apiserver refused the list"))),
            "the fetch must not wait for a read that ended in an error"
        );
    }

    #[tokio::test]
    async fn the_gate_opens_only_once_the_read_has_returned() {
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (fetched, read) = tokio::time::timeout(
            BOUND,
            fetch_while_reading(
                |gate| async move {
                    tokio::task::yield_now().await;
                    let before = gate.has_opened();
                    let _ = release.send(());
                    gate.wait().await;
                    (before, gate.has_opened())
                },
                async {
                    let _ = released.await;
                    "summaries"
                },
            ),
        )
        .await
        .expect("both ended");
        assert_eq!(fetched, (false, true));
        assert_eq!(read, "summaries");
    }
}
