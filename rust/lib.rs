//! Hot path of galfriday-recorder: Kraken frames in, exact L2 books, metrics
//! and InfluxDB line protocol out. Everything outside `bindings` is plain Rust,
//! tested by `cargo test` without a Python interpreter.

#[cfg(feature = "python")]
mod bindings;
