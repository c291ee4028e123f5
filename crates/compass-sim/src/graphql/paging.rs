//! Offset paging with the Director's cursors: base64 of a fixed prefix and the
//! next offset; `startCursor` echoes `after`, `endCursor` points past the page.

use std::ops::Range;

use base64::Engine as _;

/// The Director's default `first`.
pub const DEFAULT_PAGE_SIZE: i32 = 200;

const CURSOR_PREFIX: &str = "DpKtJ4j9jDq";

pub fn encode_cursor(offset: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{CURSOR_PREFIX}{offset}"))
}

pub fn decode_cursor(cursor: &str) -> Result<usize, String> {
    if cursor.is_empty() {
        return Ok(0);
    }
    let bad = || format!("cursor is not correct: {cursor:?}");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    text.strip_prefix(CURSOR_PREFIX)
        .ok_or_else(bad)?
        .parse::<usize>()
        .map_err(|_| bad())
}

/// One page over a list of `total` items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSlice {
    pub range: Range<usize>,
    pub start_cursor: String,
    pub end_cursor: String,
    pub has_next_page: bool,
    pub total: usize,
}

pub fn page_slice(
    total: usize,
    first: Option<i32>,
    after: Option<&str>,
) -> Result<PageSlice, String> {
    let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
    if first <= 0 {
        return Err(format!("page size must be positive, got first: {first}"));
    }
    let after = after.unwrap_or("");
    let offset = decode_cursor(after)?;
    let start = offset.min(total);
    let end = offset.saturating_add(first as usize).min(total);
    Ok(PageSlice {
        range: start..end,
        start_cursor: after.to_string(),
        end_cursor: encode_cursor(offset.saturating_add(first as usize)),
        has_next_page: end < total,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_cursor(&encode_cursor(400)), Ok(400));
        assert_eq!(decode_cursor(""), Ok(0));
        assert!(decode_cursor("not base64!").is_err());
        let wrong_prefix = base64::engine::general_purpose::STANDARD.encode("12");
        assert!(decode_cursor(&wrong_prefix).is_err());
    }

    #[test]
    fn following_end_cursors_visits_every_item_once() {
        let total = 450;
        let mut after: Option<String> = None;
        let mut seen = Vec::new();
        loop {
            let page = page_slice(total, Some(200), after.as_deref()).unwrap();
            assert!(page.range.len() <= 200);
            seen.extend(page.range.clone());
            if !page.has_next_page {
                break;
            }
            after = Some(page.end_cursor);
        }
        assert_eq!(seen, (0..450).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_page_has_an_empty_start_cursor_and_the_default_size() {
        let page = page_slice(250, None, None).unwrap();
        assert_eq!(page.range, 0..200);
        assert_eq!(page.start_cursor, "");
        assert!(page.has_next_page);
        let empty = page_slice(0, None, None).unwrap();
        assert_eq!(empty.range, 0..0);
        assert!(!empty.has_next_page);
    }

    #[test]
    fn a_non_positive_page_size_is_refused() {
        assert!(page_slice(10, Some(0), None).is_err());
        assert!(page_slice(10, Some(-1), None).is_err());
    }
}
