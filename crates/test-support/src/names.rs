//! Names that keep tests apart: unique, and valid as Kubernetes names.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A unique, DNS-safe name for test isolation: prefix + short random suffix.
///
/// The prefix is lower-cased and reduced to `[a-z0-9-]` (other characters
/// become `-`), and shortened so that the whole name is a valid DNS-1123 label
/// (at most 63 characters); the suffix is 6 characters of `[a-z0-9]`. An empty
/// prefix becomes `test`.
pub fn unique_name(prefix: &str) -> String {
    const SUFFIX: usize = 6;
    let mut p: String = prefix
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    p.truncate(63 - SUFFIX - 1);
    let p = p.trim_matches('-');
    let p = if p.is_empty() { "test" } else { p };
    format!("{p}-{}", random_suffix(SUFFIX))
}

/// `len` characters of `[a-z0-9]`, unique within the process and random across
/// processes.
pub(crate) fn random_suffix(len: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static STATE: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let mut h = STATE.get_or_init(Default::default).build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let mut n = h.finish();
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| {
            let c = ALPHABET[(n % 36) as usize] as char;
            n /= 36;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_dns_labels_and_differ() {
        let a = unique_name("My_Test.Name");
        let b = unique_name("My_Test.Name");
        assert_ne!(a, b);
        assert!(a.starts_with("my-test-name-"), "{a}");
        let long = unique_name(&"x".repeat(100));
        assert!(long.len() <= 63, "{long}");
        assert!(unique_name("").starts_with("test-"));
        for n in [a, b, long, unique_name("--a--")] {
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !n.starts_with('-')
                    && !n.ends_with('-'),
                "{n}"
            );
        }
    }
}
