//! Hot path of galfriday-recorder: Kraken frames in, exact L2 books, metrics
//! and InfluxDB line protocol out. Everything outside `bindings` and
//! `json_values` (the PyO3 layer) is plain Rust, tested by `cargo test` without
//! a Python interpreter.

pub mod bars;
pub mod book;
pub mod checksum;
pub mod error;
pub mod fixed;
pub mod kraken;
pub mod lineproto;
pub mod market;
pub mod measurements;
pub mod metrics;
pub mod points;
pub mod scan;
pub mod symbols;

#[cfg(feature = "python")]
mod bindings;
#[cfg(feature = "python")]
mod json_values;
