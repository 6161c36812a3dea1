//! The resume rules: how a node brings its execution client (E, its
//! canonical head) and its database (D, the stored head) into step at start
//! and after any failure (ARCHITECTURE.md, "Resume rules"). A pure decision;
//! the standby (`replay::catch_up_from_store`) and the member
//! (`member::syncer`) act on it.
//!
//! - **E = D** (same hash): in step.
//! - **E < D**: the client lost blocks (a wiped data directory, a crash
//!   before its head was flushed). E must be the stored block at its height;
//!   then the stored blocks after E are replayed onto it.
//! - **E > D**: the client executed blocks the database never stored (a
//!   member that crashed between executing and storing). D must be the
//!   client's block at its height; then a member stores E's blocks after D,
//!   each checked against its source. A leader-mode node never makes a block
//!   canonical before it is committed, so for it this case is a divergence.
//! - **Any hash disagrees**: stop; clnode does not guess which chain is
//!   right (docs/OPERATIONS.md says what an operator does).

use crate::codec::Hash32;
use crate::store::ChainHead;

/// What to do to bring the execution client and the database into step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumePlan {
    /// E = D: nothing to do.
    InStep(ChainHead),
    /// E < D: replay the stored blocks after `from` (E) up to `to` (D).
    ReplayStored { from: ChainHead, to: ChainHead },
    /// E > D: the client holds `from` (D) and executed up to `to` (E).
    StoreExecuted { from: ChainHead, to: ChainHead },
    /// A hash disagrees: execute and store nothing.
    Diverged(String),
}

/// Decides the plan from the two heads. Only the lower head is looked up on
/// the other side: `stored_hash_at(n)` is the stored block's hash at height
/// `n` (genesis included), `el_hash_at(n)` the client's canonical block's
/// hash at height `n`; `None` when there is none. Each is called at most
/// once, and only when the heads differ.
pub fn plan_resume<E>(
    el: ChainHead,
    stored: ChainHead,
    stored_hash_at: impl FnOnce(u64) -> Result<Option<Hash32>, E>,
    el_hash_at: impl FnOnce(u64) -> Result<Option<Hash32>, E>,
) -> Result<ResumePlan, E> {
    if el == stored {
        return Ok(ResumePlan::InStep(el));
    }
    if el.number <= stored.number {
        let at_el = stored_hash_at(el.number)?;
        if at_el != Some(el.hash) {
            return Ok(ResumePlan::Diverged(format!(
                "execution client head {} ({}) is not the stored block at that height ({}); refusing to guess",
                el.number,
                el.hash,
                describe(at_el)
            )));
        }
        // Equal heights with equal hashes returned above; so E < D here.
        return Ok(ResumePlan::ReplayStored { from: el, to: stored });
    }
    let at_stored = el_hash_at(stored.number)?;
    if at_stored != Some(stored.hash) {
        return Ok(ResumePlan::Diverged(format!(
            "stored head {} ({}) is not the execution client's block at that height ({}); refusing to guess",
            stored.number,
            stored.hash,
            describe(at_stored)
        )));
    }
    Ok(ResumePlan::StoreExecuted { from: stored, to: el })
}

fn describe(hash: Option<Hash32>) -> String {
    hash.map(|h| h.to_hex()).unwrap_or_else(|| "none".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(number: u64, tag: u8) -> ChainHead {
        ChainHead { number, hash: Hash32([tag; 32]) }
    }

    /// Which plan, without the message of a divergence.
    #[derive(Debug, PartialEq)]
    enum Expect {
        InStep,
        ReplayStored,
        StoreExecuted,
        Diverged,
    }

    /// (case, E, D, stored hash at E's height, client hash at D's height, plan)
    type Row = (&'static str, ChainHead, ChainHead, Option<Hash32>, Option<Hash32>, Expect);

    #[test]
    fn every_case_of_the_resume_rules() {
        let a = Some(Hash32([0xa; 32]));
        let table: [Row; 9] = [
            ("E = D", head(5, 0xa), head(5, 0xa), None, None, Expect::InStep),
            ("E = D at genesis", head(0, 0xa), head(0, 0xa), None, None, Expect::InStep),
            ("E = D, another hash", head(5, 0xa), head(5, 0xb), Some(Hash32([0xb; 32])), None, Expect::Diverged),
            ("E < D, E stored", head(3, 0xa), head(9, 0xb), a, None, Expect::ReplayStored),
            ("E < D at genesis", head(0, 0xa), head(9, 0xb), a, None, Expect::ReplayStored),
            (
                "E < D, E not the stored block",
                head(3, 0xa),
                head(9, 0xb),
                Some(Hash32([0xc; 32])),
                None,
                Expect::Diverged,
            ),
            ("E < D, nothing stored at E", head(3, 0xa), head(9, 0xb), None, None, Expect::Diverged),
            ("E > D, D on the client", head(9, 0xb), head(3, 0xa), None, a, Expect::StoreExecuted),
            (
                "E > D, client holds another D",
                head(9, 0xb),
                head(3, 0xa),
                None,
                Some(Hash32([0xc; 32])),
                Expect::Diverged,
            ),
        ];
        for (case, el, stored, stored_at_el, el_at_stored, expected) in table {
            let mut lookups = Vec::new();
            let plan = plan_resume::<()>(
                el,
                stored,
                |n| {
                    lookups.push(("stored", n));
                    Ok(stored_at_el)
                },
                |n| Ok(el_at_stored.filter(|_| n == stored.number)),
            )
            .unwrap_or_else(|()| panic!("{case}: lookup failed"));
            let got = match &plan {
                ResumePlan::InStep(h) => {
                    assert_eq!(*h, el, "{case}");
                    Expect::InStep
                }
                ResumePlan::ReplayStored { from, to } => {
                    assert_eq!((*from, *to), (el, stored), "{case}");
                    Expect::ReplayStored
                }
                ResumePlan::StoreExecuted { from, to } => {
                    assert_eq!((*from, *to), (stored, el), "{case}");
                    Expect::StoreExecuted
                }
                ResumePlan::Diverged(reason) => {
                    assert!(reason.contains("refusing to guess"), "{case}: {reason}");
                    Expect::Diverged
                }
            };
            assert_eq!(got, expected, "{case}");
            if el.number <= stored.number && el != stored {
                assert_eq!(lookups, [("stored", el.number)], "{case}: looks up E's height in the store");
            }
        }
    }

    #[test]
    fn a_failed_lookup_is_an_error_not_a_plan() {
        let error = plan_resume(head(3, 1), head(9, 2), |_| Err("database down"), |_| Ok(None));
        assert_eq!(error, Err("database down"));
        let error = plan_resume(head(9, 1), head(3, 2), |_| Ok(None), |_| Err("client down"));
        assert_eq!(error, Err("client down"));
        let untouched = plan_resume::<&str>(head(4, 1), head(4, 1), |_| Err("not asked"), |_| Err("not asked"));
        assert_eq!(untouched, Ok(ResumePlan::InStep(head(4, 1))));
    }
}
