//! Following a Director list page by page (`compass::paging::PageTracker`):
//! what tells a list that came whole (and may decide deletions) from one
//! that did not.
//!
//! Input: bytes, decoded with `arbitrary::Unstructured` into up to 32 pages,
//! each with a list length (mostly small, sometimes huge, sometimes `null`),
//! a `totalCount` (mostly small, sometimes any `i64`, sometimes missing) and a
//! `pageInfo` (`hasNextPage`, an `endCursor` from a small pool, empty, any
//! text, or missing). A server that answers with these pages in turn, over
//! and over, is followed the way `compass::director` follows it: the next
//! page only while the tracker says `Next::After`.
//!
//! Properties: no panic; the paging stops, after at most one page more than
//! there are distinct non-empty cursors (a repeated cursor stops it); every
//! `Next::After` hands out the page's own non-empty cursor, never one twice;
//! `finish()` is `Ok` exactly when no list was `null`, every page had the
//! same `totalCount`, the last page said `hasNextPage: false`, and the items
//! received add up to the `totalCount` (so any `null` list, repeated or
//! missing cursor, or count mismatch is an `Err`). A tracker fed every page
//! whatever it answers does not panic either, never hands out a cursor twice,
//! and never calls a list with a `null` page or a missing count whole.
#![no_main]

use std::collections::BTreeSet;

use compass_runtime_agent::compass::paging::{Next, PageInfo, PageTracker};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// `n` times in `d`; never once the input is used up (where
/// `Unstructured::ratio` would always say yes).
fn chance(u: &mut Unstructured, n: u8, d: u8) -> Result<bool> {
    Ok(u.int_in_range(1..=d)? > d - n)
}

const CURSORS: &[&str] = &["", "c1", "c2", "c3", "c4", "YWZ0ZXI6MjAw"];

#[derive(Debug)]
struct Page {
    list_len: Option<usize>,
    total: Option<i64>,
    info: PageInfo,
}

fn page(u: &mut Unstructured) -> Result<Page> {
    let list_len = match u.int_in_range(0..=9)? {
        0 => None,
        1 => Some(u.arbitrary()?),
        _ => Some(u.int_in_range(0..=5)?),
    };
    let total = match u.int_in_range(0..=9)? {
        0 => None,
        1 => Some(u.arbitrary()?),
        _ => Some(u.int_in_range(-1..=12)?),
    };
    let end_cursor = match u.int_in_range(0..=9)? {
        0 => None,
        1 => {
            let len = u.int_in_range(0..=8)?.min(u.len());
            Some(String::from_utf8_lossy(u.bytes(len)?).into_owned())
        }
        _ => Some(u.choose(CURSORS)?.to_string()),
    };
    Ok(Page {
        list_len,
        total,
        info: PageInfo {
            end_cursor,
            has_next_page: chance(u, 3, 4)?,
        },
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut pages = Vec::new();
    let count = u.int_in_range(0..=32).unwrap_or(0);
    for _ in 0..count {
        match page(&mut u) {
            Ok(page) => pages.push(page),
            Err(_) => break,
        }
    }
    follow(&pages);
    feed_all(&pages);
});

/// As `compass::director` does: the next page only on `Next::After`.
fn follow(pages: &[Page]) {
    let mut tracker = PageTracker::default();
    if pages.is_empty() {
        assert_eq!(tracker.finish(), Ok(()), "no page asked, nothing missing");
        return;
    }
    let cursors: BTreeSet<&str> = pages
        .iter()
        .filter_map(|page| page.info.end_cursor.as_deref())
        .filter(|cursor| !cursor.is_empty())
        .collect();
    let bound = cursors.len() + 1;
    let mut handed_out = BTreeSet::new();
    let mut fed: Vec<&Page> = Vec::new();
    loop {
        assert!(
            fed.len() < bound,
            "still paging after {} pages with {} distinct cursors: {pages:#?}",
            fed.len(),
            cursors.len()
        );
        let page = &pages[fed.len() % pages.len()];
        fed.push(page);
        match tracker.page(page.list_len, page.total, &page.info) {
            Next::After(cursor) => {
                assert!(page.info.has_next_page);
                assert_eq!(page.info.end_cursor.as_deref(), Some(cursor.as_str()));
                assert!(!cursor.is_empty());
                assert!(
                    handed_out.insert(cursor.clone()),
                    "{cursor:?} handed out twice: {pages:#?}"
                );
            }
            Next::Done => break,
        }
    }

    let no_null = fed.iter().all(|page| page.list_len.is_some());
    let first_total = fed[0].total;
    let same_total = first_total.is_some() && fed.iter().all(|page| page.total == first_total);
    let last_page = !fed.last().unwrap().info.has_next_page;
    let received: u128 = fed
        .iter()
        .filter_map(|page| page.list_len)
        .map(|len| len as u128)
        .sum();
    let adds_up = first_total.is_some_and(|total| i128::try_from(received) == Ok(total.into()));
    let whole = no_null && same_total && last_page && adds_up;
    let result = tracker.finish();
    assert_eq!(
        result.is_ok(),
        whole,
        "{result:?} for (null lists: {}, same totalCount: {same_total}, last page: {last_page}, \
         {received} received): {fed:#?}",
        !no_null
    );
    if let Err(problem) = result {
        assert!(!problem.is_empty());
    }
}

/// A caller that goes on whatever the tracker answers: no panic, no cursor
/// handed out twice, and a `null` list or a missing count is never whole.
fn feed_all(pages: &[Page]) {
    let mut tracker = PageTracker::default();
    let mut handed_out = BTreeSet::new();
    for page in pages {
        if let Next::After(cursor) = tracker.page(page.list_len, page.total, &page.info) {
            assert!(handed_out.insert(cursor), "{pages:#?}");
        }
    }
    let spoiled = pages
        .iter()
        .any(|page| page.list_len.is_none() || page.total.is_none());
    let result = tracker.finish();
    if spoiled {
        assert!(result.is_err(), "{pages:#?}");
    }
}
