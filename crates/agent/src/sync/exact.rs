//! Turning a long list into another without keeping its buffer.
//!
//! `vec.into_iter().map(f).collect()` reuses the source's buffer when the
//! new elements fit in it (an "in-place collect"), and keeps all of it: a
//! list of 40,000 listed Secrets, grown by doubling to room for 65,536,
//! held 6.8 MB to carry 2.2 MB of summaries until the sync ended
//! (heaptrack, BENCHMARKS.md). The lists the agent keeps for a whole sync
//! are made with this instead.

/// `f` applied to each item, in order, into a vector of exactly their number.
pub fn map_exact<T, U>(items: Vec<T>, f: impl FnMut(T) -> U) -> Vec<U> {
    let mut mapped = Vec::with_capacity(items.len());
    mapped.extend(items.into_iter().map(f));
    mapped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_has_room_for_its_items_only() {
        // Large elements with room for 64, mapped to smaller ones: an
        // in-place collect would keep room for more than 64.
        let mut listed: Vec<[u64; 4]> = Vec::with_capacity(64);
        listed.extend([[1; 4], [2; 4], [3; 4]]);
        let firsts = map_exact(listed, |item| item[0]);
        assert_eq!(firsts, [1, 2, 3]);
        assert_eq!(firsts.capacity(), 3);
    }
}
