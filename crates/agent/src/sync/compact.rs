//! Compact forms of what a sync keeps, in less memory than the standard
//! types take: the caches' uids and resourceVersions ([`CompactText`]),
//! short lists of names in one allocation ([`NameList`]), and lists with no
//! spare room ([`map_exact`]). What each saves is in BENCHMARKS.md.

/// A uid or a resourceVersion as the caches keep it: in its usual form (a
/// UUID, a decimal number) without an allocation of its own; any other text
/// as it is. Only compared, never shown: two different texts are never the
/// same key, since only the canonical form of a UUID or a number is packed.
/// The caches hold one for each Application of the cluster and two for each
/// credential Secret: as `String`s, each would take a heap allocation besides.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CompactText {
    /// Its 16 bytes as two big-endian words: ordered as the bytes are, and
    /// compared in two instructions where an array of bytes calls `memcmp`
    /// (the digest cache compares 40,000 uids a dozen times each a sync).
    Uuid([u64; 2]),
    Number(u64),
    Text(Box<str>),
}

impl CompactText {
    pub fn new(text: &str) -> CompactText {
        if let Some(uuid) = canonical_uuid(text) {
            let (high, low) = uuid.split_at(8);
            let word = |half: &[u8]| u64::from_be_bytes(half.try_into().unwrap_or_default());
            return CompactText::Uuid([word(high), word(low)]);
        }
        let canonical_number = !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        match text.parse() {
            Ok(number) if canonical_number => CompactText::Number(number),
            _ => CompactText::Text(text.into()),
        }
    }
}

impl From<&str> for CompactText {
    fn from(text: &str) -> CompactText {
        CompactText::new(text)
    }
}

impl From<String> for CompactText {
    fn from(text: String) -> CompactText {
        CompactText::new(&text)
    }
}

/// The 16 bytes of a UUID written as Kubernetes writes uids (lowercase hex,
/// 8-4-4-4-12); `None` for any other text.
fn canonical_uuid(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut uuid = [0u8; 16];
    let mut nibbles = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b != b'-' {
                return None;
            }
            continue;
        }
        let value = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        uuid[nibbles / 2] |= value << (4 * (1 - nibbles % 2));
        nibbles += 1;
    }
    Some(uuid)
}

/// Short lists of names in one allocation (the names' length and one byte
/// each) behind one 16-byte pointer: an Application's Secrets, kept for every
/// Application of the cluster between syncs and for every settled Director
/// application during one (a `Vec<String>` would take an allocation and a
/// 24-byte `String` per name). Each name is ended by a NUL, which no
/// Kubernetes name holds. Shared, not copied, when cloned: a recalled
/// application's Secret names are the cluster Application's
/// ([`super::known_answers`]), for every application of an idle sync.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NameList(std::sync::Arc<str>);

impl NameList {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split_terminator('\0')
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<S: AsRef<str>> FromIterator<S> for NameList {
    fn from_iter<I: IntoIterator<Item = S>>(names: I) -> NameList {
        let mut text = String::new();
        for name in names {
            text.push_str(name.as_ref());
            text.push('\0');
        }
        NameList(text.into())
    }
}

impl std::fmt::Debug for NameList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// `f` applied to each item, in order, into a vector of exactly their number.
///
/// `vec.into_iter().map(f).collect()` reuses the source's buffer when the new
/// items fit in it (an "in-place collect"), and keeps all of it: a list grown
/// by doubling, of items larger than the new ones, would hold its whole
/// buffer for as long as the new list lives. The lists the agent keeps for a
/// whole sync are made with this instead.
pub fn map_exact<T, U>(items: Vec<T>, f: impl FnMut(T) -> U) -> Vec<U> {
    let mut mapped = Vec::with_capacity(items.len());
    mapped.extend(items.into_iter().map(f));
    mapped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_ordered_as_their_texts() {
        // The digest cache is sorted and searched by uid: packed, two uids
        // must keep the order their texts have (lowercase hex, one length).
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut uid = || {
            let (a, b) = (next(), next());
            let hex = format!("{a:016x}{b:016x}");
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        };
        for _ in 0..10_000 {
            let (a, b) = (uid(), uid());
            let a_prefix_of_b = format!("{}{}", &a[..20], &b[20..]);
            for (x, y) in [(&a, &b), (&a, &a_prefix_of_b), (&b, &b)] {
                assert_eq!(
                    CompactText::new(x).cmp(&CompactText::new(y)),
                    x.cmp(y),
                    "{x} {y}"
                );
            }
        }
    }

    #[test]
    fn compact_keys_are_equal_only_for_equal_texts() {
        let uid = "0b8c3a4e-1f2d-4c5b-9a6e-7d8f9e0a1b2c";
        assert!(matches!(CompactText::new(uid), CompactText::Uuid(_)));
        assert!(matches!(
            CompactText::new("123456"),
            CompactText::Number(123456)
        ));
        let texts = [
            uid,
            "0B8C3A4E-1F2D-4C5B-9A6E-7D8F9E0A1B2C", // not Kubernetes' form: kept as text
            "0b8c3a4e-1f2d-4c5b-9a6e-7d8f9e0a1b2d",
            "0b8c3a4e1f2d4c5b9a6e7d8f9e0a1b2c",
            "0b8c3a4e-1f2d-4c5b-9a6e-7d8f9e0a1b2g",
            "123456",
            "0123456", // a leading zero: another text than 123456
            "0",
            "",
            "18446744073709551616", // above u64
            "s-1",
        ];
        for (i, a) in texts.iter().enumerate() {
            for (j, b) in texts.iter().enumerate() {
                assert_eq!(
                    CompactText::new(a) == CompactText::new(b),
                    i == j,
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn names_come_back_in_order_empty_ones_included() {
        let names: NameList = ["shop-b", "", "shop-b-params"].into_iter().collect();
        assert_eq!(
            names.iter().collect::<Vec<_>>(),
            ["shop-b", "", "shop-b-params"]
        );
        let none: NameList = Vec::<String>::new().into_iter().collect();
        assert!(none.is_empty());
        assert_eq!(none.iter().count(), 0);
        assert_eq!(format!("{names:?}"), r#"["shop-b", "", "shop-b-params"]"#);
    }

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
