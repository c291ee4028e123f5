//! Following one Director list page by page, and telling whether what came
//! is the whole list. Director cursors are offsets: an application removed
//! from page 1 while page 2 is asked for shifts page 2 by one, and one
//! application is missed. A list that is not whole must not decide a
//! deletion, so each list is checked: every page names the same
//! `totalCount`, the items received add up to it, no page's list is `null`,
//! no cursor comes twice. Pure, so it can be unit-tested and fuzzed.

use std::collections::HashSet;

use serde::Deserialize;

/// A page's `pageInfo`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    #[serde(default)]
    pub end_cursor: Option<String>,
    #[serde(default)]
    pub has_next_page: bool,
}

/// What to do after a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Ask for the page after this cursor.
    After(String),
    /// That was the last page (or paging cannot go on: see [`PageTracker::finish`]).
    Done,
}

/// One list's pages as they come.
#[derive(Debug, Default)]
pub struct PageTracker {
    seen_cursors: HashSet<String>,
    received: u64,
    total: Option<i64>,
    problem: Option<String>,
}

impl PageTracker {
    /// Takes one page: the length of its list (`None` when the list is
    /// `null` or missing), its `totalCount` and its `pageInfo`.
    pub fn page(&mut self, list_len: Option<usize>, total: Option<i64>, info: &PageInfo) -> Next {
        match list_len {
            Some(len) => self.received = self.received.saturating_add(len as u64),
            None => self.note("a page's list is null"),
        }
        match (self.total, total) {
            (_, None) => self.note("a page has no totalCount"),
            (None, Some(total)) => self.total = Some(total),
            (Some(first), Some(total)) if first != total => self.note(&format!(
                "the totalCount changed from {first} to {total} between pages"
            )),
            _ => {}
        }
        if !info.has_next_page {
            return Next::Done;
        }
        match info.end_cursor.as_deref() {
            Some(cursor) if !cursor.is_empty() && self.seen_cursors.insert(cursor.to_string()) => {
                Next::After(cursor.to_string())
            }
            Some(cursor) if !cursor.is_empty() => {
                self.note(&format!("the cursor {cursor:?} came twice"));
                Next::Done
            }
            _ => {
                self.note("hasNextPage is true but there is no cursor");
                Next::Done
            }
        }
    }

    /// Whether the list came whole; else what was wrong with it.
    pub fn finish(mut self) -> Result<(), String> {
        if let Some(total) = self.total {
            if i64::try_from(self.received).ok() != Some(total) {
                let received = self.received;
                self.note(&format!("{received} items came of a totalCount of {total}"));
            }
        }
        match self.problem {
            None => Ok(()),
            Some(problem) => Err(problem),
        }
    }

    fn note(&mut self, problem: &str) {
        // The first problem says the most; later ones often follow from it.
        if self.problem.is_none() {
            self.problem = Some(problem.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(next: bool, cursor: Option<&str>) -> PageInfo {
        PageInfo {
            end_cursor: cursor.map(String::from),
            has_next_page: next,
        }
    }

    #[test]
    fn whole_pages_adding_up_to_the_total_are_the_whole_list() {
        let mut tracker = PageTracker::default();
        assert_eq!(
            tracker.page(Some(2), Some(3), &info(true, Some("c1"))),
            Next::After("c1".into())
        );
        assert_eq!(
            tracker.page(Some(1), Some(3), &info(false, Some("c2"))),
            Next::Done
        );
        assert_eq!(tracker.finish(), Ok(()));
        let empty = PageTracker::default();
        assert_eq!(empty.finish(), Ok(()), "no page asked, nothing missing");
    }

    #[test]
    fn an_item_that_moved_out_of_reach_is_noticed_by_the_count() {
        // Page 1 had a, b; then a was removed, so page 2 (offset 2) holds d
        // only and c is never seen.
        let mut tracker = PageTracker::default();
        tracker.page(Some(2), Some(4), &info(true, Some("c1")));
        tracker.page(Some(1), Some(3), &info(false, None));
        let problem = tracker.finish().unwrap_err();
        assert!(
            problem.contains("totalCount changed from 4 to 3"),
            "{problem}"
        );
        let mut tracker = PageTracker::default();
        tracker.page(Some(2), Some(4), &info(true, Some("c1")));
        tracker.page(Some(1), Some(4), &info(false, None));
        assert!(tracker
            .finish()
            .unwrap_err()
            .contains("3 items came of a totalCount of 4"));
    }

    #[test]
    fn a_null_list_is_not_an_empty_one() {
        let mut tracker = PageTracker::default();
        tracker.page(None, Some(0), &info(false, None));
        assert!(tracker.finish().unwrap_err().contains("null"));
        let mut tracker = PageTracker::default();
        tracker.page(Some(0), None, &info(false, None));
        assert!(tracker.finish().unwrap_err().contains("no totalCount"));
    }

    #[test]
    fn a_cursor_that_comes_back_stops_the_paging_and_spoils_the_list() {
        let mut tracker = PageTracker::default();
        assert_eq!(
            tracker.page(Some(1), Some(9), &info(true, Some("A"))),
            Next::After("A".into())
        );
        assert_eq!(
            tracker.page(Some(1), Some(9), &info(true, Some("B"))),
            Next::After("B".into())
        );
        assert_eq!(
            tracker.page(Some(1), Some(9), &info(true, Some("A"))),
            Next::Done
        );
        assert!(tracker.finish().unwrap_err().contains("\"A\" came twice"));
        let mut tracker = PageTracker::default();
        assert_eq!(
            tracker.page(Some(1), Some(2), &info(true, Some(""))),
            Next::Done
        );
        assert!(tracker.finish().unwrap_err().contains("no cursor"));
    }
}
