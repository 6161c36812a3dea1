//! Member mode: follow a sync API, verify each page, execute it on the
//! member's own execution client and store it in the member's own
//! PostgreSQL. Data flows api → fetch → verify → syncer → engine; nothing
//! here talks to Redis or writes to a leader's database.

pub mod fetch;
pub mod lag;
pub mod lag_limit;
pub mod pace;
pub mod syncer;
pub mod verify;
