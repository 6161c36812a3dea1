//! Where the lease should be: the leader's pure decision "hand over, and to
//! whom", over the readiness records the leader-mode nodes publish
//! (`leader::handover`) and the preference order (`--preferred-leaders`).
//!
//! The lease thread reads the records and acts; every rule lives here so
//! that each case has a row in a table test. Nothing here touches safety:
//! a hand-over is a release plus a designation of who may acquire next;
//! the fence still guards every commit.

use std::time::Duration;

use serde_json::{json, Value};

/// Blocks a candidate's execution client may be behind the leader's
/// committed head and still count as caught up: its record is up to one
/// publish interval old (200 ms by default, a few blocks under load), and
/// the new leader replays what it lacks from PostgreSQL before it builds.
pub const MAX_SUCCESSOR_LAG_BLOCKS: u64 = 32;

/// What one leader-mode node says about itself, every renew interval, in a
/// short-lived Redis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub id: String,
    /// Would take the lease now: its client at the committed head, the
    /// database readable, its clock fit, not cooling down after a
    /// step-down, not paused.
    pub ready: bool,
    /// Paused by an operator: never chosen, never acquires.
    pub paused: bool,
    /// Holds the lease (as of its record).
    pub leading: bool,
    /// Its execution client's head.
    pub el_head: u64,
    /// How long it has been ready without a break (hysteresis).
    pub ready_for_ms: u64,
    /// A digest of its `--preferred-leaders`, so nodes given different
    /// orders do not pass the lease back and forth.
    pub order_digest: String,
}

impl Readiness {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "ready": self.ready, "paused": self.paused, "leading": self.leading,
            "el_head": self.el_head, "ready_for_ms": self.ready_for_ms, "order": self.order_digest,
        })
    }

    /// `None` for a record this version cannot read (treated as absent).
    pub fn from_json(value: &Value) -> Option<Readiness> {
        Some(Readiness {
            id: value["id"].as_str()?.to_owned(),
            ready: value["ready"].as_bool()?,
            paused: value["paused"].as_bool()?,
            leading: value["leading"].as_bool().unwrap_or(false),
            el_head: value["el_head"].as_u64()?,
            ready_for_ms: value["ready_for_ms"].as_u64()?,
            order_digest: value["order"].as_str().unwrap_or_default().to_owned(),
        })
    }
}

/// The preference order, as every leader-mode node was given it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preference {
    pub order: Vec<String>,
}

impl Preference {
    /// 0 is the most preferred; nodes not listed share the last rank.
    pub fn rank(&self, id: &str) -> usize {
        self.order.iter().position(|listed| listed == id).unwrap_or(self.order.len())
    }

    /// Short and stable: the ids joined (they cannot contain a comma).
    pub fn digest(&self) -> String {
        self.order.join(",")
    }
}

/// Why a node may not take the lease from this leader now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ineligible {
    /// No fresh readiness record: not running, not leader mode, or cut off
    /// from Redis.
    Unknown,
    Itself,
    Paused,
    /// Not ready to lead (its client behind or down, its database or clock
    /// unfit, cooling down after a step-down).
    NotReady,
    Behind {
        el_head: u64,
        leader_head: u64,
    },
    /// Ready, but not for long enough yet (automatic moves only).
    Unsettled {
        ready_for_ms: u64,
    },
    /// Given another `--preferred-leaders` (automatic moves only).
    OtherOrder,
}

impl std::fmt::Display for Ineligible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ineligible::Unknown => {
                f.write_str("has no readiness record (not running, not a leader-mode node, or cut off from Redis)")
            }
            Ineligible::Itself => f.write_str("is the leader already"),
            Ineligible::Paused => f.write_str("is paused (clnode admin resume)"),
            Ineligible::NotReady => f.write_str("is not ready to lead (see its /health)"),
            Ineligible::Behind { el_head, leader_head } => {
                write!(f, "is not caught up (its client at block {el_head}, the committed head at {leader_head})")
            }
            Ineligible::Unsettled { ready_for_ms } => write!(f, "has been ready for only {ready_for_ms} ms"),
            Ineligible::OtherOrder => f.write_str("was given a different --preferred-leaders"),
        }
    }
}

/// The rules' tunables: how long a candidate and the leader must have been
/// settled before an automatic move (hysteresis against flapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub settle: Duration,
}

/// What kind of move is being judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// The preference order, on the leader's own initiative: the candidate
    /// must have been ready for `settle` and share the leader's order.
    Automatic,
    /// An operator asked (transfer, step-down, pause): healthy and caught
    /// up is enough.
    Requested,
}

/// Whether `candidate` may take the lease from leader `me`, whose
/// committed head is `leader_head`.
pub fn eligible(
    me: &str,
    candidate: &Readiness,
    leader_head: u64,
    kind: Move,
    rules: Rules,
    order_digest: &str,
) -> Result<(), Ineligible> {
    if candidate.id == me {
        return Err(Ineligible::Itself);
    }
    if candidate.paused {
        return Err(Ineligible::Paused);
    }
    if !candidate.ready {
        return Err(Ineligible::NotReady);
    }
    if candidate.el_head.saturating_add(MAX_SUCCESSOR_LAG_BLOCKS) < leader_head {
        return Err(Ineligible::Behind { el_head: candidate.el_head, leader_head });
    }
    if kind == Move::Automatic {
        if u128::from(candidate.ready_for_ms) < rules.settle.as_millis() {
            return Err(Ineligible::Unsettled { ready_for_ms: candidate.ready_for_ms });
        }
        if candidate.order_digest != order_digest {
            return Err(Ineligible::OtherOrder);
        }
    }
    Ok(())
}

/// What the leader knows when it decides.
#[derive(Debug, Clone, Copy)]
pub struct LeaderView<'a> {
    pub me: &'a str,
    pub preference: &'a Preference,
    pub leader_head: u64,
    /// How long this node has held its current term.
    pub held_for: Duration,
    /// Paused by an operator: hand over to anyone eligible.
    pub paused: bool,
}

/// The decision: `Some(id)` to hand the lease to that node now, `None` to
/// keep leading.
///
/// A paused leader hands over to the best eligible node (its rank first,
/// then its id), settled or not: it should stop leading soon, but never
/// stop the chain for lack of a successor. Otherwise the leader hands over
/// only to a node ranked strictly above itself that has been ready for
/// `settle`, once it has held its own term that long (so a node that just
/// took over after a failover is not moved again at once, and a preferred
/// node that keeps failing cannot make the lease flap faster than once per
/// `settle`).
pub fn successor<'a>(view: LeaderView<'_>, candidates: &'a [Readiness], rules: Rules) -> Option<&'a str> {
    let digest = view.preference.digest();
    let kind = if view.paused { Move::Requested } else { Move::Automatic };
    let my_rank = view.preference.rank(view.me);
    if !view.paused && (view.preference.order.is_empty() || view.held_for < rules.settle) {
        return None;
    }
    candidates
        .iter()
        .filter(|c| eligible(view.me, c, view.leader_head, kind, rules, &digest).is_ok())
        .filter(|c| view.paused || view.preference.rank(&c.id) < my_rank)
        .min_by(|a, b| (view.preference.rank(&a.id), &a.id).cmp(&(view.preference.rank(&b.id), &b.id)))
        .map(|c| c.id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, ready: bool, paused: bool, el_head: u64, ready_for_ms: u64) -> Readiness {
        Readiness { id: id.into(), ready, paused, leading: false, el_head, ready_for_ms, order_digest: "a,b,c".into() }
    }

    #[test]
    fn who_the_leader_hands_over_to() {
        let preference = Preference { order: vec!["a".into(), "b".into(), "c".into()] };
        let rules = Rules { settle: Duration::from_secs(2) };
        let s = Duration::from_secs;
        let other_order = Readiness { order_digest: "b,a".into(), ..node("a", true, false, 100, 5000) };
        // (leader, held for, paused, leader head, candidates, expected)
        type Row<'a> = (&'a str, Duration, bool, u64, Vec<Readiness>, Option<&'a str>);
        let table: Vec<Row<'_>> = vec![
            // The most preferred node leads: it stays.
            ("a", s(60), false, 100, vec![node("b", true, false, 100, 9000)], None),
            // b leads, a is ready, caught up and settled: back to a.
            ("b", s(60), false, 100, vec![node("a", true, false, 100, 2000)], Some("a")),
            // ...a few blocks behind is caught up enough...
            ("b", s(60), false, 100, vec![node("a", true, false, 100 - MAX_SUCCESSOR_LAG_BLOCKS, 2000)], Some("a")),
            // ...further is not.
            ("b", s(60), false, 100, vec![node("a", true, false, 99 - MAX_SUCCESSOR_LAG_BLOCKS, 9000)], None),
            // Hysteresis: a not ready for long enough, or b just took over.
            ("b", s(60), false, 100, vec![node("a", true, false, 100, 1999)], None),
            ("b", Duration::from_millis(1999), false, 100, vec![node("a", true, false, 100, 9000)], None),
            // Not ready, or paused: never chosen.
            ("b", s(60), false, 100, vec![node("a", false, false, 100, 0)], None),
            ("b", s(60), false, 100, vec![node("a", true, true, 100, 9000)], None),
            // A node given another order is not followed (no ping-pong).
            ("b", s(60), false, 100, vec![other_order], None),
            // c leads: the best ready node above it wins, not the first listed.
            (
                "c",
                s(60),
                false,
                100,
                vec![node("b", true, false, 100, 9000), node("a", false, false, 100, 0)],
                Some("b"),
            ),
            (
                "c",
                s(60),
                false,
                100,
                vec![node("b", true, false, 100, 9000), node("a", true, false, 100, 9000)],
                Some("a"),
            ),
            // Never to a less preferred node, nor to an unlisted one.
            ("a", s(60), false, 100, vec![node("x", true, false, 100, 9000)], None),
            // An unlisted leader yields to any listed node.
            ("x", s(60), false, 100, vec![node("c", true, false, 100, 9000)], Some("c")),
            // Paused: to the best eligible node at once, settled or not, even a less preferred one.
            (
                "a",
                Duration::ZERO,
                true,
                100,
                vec![node("c", true, false, 100, 0), node("b", true, false, 100, 0)],
                Some("b"),
            ),
            ("a", s(60), true, 100, vec![node("b", true, true, 100, 9000), node("c", false, false, 100, 9000)], None),
            // A record of the leader itself is never a candidate.
            ("b", s(60), true, 100, vec![node("b", true, false, 100, 9000)], None),
        ];
        for (me, held_for, paused, leader_head, candidates, expected) in table {
            let view = LeaderView { me, preference: &preference, leader_head, held_for, paused };
            assert_eq!(
                successor(view, &candidates, rules),
                expected,
                "{me} held {held_for:?} paused {paused}: {candidates:?}"
            );
        }
        // Without a preference order nothing moves on its own.
        let none = Preference::default();
        let view = LeaderView { me: "b", preference: &none, leader_head: 100, held_for: s(60), paused: false };
        assert_eq!(successor(view, &[node("a", true, false, 100, 9000)], rules), None);
    }

    #[test]
    fn a_requested_move_needs_a_healthy_caught_up_node_only() {
        let rules = Rules { settle: Duration::from_secs(2) };
        let judge = |c: &Readiness| eligible("b", c, 100, Move::Requested, rules, "a,b,c");
        assert_eq!(judge(&node("a", true, false, 100, 0)), Ok(()));
        assert_eq!(judge(&node("a", true, true, 100, 0)), Err(Ineligible::Paused));
        assert_eq!(judge(&node("a", false, false, 100, 0)), Err(Ineligible::NotReady));
        assert_eq!(judge(&node("a", true, false, 10, 0)), Err(Ineligible::Behind { el_head: 10, leader_head: 100 }));
        assert_eq!(judge(&node("b", true, false, 100, 0)), Err(Ineligible::Itself));
        let automatic = eligible("b", &node("a", true, false, 100, 10), 100, Move::Automatic, rules, "a,b,c");
        assert_eq!(automatic, Err(Ineligible::Unsettled { ready_for_ms: 10 }));
    }

    #[test]
    fn records_round_trip_and_unreadable_ones_are_absent() {
        let record = node("a", true, false, 7, 1234);
        assert_eq!(Readiness::from_json(&record.to_json()), Some(record));
        assert_eq!(Readiness::from_json(&json!({"id": "a"})), None);
    }
}
