//! The head-regression guard: a leader-mode node remembers the highest
//! committed block it has seen (number and hash) and refuses to go on when
//! the shared database later holds less, or something else, at that height.
//!
//! Why: PostgreSQL can take back a commit it acknowledged (a failover to an
//! asynchronous replica, a restore from an older backup, a server that does
//! not wait for its WAL). The block was served and executed by members all
//! the same. A node that kept leading on the shorter chain would commit a
//! different block at that height: a fork that no member could follow. So a
//! node that sees the database go back stops leading and serving, says why
//! on `/health`, and stays so until an operator acts (docs/OPERATIONS.md,
//! "The database went back").
//!
//! A member does not use this guard for its own database: its rows are
//! written without waiting for the flush on purpose, a crash may take the
//! last ones back, and its resume rules store them again from the sync API.
//! What protects a member from a source that went back is the link check:
//! it never accepts a block that does not extend the block it stored.

use std::time::Instant;

use crate::codec::Hash32;
use crate::store::ChainHead;

/// Whether the database's head is consistent with the highest committed
/// block this node has seen. `hash_at_seen` is the database's hash at the
/// seen block's height, when the caller looked it up (only needed when the
/// database's head is above what was seen); `None` when not looked up.
pub fn check_database_head(
    seen: Option<ChainHead>,
    database: ChainHead,
    hash_at_seen: Option<Option<Hash32>>,
) -> Result<(), String> {
    let Some(seen) = seen else {
        return Ok(());
    };
    if database.number < seen.number {
        return Err(format!(
            "the database's head went back to block {} ({}) after this node saw block {} ({}) committed",
            database.number, database.hash, seen.number, seen.hash
        ));
    }
    if database.number == seen.number && database.hash != seen.hash {
        return Err(format!(
            "the database holds {} at block {} where this node saw {} committed",
            database.hash, seen.number, seen.hash
        ));
    }
    match hash_at_seen {
        Some(found) if database.number > seen.number && found != Some(seen.hash) => Err(format!(
            "the database holds {} at block {} where this node saw {} committed",
            found.map(|h| h.to_hex()).unwrap_or_else(|| "nothing".into()),
            seen.number,
            seen.hash
        )),
        _ => Ok(()),
    }
}

/// The highest committed head seen, and the regression once found (sticky:
/// only a restart, after an operator's decision, clears it).
#[derive(Debug, Default, Clone)]
pub struct HighWater {
    seen: Option<ChainHead>,
    /// When `seen` was raised. A read of the database that started before
    /// this may miss the block without anything being lost (the producer's
    /// commit returned while another thread's read was in flight), so only
    /// reads started after it are compared.
    seen_at: Option<Instant>,
    regression: Option<String>,
}

impl HighWater {
    /// The highest committed head seen so far.
    pub fn seen(&self) -> Option<ChainHead> {
        self.seen
    }

    /// Why this node stopped, once the database went back.
    pub fn regression(&self) -> Option<&str> {
        self.regression.as_deref()
    }

    /// Records the database's head read by a query that started at
    /// `read_started` (and, when the caller looked it up, its hash at the
    /// seen height). Returns the regression the first time one is found;
    /// later calls keep the first reason. A read older than the high-water
    /// mark proves nothing and is ignored.
    pub fn observe(
        &mut self,
        database: ChainHead,
        hash_at_seen: Option<Option<Hash32>>,
        read_started: Instant,
    ) -> Option<String> {
        if self.regression.is_some() || self.seen_at.is_some_and(|seen_at| read_started < seen_at) {
            return None;
        }
        match check_database_head(self.seen, database, hash_at_seen) {
            Ok(()) => {
                if self.seen.is_none_or(|seen| database.number > seen.number) {
                    self.raise(database);
                }
                None
            }
            Err(reason) => {
                self.regression = Some(reason.clone());
                Some(reason)
            }
        }
    }

    /// A block this node committed itself: it is the new highest.
    pub fn committed(&mut self, head: ChainHead) {
        if self.seen.is_none_or(|seen| head.number > seen.number) {
            self.raise(head);
        }
    }

    fn raise(&mut self, head: ChainHead) {
        self.seen = Some(head);
        self.seen_at = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(number: u64, tag: u8) -> ChainHead {
        ChainHead { number, hash: Hash32([tag; 32]) }
    }

    #[test]
    fn the_database_may_only_move_forward_along_what_was_seen() {
        let seen = Some(head(10, 1));
        let other = Some(Hash32([9; 32]));
        // (case, seen, database head, hash looked up at the seen height, ok?)
        let table = [
            ("nothing seen yet", None, head(3, 2), None, true),
            ("same head", seen, head(10, 1), None, true),
            ("moved on, not looked up", seen, head(12, 3), None, true),
            ("moved on, seen block still there", seen, head(12, 3), Some(Some(Hash32([1; 32]))), true),
            ("went back", seen, head(9, 1), None, false),
            ("went back to genesis", seen, head(0, 7), None, false),
            ("another block at the seen height", seen, head(10, 2), None, false),
            ("moved on past another block", seen, head(12, 3), Some(other), false),
            ("moved on, seen height missing", seen, head(12, 3), Some(None), false),
        ];
        for (case, seen, database, looked_up, ok) in table {
            assert_eq!(check_database_head(seen, database, looked_up).is_ok(), ok, "{case}");
        }
    }

    #[test]
    fn a_regression_is_sticky_and_keeps_its_first_reason() {
        let mut water = HighWater::default();
        assert_eq!(water.observe(head(5, 1), None, Instant::now()), None);
        let before_commit = Instant::now();
        water.committed(head(6, 2));
        assert_eq!(water.seen(), Some(head(6, 2)));
        // A read that was in flight while block 6's commit returned may
        // still see block 5: nothing was lost.
        assert_eq!(water.observe(head(5, 1), None, before_commit), None, "a stale read is ignored");
        let reason = water.observe(head(5, 1), None, Instant::now()).expect("a regression");
        assert!(reason.contains("went back to block 5"), "{reason}");
        assert_eq!(water.observe(head(7, 3), None, Instant::now()), None, "reported once");
        assert_eq!(water.regression(), Some(reason.as_str()));
        assert_eq!(water.seen(), Some(head(6, 2)), "the high water does not move after a regression");
    }
}
