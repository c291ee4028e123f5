//! Short lists of names in one allocation: an Application's Secrets, kept
//! for every Application of the cluster between syncs and for every settled
//! Director application during one. At 10,000 applications a `Vec<String>`
//! of four names took about 350 bytes each; this takes the names' length
//! plus four bytes and 16 for the box.

/// Names, each ended by a NUL (which no Kubernetes name holds).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NameList(Box<str>);

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
        NameList(text.into_boxed_str())
    }
}

impl std::fmt::Debug for NameList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
