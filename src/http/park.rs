//! Parked long polls: a poll waiting for the head to move costs an entry
//! here and its connection, not a thread. When the head moves the gate
//! takes every poll it passed and answers them together, each page
//! rendered once (`Renderings`) and the same bytes written to every
//! waiter.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tiny_http::HTTPVersion;

use super::{Incoming, Reply};
use crate::page_key::PageKey;

/// A long poll that must wait: for `page`, answered when the head passes
/// `page.after` or at `deadline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Park {
    pub page: PageKey,
    pub deadline: Instant,
}

/// Where a request goes, as the server's [`LongPolls`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollRoute {
    /// To a handler (anything not a page request, any refusal).
    Handler,
    /// A long poll that must wait: parked in the gate.
    Park(Park),
    /// A page whose blocks have already come (a subscriber a block or more
    /// behind): answered now from the same renderings as parked polls if
    /// they are in memory, else by a handler.
    Now(PageKey),
}

/// What a server tells the gate about its long polls (the API: `api.rs`).
/// Every method runs on the gate's thread: none may block, wait or touch
/// the database.
pub trait LongPolls: Send + Sync {
    /// Where `request` goes. It makes the server's precheck
    /// ([`super::precheck`]) first: a request it refuses goes to the
    /// handler, which answers the refusal.
    fn route(&self, request: &Incoming<'_>) -> PollRoute;
    /// The head that parked polls wait to pass.
    fn head(&self) -> u64;
    /// The answer, now, to a poll for `page` (the head moved past its
    /// `after`, or its wait ended: then an empty page with the head).
    /// `None`: the handler answers it instead (e.g. the blocks are no
    /// longer in memory).
    fn answer(&self, page: PageKey) -> Option<Reply>;
    /// Calls `wake` (cheap, never blocking) whenever the head moves.
    fn on_head_moved(&self, wake: Box<dyn Fn() + Send + Sync>);
}

/// Parked polls by the block they wait to see passed. Entries of polls
/// answered another way (their wait ended, the client left) stay until the
/// head passes them or a compaction drops them.
#[derive(Default)]
pub(crate) struct ParkedPolls {
    by_after: BTreeMap<u64, Vec<(usize, u64)>>,
    live: usize,
    entries: usize,
}

impl ParkedPolls {
    pub fn live(&self) -> usize {
        self.live
    }

    pub fn park(&mut self, after: u64, index: usize, id: u64) {
        self.by_after.entry(after).or_default().push((index, id));
        self.live += 1;
        self.entries += 1;
    }

    /// A parked poll left (answered, refused or closed).
    pub fn left(&mut self) {
        self.live = self.live.saturating_sub(1);
    }

    /// Every entry waiting for a block at or below `head`.
    pub fn take_below(&mut self, head: u64) -> BTreeMap<u64, Vec<(usize, u64)>> {
        let rest = self.by_after.split_off(&head);
        let ready = std::mem::replace(&mut self.by_after, rest);
        self.entries -= ready.values().map(Vec::len).sum::<usize>();
        ready
    }

    /// Drops stale entries once they outnumber the live ones (bounds the
    /// map when polls time out while the head stands still).
    pub fn compact_if_stale(&mut self, is_live: impl Fn(u64, usize, u64) -> bool) {
        if self.entries <= 2 * self.live + 1024 {
            return;
        }
        for (after, entries) in &mut self.by_after {
            entries.retain(|&(index, id)| is_live(*after, index, id));
        }
        self.by_after.retain(|_, entries| !entries.is_empty());
        self.entries = self.by_after.values().map(Vec::len).sum();
    }
}

/// An answer's head and body, as written.
pub(crate) type AnswerParts = [Arc<[u8]>; 2];

/// The renderings made at one head: each page rendered once, each answer
/// head once per HTTP version. The gate drops them when the head moves
/// (bounded: at most [`MAX_RENDERINGS`] kept, then started afresh).
#[derive(Default)]
pub(crate) struct Renderings {
    head: u64,
    pages: HashMap<PageKey, Option<Reply>>,
    answers: HashMap<(PageKey, bool, bool), AnswerParts>,
}

/// Pages kept per head by `Renderings`.
pub const MAX_RENDERINGS: usize = 256;

impl Renderings {
    /// Forgets everything rendered at another head than `head`.
    pub fn at_head(&mut self, head: u64) {
        if head != self.head || self.pages.len() >= MAX_RENDERINGS {
            self.head = head;
            self.pages.clear();
            self.answers.clear();
        }
    }

    /// The bytes to write (head, body) to a poll for `page`, or `None`
    /// when the handler must answer it.
    pub fn answer(
        &mut self,
        polls: &dyn LongPolls,
        page: PageKey,
        http_1_0: bool,
        head_only: bool,
    ) -> Option<AnswerParts> {
        if let Some(parts) = self.answers.get(&(page, http_1_0, head_only)) {
            return Some(parts.clone());
        }
        let reply = self.pages.entry(page).or_insert_with(|| polls.answer(page)).as_ref()?;
        let version = if http_1_0 { HTTPVersion(1, 0) } else { HTTPVersion(1, 1) };
        let head = super::gate::render_head(reply, version, head_only);
        let body = if head_only { Arc::from(Vec::new()) } else { Arc::clone(&reply.body) };
        let parts = [head, body];
        self.answers.insert((page, http_1_0, head_only), parts.clone());
        Some(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn polls_are_taken_once_the_head_passes_them_and_stale_entries_are_bounded() {
        let mut parked = ParkedPolls::default();
        parked.park(5, 0, 1);
        parked.park(5, 1, 2);
        parked.park(7, 2, 3);
        assert_eq!(parked.live(), 3);
        let ready = parked.take_below(6);
        assert_eq!(ready.keys().copied().collect::<Vec<_>>(), vec![5], "head 6 passes after=5 only");
        assert_eq!(ready[&5], vec![(0, 1), (1, 2)]);
        parked.left();
        parked.left();
        assert!(parked.take_below(7).is_empty(), "after=7 waits for block 8");
        // Polls that time out and come back while the head stands still.
        for id in 10..3000 {
            parked.park(7, 2, id);
            parked.left();
        }
        parked.compact_if_stale(|_, _, id| id == 3);
        assert_eq!(parked.entries, 1);
        assert_eq!(parked.take_below(8)[&7], vec![(2, 3)]);
    }

    struct Counting {
        rendered: AtomicUsize,
    }

    impl LongPolls for Counting {
        fn route(&self, _: &Incoming<'_>) -> PollRoute {
            PollRoute::Handler
        }
        fn head(&self) -> u64 {
            9
        }
        fn answer(&self, page: PageKey) -> Option<Reply> {
            let after = page.after;
            self.rendered.fetch_add(1, Ordering::SeqCst);
            (after < 100).then(|| Reply::json_bytes(200, Arc::from(format!("{{\"after\":{after}}}").into_bytes())))
        }
        fn on_head_moved(&self, _: Box<dyn Fn() + Send + Sync>) {}
    }

    fn page(after: u64, limit: u32) -> PageKey {
        PageKey { after, limit, max_bytes: 1 << 20, format: crate::page_key::PageFormat::Json }
    }

    #[test]
    fn each_page_is_rendered_once_and_shared() {
        let polls = Counting { rendered: AtomicUsize::new(0) };
        let mut renderings = Renderings::default();
        let v11 = false;
        let first = renderings.answer(&polls, page(8, 100), v11, false).unwrap();
        let second = renderings.answer(&polls, page(8, 100), v11, false).unwrap();
        assert!(Arc::ptr_eq(&first[1], &second[1]) && Arc::ptr_eq(&first[0], &second[0]), "the same bytes");
        let old = renderings.answer(&polls, page(8, 100), true, false).unwrap();
        assert!(Arc::ptr_eq(&first[1], &old[1]) && old[0].starts_with(b"HTTP/1.0 200 OK\r\n"));
        let head_only = renderings.answer(&polls, page(8, 100), v11, true).unwrap();
        assert!(head_only[1].is_empty());
        assert_eq!(polls.rendered.load(Ordering::SeqCst), 1, "one rendering for every waiter of the page");
        assert!(renderings.answer(&polls, page(100, 1), v11, false).is_none(), "the handler answers");
        assert!(renderings.answer(&polls, page(100, 1), v11, false).is_none());
        assert_eq!(polls.rendered.load(Ordering::SeqCst), 2, "a miss is asked once too");
        let text = String::from_utf8_lossy(&first[0]);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("Content-Length: 11\r\n"), "{text}");
    }
}
