//! Waiting for a condition: poll with a deadline, never a bare sleep.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// What a polled function of [`wait_for`] returns: `Some(x)`, `true` or `Ok(x)`
/// mean done; `None`, `false` or `Err(e)` mean not yet (an `Err` is shown as
/// the last value seen if the deadline passes).
pub trait Awaited {
    /// The value [`wait_for`] returns when done.
    type Ready;
    /// `Ok(ready)` when done, else `Err(description of this value)`.
    fn into_ready(self) -> Result<Self::Ready, String>;
}

impl<T> Awaited for Option<T> {
    type Ready = T;
    fn into_ready(self) -> Result<T, String> {
        self.ok_or_else(|| "None".to_string())
    }
}

impl Awaited for bool {
    type Ready = ();
    fn into_ready(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("false".to_string())
        }
    }
}

impl<T, E: Debug> Awaited for Result<T, E> {
    type Ready = T;
    fn into_ready(self) -> Result<T, String> {
        self.map_err(|e| format!("Err({e:?})"))
    }
}

/// Poll `f` until it returns `Some`/`true`/`Ok` or the deadline passes; on
/// timeout panic with a message saying what was awaited and the last value
/// seen. Polls quickly at first (10 ms), backing off to 250 ms; a call of `f`
/// that hangs past the deadline counts as a timeout.
///
/// ```no_run
/// # async fn demo(client: kube::Client) {
/// use std::time::Duration;
/// use k8s_openapi::api::core::v1::ConfigMap;
/// let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "default");
/// let cm = test_support::wait_for("ConfigMap demo to exist", Duration::from_secs(10), || async {
///     api.get_opt("demo").await
/// })
/// .await;
/// # }
/// ```
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T::Ready
where
    T: Awaited,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut pause = Duration::from_millis(10);
    let mut last = String::from("(f never returned)");
    let mut polls = 0u64;
    loop {
        polls += 1;
        match tokio::time::timeout_at(deadline, f()).await {
            Ok(value) => match value.into_ready() {
                Ok(ready) => return ready,
                Err(seen) => last = seen,
            },
            Err(_) => {
                last =
                    format!("(the last call was still running at the deadline; before it: {last})")
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            panic!(
                "timed out after {:?} waiting for {what}; polled {polls} times; last value seen: {last}",
                now - started
            );
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_for_returns_the_ready_value() {
        let mut n = 0;
        let v = wait_for("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            let n = n;
            async move { (n >= 3).then_some(n) }
        })
        .await;
        assert_eq!(v, 3);
        wait_for("true", Duration::from_secs(1), || async { true }).await;
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for the impossible; polled")]
    async fn wait_for_panics_with_what_and_last_value() {
        let r: Result<(), String> = Err("still red".into());
        wait_for("the impossible", Duration::from_millis(100), || {
            let r = r.clone();
            async move { r }
        })
        .await;
    }

    #[tokio::test]
    async fn wait_for_message_names_the_last_value() {
        let handle = tokio::spawn(async {
            wait_for("green", Duration::from_millis(50), || async {
                Err::<(), _>("still red")
            })
            .await
        });
        let err = handle.await.unwrap_err().into_panic();
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            msg.contains("waiting for green") && msg.contains("still red"),
            "{msg}"
        );
    }
}
