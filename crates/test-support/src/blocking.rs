//! Running async set-up code from blocking code, inside a tokio runtime or not.

use std::future::Future;

use anyhow::{anyhow, Context as _};

/// Runs `fut` to completion on a new current-thread runtime on a new thread,
/// so that it works whether or not the caller is inside a tokio runtime.
pub(crate) fn on_private_runtime<T, Fut>(fut: Fut) -> anyhow::Result<T>
where
    T: Send + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    std::thread::Builder::new()
        .name("testenv-init".into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building a tokio runtime")?
                .block_on(fut)
        })
        .context("spawning a thread")?
        .join()
        .map_err(|_| anyhow!("testenv-init thread panicked"))?
}
