//! Replays a file of frames (one per line: the snapshots first, then a
//! cycle of updates) through `MarketCore` in a loop, draining every 1,024
//! frames, and prints ns per update: the core without Python, for `perf`.
//!
//! `python tests/market/kraken_frames.py mix.jsonl` writes the realistic mix
//! of `make bench`; then `cargo run --release --example profile_mix --
//! mix.jsonl [UPDATES]`, under `perf record` to see where the time goes.

use std::time::Instant;

use _core::market::{Config, MarketCore};

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: profile_mix FRAMES [UPDATES]")?;
    let updates: usize = args
        .next()
        .map_or(Ok(2_000_000), |n| n.parse().map_err(|_| "UPDATES"))?;
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let (snapshots, frames): (Vec<&str>, Vec<&str>) = text
        .lines()
        .partition(|l| l.contains(r#""type":"snapshot""#));
    let mut core = MarketCore::new(Config::default())?;
    for s in &snapshots {
        core.ingest(s.as_bytes(), None);
    }
    let mut drained = 0usize;
    let start = Instant::now();
    for (i, f) in frames.iter().cycle().take(updates).enumerate() {
        let out = core.ingest(f.as_bytes(), None);
        if out.error.is_some() {
            return Err(format!("frame {i}: {:?}", out.error));
        }
        if i % 1024 == 1023 {
            core.drain_into(|b| drained += b.len());
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / updates as f64;
    println!("{ns:.0} ns per update, {drained} bytes of lines");
    Ok(())
}
