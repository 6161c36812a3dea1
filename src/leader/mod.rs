//! Leader mode: the lease, block production through the fence, and the
//! stream publisher. Data flows engine → producer → store; nothing here
//! reads the sync API.

pub mod clock;
pub mod error;
pub mod failover;
pub mod failpoint;
pub mod handover;
pub mod lease;
pub mod pool_watch;
pub mod preference;
pub mod producer;
pub mod publish;
pub mod readiness;
pub mod redis_target;
pub mod step_down;
