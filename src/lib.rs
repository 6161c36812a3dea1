//! clnode: a consensus-layer node for Ethereum execution clients.
//!
//! See ARCHITECTURE.md for the codemap; data flows one way:
//! engine → producer → store → api → syncer → engine.

pub mod admin;
pub mod admin_cli;
pub mod alloc;
pub mod api;
pub mod backoff;
pub mod binary_page;
pub mod block;
pub mod codec;
pub mod config;
pub mod deadline;
pub mod engine;
pub mod health;
pub mod http;
pub mod leader;
pub mod log;
pub mod member;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod page_budget;
pub mod page_key;
pub mod pg_url;
pub mod process_metrics;
pub mod reconnect;
pub mod regression;
pub mod replay;
pub mod resume;
pub mod secret;
pub mod seed;
pub mod shutdown;
pub mod signing;
pub mod status;
pub mod status_cli;
pub mod store;
pub mod tls;
