//! A page's `pageInfo`, and the slice of a list a page serves.

use async_graphql::{Result, SimpleObject};

use crate::graphql::paging::{page_slice, PageSlice};
use crate::graphql::scalars::PageCursor;

pub(super) fn slice(
    total: usize,
    first: Option<i32>,
    after: Option<PageCursor>,
) -> Result<PageSlice> {
    page_slice(total, first, after.as_ref().map(|c| c.0.as_str())).map_err(|e| e.into_graphql())
}

#[derive(SimpleObject)]
pub struct PageInfo {
    start_cursor: PageCursor,
    end_cursor: PageCursor,
    has_next_page: bool,
}

impl From<&PageSlice> for PageInfo {
    fn from(page: &PageSlice) -> Self {
        PageInfo {
            start_cursor: PageCursor(page.start_cursor.clone()),
            end_cursor: PageCursor(page.end_cursor.clone()),
            has_next_page: page.has_next_page,
        }
    }
}
