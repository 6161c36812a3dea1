//! Meeting the seed (the Go tutorial's `03-member-nodes`, which clnode
//! replaces node by node) where it stands: its record encoding and its
//! database. Nothing here is needed by a cluster that never ran the seed.
//!
//! - `msgpack`: the small part of MessagePack the seed's records use.
//! - `payload`: the seed's msgpack execution payload and requests, to and
//!   from the Engine API JSON clnode keeps.
//! - `wire`: the seed's sync-API records, to and from clnode's block records.
//! - `migrate`: the seed's `payloads` table, migrated in place to clnode's.

pub mod migrate;
pub mod msgpack;
pub mod payload;
pub mod wire;
