//! Offset paging as the Director pages: `first` in 1..200 (200 when not
//! given, as a variable without a value too), cursors that are
//! base64 of a fixed prefix and the next offset, `startCursor` echoing `after`
//! (`""` on the first page), `endCursor` pointing past the page and `""` on
//! the last one.

use std::ops::Range;

use base64::Engine as _;

use super::errors;

/// The Director's default `first`.
pub const DEFAULT_PAGE_SIZE: i32 = 200;

/// The largest `first` the Director serves.
pub const MAX_PAGE_SIZE: i32 = 200;

const CURSOR_PREFIX: &str = "DpKtJ4j9jDq";

/// Why a page cannot be served; each is the Director's error of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    /// `first` outside 1..200: `InvalidData`.
    SizeOutOfRange(i32),
    /// A cursor that is not base64 of a number: `InternalError`.
    ForeignCursor(String),
    /// A cursor of a negative offset: `InvalidData`.
    NegativeOffset,
}

impl PageError {
    pub fn into_graphql(self) -> async_graphql::Error {
        match self {
            PageError::SizeOutOfRange(_) => {
                errors::invalid_data(format!("page size must be between 1 and {MAX_PAGE_SIZE}"))
            }
            PageError::ForeignCursor(why) => errors::internal(format!(
                "while decoding page cursor: cursor is not correct: {why}"
            )),
            PageError::NegativeOffset => errors::invalid_data("cursor is not correct"),
        }
    }
}

pub fn encode_cursor(offset: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{CURSOR_PREFIX}{offset}"))
}

/// The offset a cursor stands for. As the Director reads it: base64, the
/// prefix removed when it is there, the rest a (signed) decimal number.
pub fn decode_cursor(cursor: &str) -> Result<usize, PageError> {
    if cursor.is_empty() {
        return Ok(0);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(cursor)
        .map_err(|e| PageError::ForeignCursor(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw);
    let number = text.strip_prefix(CURSOR_PREFIX).unwrap_or(&text);
    let offset = number
        .parse::<i64>()
        .map_err(|_| PageError::ForeignCursor(format!("{number:?} is not a number")))?;
    usize::try_from(offset).map_err(|_| PageError::NegativeOffset)
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
) -> Result<PageSlice, PageError> {
    let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&first) {
        return Err(PageError::SizeOutOfRange(first));
    }
    let after = after.unwrap_or("");
    let offset = decode_cursor(after)?;
    let start = offset.min(total);
    let end = offset.saturating_add(first as usize).min(total);
    let has_next_page = total > offset.saturating_add(end - start);
    Ok(PageSlice {
        range: start..end,
        start_cursor: after.to_string(),
        end_cursor: if has_next_page {
            encode_cursor(offset.saturating_add(first as usize))
        } else {
            String::new()
        },
        has_next_page,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn cursors_round_trip_and_are_opaque_base64() {
        assert_eq!(decode_cursor(&encode_cursor(400)), Ok(400));
        assert_eq!(decode_cursor(""), Ok(0));
        let cursor = encode_cursor(200);
        assert!(!cursor.contains("200"), "opaque: {cursor}");
        assert!(base64::engine::general_purpose::STANDARD
            .decode(&cursor)
            .is_ok());
    }

    #[test]
    fn a_cursor_the_director_did_not_issue_is_refused_as_it_refuses_it() {
        for foreign in [
            "not base64!",
            &b64("page-2"),
            &b64(&format!("{CURSOR_PREFIX}x")),
        ] {
            assert!(
                matches!(decode_cursor(foreign), Err(PageError::ForeignCursor(_))),
                "{foreign}"
            );
        }
        assert_eq!(
            decode_cursor(&b64(&format!("{CURSOR_PREFIX}-1"))),
            Err(PageError::NegativeOffset)
        );
        // The Director reads the number whether the prefix is there or not.
        assert_eq!(decode_cursor(&b64("12")), Ok(12));
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
                assert_eq!(page.end_cursor, "", "the last page has no end cursor");
                break;
            }
            after = Some(page.end_cursor);
        }
        assert_eq!(seen, (0..450).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_page_has_an_empty_start_cursor() {
        let page = page_slice(250, Some(DEFAULT_PAGE_SIZE), None).unwrap();
        assert_eq!(page.range, 0..200);
        assert_eq!(page.start_cursor, "");
        assert!(page.has_next_page);
        let empty = page_slice(0, Some(DEFAULT_PAGE_SIZE), None).unwrap();
        assert_eq!(empty.range, 0..0);
        assert!(!empty.has_next_page);
        assert_eq!(empty.end_cursor, "");
    }

    #[test]
    fn the_page_size_must_be_1_to_200() {
        for first in [0, -1, 201, i32::MAX] {
            assert_eq!(
                page_slice(10, Some(first), None),
                Err(PageError::SizeOutOfRange(first))
            );
        }
        assert_eq!(page_slice(300, None, None).unwrap().range, 0..200);
        assert!(page_slice(10, Some(1), None).is_ok());
        assert!(page_slice(10, Some(200), None).is_ok());
    }

    #[test]
    fn a_cursor_past_the_end_is_an_empty_last_page() {
        let page = page_slice(5, Some(2), Some(&encode_cursor(9))).unwrap();
        assert!(page.range.is_empty());
        assert!(!page.has_next_page);
    }
}
