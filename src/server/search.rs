//! The `search` request (docs/PROTOCOL.md, "Search"), and the checks of a
//! query that the host's search shares.

use std::sync::Arc;

use super::core::Core;
use super::msg_frames::msg_list;
use super::requests::{Refusal, SessionState, bad, limit_of, member_conv, read_then_answer, reply, reply_budget};
use crate::protocol::{ClientFrame, ServerFrame};
use crate::router::SessionHandle;
use crate::store::words::words;
use crate::store::{SearchPage, SearchScope};

/// Default and largest `limit` of `search`.
pub(crate) const SEARCH_LIMIT: (u64, u64) = (20, 100);

/// The longest query, in bytes, and the most words in it.
const MAX_QUERY_BYTES: usize = 256;
const MAX_QUERY_WORDS: usize = 16;

/// The longest `after` cursor a search takes back.
const MAX_CURSOR_BYTES: usize = 256;

/// The terms of `query`: its runs between spaces that hold a word, as
/// written; the store folds them as its index folds text, so that every
/// script is cut the same way on both sides. An error message for a query
/// too long, with no word, or with too many.
pub(crate) fn query_terms(query: &str) -> Result<Vec<String>, String> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(format!("query must be at most {MAX_QUERY_BYTES} bytes"));
    }
    match words(query).len() {
        0 => return Err("query has no word (letters or digits)".into()),
        n if n > MAX_QUERY_WORDS => return Err(format!("query has more than {MAX_QUERY_WORDS} words")),
        _ => {}
    }
    let mut terms: Vec<String> = Vec::new();
    for term in query.split_whitespace().filter(|t| !words(t).is_empty()) {
        if !terms.iter().any(|known| known == term) {
            terms.push(term.to_owned());
        }
    }
    Ok(terms)
}

/// A search cursor as given back: at most 256 bytes.
pub(crate) fn cursor(after: Option<&str>) -> Result<Option<String>, String> {
    match after {
        Some(after) if after.len() > MAX_CURSOR_BYTES => Err(format!("after must be at most {MAX_CURSOR_BYTES} bytes")),
        after => Ok(after.map(str::to_owned)),
    }
}

/// The reply to a search: `search` with the page's `msg` frames.
/// A page cut short by the budget continues after its last frame.
pub(crate) fn search_frame(id: Option<&str>, page: &SearchPage, budget: usize) -> String {
    let (results, carried) = msg_list(&page.results, budget);
    let next = page.carried(carried);
    ServerFrame::Search {
        id,
        results: &results,
        more: next.is_some(),
        next,
    }
    .encode()
}

/// Handles `search`.
pub(crate) async fn search(
    core: &Arc<Core>,
    session: &Arc<SessionHandle>,
    state: &SessionState,
    frame: &ClientFrame<'_>,
) -> Result<(), Refusal> {
    let query = frame.query.as_deref().ok_or_else(|| bad("search requires a query"))?;
    let wanted = query_terms(query).map_err(bad)?;
    let limit = limit_of(frame, SEARCH_LIMIT)?;
    let conv = match frame.conv {
        Some(_) => Some(member_conv(core, session, frame)?.to_owned()),
        None => None,
    };
    let after = cursor(frame.after.as_deref()).map_err(bad)?;
    let (user, budget, answering) = (session.user.clone(), reply_budget(core), session.clone());
    let id = frame.id.as_deref().map(str::to_owned);
    read_then_answer(
        core,
        session,
        state,
        frame.id.as_deref(),
        "search",
        move |store| {
            let scope = conv.as_deref().map_or(SearchScope::User(&user), SearchScope::Conv);
            // Frames are larger than the stored bytes the store counts.
            store.search(scope, &wanted, after.as_deref(), limit, budget / 2)
        },
        move |outcome| {
            let frame = outcome.map(|page| search_frame(id.as_deref(), &page, budget));
            reply(&answering, frame.unwrap_or_else(|error| error));
        },
    )
    .await;
    Ok(())
}
