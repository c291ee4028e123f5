//! The order in which the Director serves its lists.
//!
//! The real Director orders every list by its items' ids, which are random
//! UUIDs: to a client, the order has nothing to do with the order of creation
//! (the second API of a bundle came before the first). The simulator's ids are
//! chosen by its users (`app-1`, `app-2`), so ordering by id would keep the
//! order of creation; it orders by a hash of a seed and the id instead. The
//! order is stable while the seed stays, as the Director's is between
//! requests, so following the pages of a list sees each item once; another
//! seed gives another order of the same content.

use serde::{Deserialize, Serialize};

/// The environment variable that fixes the seed of [`ListOrder::from_env_or_random`],
/// to reproduce an order a test met.
pub const SEED_VARIABLE: &str = "COMPASS_SIM_LIST_ORDER_SEED";

/// How the Director orders applications, bundles, API and event definitions
/// and an application's auths. JSON: `{"seeded": 42}` or `"creation"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ListOrder {
    /// By a hash of the seed and each item's id: an order unrelated to the
    /// order of creation, as the real Director's.
    Seeded(u64),
    /// The order in which the items were created or put: not what Compass
    /// does; for a test that needs to know the order in advance.
    Creation,
}

impl ListOrder {
    /// [`ListOrder::Seeded`] with the seed in `COMPASS_SIM_LIST_ORDER_SEED`,
    /// else a random one: each run meets another order, and the seed (logged
    /// at start, shown in the admin API's settings) reproduces it.
    pub fn from_env_or_random() -> ListOrder {
        let seed = std::env::var(SEED_VARIABLE)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .unwrap_or_else(rand::random);
        ListOrder::Seeded(seed)
    }

    /// The positions of `items` in served order.
    pub fn arrange<T>(&self, items: &[T], id: impl Fn(&T) -> &str) -> Vec<usize> {
        let mut positions: Vec<usize> = (0..items.len()).collect();
        if let ListOrder::Seeded(seed) = *self {
            positions.sort_by_cached_key(|&i| {
                let id = id(&items[i]);
                (rank(seed, id), id.to_string())
            });
        }
        positions
    }

    /// `items` in served order.
    pub fn arranged<'a, T>(&self, items: &'a [T], id: impl Fn(&T) -> &str) -> Vec<&'a T> {
        self.arrange(items, id)
            .into_iter()
            .map(|i| &items[i])
            .collect()
    }
}

/// A stable pseudo-random rank of `id` under `seed`: FNV-1a over the seed and
/// the id, then the SplitMix64 finalizer to spread similar ids apart. The
/// same in every build, so a seed reproduces an order anywhere.
fn rank(seed: u64, id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.to_le_bytes().iter().chain(id.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("app-{i}")).collect()
    }

    #[test]
    fn creation_order_keeps_the_items_as_they_are() {
        let items = ids(5);
        assert_eq!(
            ListOrder::Creation.arrange(&items, String::as_str),
            vec![0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn a_seed_gives_a_stable_order_unrelated_to_creation() {
        let items = ids(20);
        let order = ListOrder::Seeded(7);
        let first = order.arrange(&items, String::as_str);
        assert_eq!(first, order.arrange(&items, String::as_str), "stable");
        assert_ne!(first, (0..20).collect::<Vec<_>>(), "not creation order");
        let other = ListOrder::Seeded(8).arrange(&items, String::as_str);
        assert_ne!(first, other, "another seed, another order");
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>(), "every item once");
    }

    #[test]
    fn an_item_keeps_its_place_relative_to_the_others_when_one_is_added() {
        // As the Director's ORDER BY id: a new item lands somewhere between.
        let order = ListOrder::Seeded(3);
        let before: Vec<String> = order
            .arranged(&ids(10), String::as_str)
            .into_iter()
            .cloned()
            .collect();
        let mut more = ids(10);
        more.push("app-new".into());
        let after: Vec<String> = order
            .arranged(&more, String::as_str)
            .into_iter()
            .filter(|id| *id != "app-new")
            .cloned()
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn the_json_form_names_what_it_is() {
        assert_eq!(
            serde_json::to_value(ListOrder::Seeded(42)).unwrap(),
            serde_json::json!({"seeded": 42})
        );
        assert_eq!(
            serde_json::to_value(ListOrder::Creation).unwrap(),
            serde_json::json!("creation")
        );
    }
}
