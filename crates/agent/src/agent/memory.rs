//! How the process's heap is kept: one glibc malloc arena, its free pages
//! given back after each reconcile.
//!
//! glibc gives each thread that allocates under contention an arena of its
//! own (up to eight per core). Memory freed in one arena is reused only by
//! the threads of that arena, so a sync whose futures move between the two
//! runtime workers leaves free pages in one arena while the next sync grows
//! another. The agent waits on the network, not on its allocations, so one
//! arena costs no time that counts, and the heap is reused by whichever
//! thread runs the next sync (BENCHMARKS.md, "One malloc arena, trimmed").

/// What the process should do about glibc's arena limit.
#[derive(Debug, PartialEq, Eq)]
pub enum ArenaLimit {
    /// Set it to one arena.
    SetToOne,
    /// The operator chose (`MALLOC_ARENA_MAX`, or `glibc.malloc.arena_max`
    /// in `GLIBC_TUNABLES`): glibc has read it, leave it.
    OperatorChose,
}

/// Decides from the two environment variables glibc reads.
pub fn arena_limit(
    malloc_arena_max: Option<&std::ffi::OsStr>,
    glibc_tunables: Option<&std::ffi::OsStr>,
) -> ArenaLimit {
    let tuned = glibc_tunables
        .and_then(|tunables| tunables.to_str())
        .is_some_and(|tunables| tunables.contains("glibc.malloc.arena_max"));
    if malloc_arena_max.is_some() || tuned {
        ArenaLimit::OperatorChose
    } else {
        ArenaLimit::SetToOne
    }
}

/// Applies [`arena_limit`]. Call it before the process starts its threads:
/// a thread that already has an arena keeps it.
pub fn limit_malloc_arenas() {
    let decision = arena_limit(
        std::env::var_os("MALLOC_ARENA_MAX").as_deref(),
        std::env::var_os("GLIBC_TUNABLES").as_deref(),
    );
    if decision == ArenaLimit::SetToOne {
        set_arena_max_to_one();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max_to_one() {
    // SAFETY: mallopt only changes a malloc parameter; called from the main
    // thread before any other thread exists.
    let accepted = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    if accepted != 1 {
        tracing::debug!("glibc refused M_ARENA_MAX=1; its default arenas stay");
    }
}

/// Other C libraries (musl) have no per-thread arenas to limit.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max_to_one() {}

/// Gives the heap's free pages back to the system. A sync frees most of what
/// it held when it ends; glibc keeps those pages resident unless they are at
/// the top of the heap, so the process would sit between syncs at its last
/// sync's size. Called after each reconcile: the
/// next sync faults in what it needs again, which costs far less than the
/// sync itself.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_heap() {
    // SAFETY: malloc_trim only returns free memory of the allocator's own.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other C libraries: nothing to do here.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_heap() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn one_arena_unless_the_operator_chose() {
        assert_eq!(arena_limit(None, None), ArenaLimit::SetToOne);
        assert_eq!(
            arena_limit(None, Some(OsStr::new("glibc.malloc.tcache_count=0"))),
            ArenaLimit::SetToOne
        );
        assert_eq!(
            arena_limit(Some(OsStr::new("4")), None),
            ArenaLimit::OperatorChose
        );
        assert_eq!(
            arena_limit(
                None,
                Some(OsStr::new(
                    "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=8"
                ))
            ),
            ArenaLimit::OperatorChose
        );
    }
}
