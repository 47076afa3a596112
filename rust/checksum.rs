//! Kraken's book CRC32 (v1 and v2 use the same string).
//!
//! The string is the top 10 asks (low to high) then the top 10 bids (high to
//! low), each price and qty written at the book's precision with the dot
//! removed and leading zeros stripped. For a fixed-point mantissa that is just
//! the mantissa's decimal digits, so no text is formatted and re-parsed.

use crate::book::{Level, DIGITS_CAP};

/// Levels per side covered by the checksum, whatever the subscribed depth.
pub const CHECKSUM_LEVELS: usize = 10;

fn top(levels: &[Level]) -> &[Level] {
    levels.get(..CHECKSUM_LEVELS).unwrap_or(levels)
}

/// CRC32 (IEEE, as zlib) of Kraken's checksum string for these levels.
pub fn kraken_checksum(asks: &[Level], bids: &[Level]) -> u32 {
    // 20 levels x 40 cached digits fits on the stack; one CRC call. Each
    // level's whole digit block is copied (a fixed-size copy) and the length
    // advanced by its used part only.
    let mut buf = [0u8; 2 * CHECKSUM_LEVELS * DIGITS_CAP];
    let mut len = 0usize;
    for side in [top(asks), top(bids)] {
        for level in side {
            let (block, used) = level.checksum_block();
            if let Some(dst) = buf.get_mut(len..len + DIGITS_CAP) {
                dst.copy_from_slice(block);
                len += used;
            }
        }
    }
    crc32fast::hash(buf.get(..len).unwrap_or(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed;

    fn levels(v: &[(&str, &str)]) -> Vec<Level> {
        v.iter()
            .map(|(p, q)| {
                Level::new(
                    fixed::parse(p.as_bytes()).unwrap().mant,
                    fixed::parse(q.as_bytes()).unwrap().mant,
                )
            })
            .collect()
    }

    /// Kraken's documented v2 example (docs "Spot Websockets (v2) Book Checksum").
    pub const DOC_BIDS: [(&str, &str); 10] = [
        ("45283.5", "0.10000000"),
        ("45283.4", "1.54582015"),
        ("45282.1", "0.10000000"),
        ("45281.0", "0.10000000"),
        ("45280.3", "1.54592586"),
        ("45279.0", "0.07990000"),
        ("45277.6", "0.03310103"),
        ("45277.5", "0.30000000"),
        ("45277.3", "1.54602737"),
        ("45276.6", "0.15445238"),
    ];
    pub const DOC_ASKS: [(&str, &str); 10] = [
        ("45285.2", "0.00100000"),
        ("45286.4", "1.54571953"),
        ("45286.6", "1.54571109"),
        ("45289.6", "1.54560911"),
        ("45290.2", "0.15890660"),
        ("45291.8", "1.54553491"),
        ("45294.7", "0.04454749"),
        ("45296.1", "0.35380000"),
        ("45297.5", "0.09945542"),
        ("45299.5", "0.18772827"),
    ];

    #[test]
    fn kraken_v2_documented_example() {
        assert_eq!(
            kraken_checksum(&levels(&DOC_ASKS), &levels(&DOC_BIDS)),
            3_310_070_434
        );
    }

    #[test]
    fn only_top_ten_count() {
        let mut asks = levels(&DOC_ASKS);
        let mut bids = levels(&DOC_BIDS);
        asks.push(Level::new(999_999, 1));
        bids.push(Level::new(1, 1));
        assert_eq!(kraken_checksum(&asks, &bids), 3_310_070_434);
    }

    /// Kraken's documented v1 book state (docs "Spot Websockets (v1) Book
    /// Checksum"): asks 0.05005..0.05050, bids 0.05000..0.04950 without
    /// 0.04985, every volume 0.00000500.
    fn doc_v1_book() -> (Vec<Level>, Vec<Level>) {
        let side = |prices: &[u64]| prices.iter().map(|&p| Level::new(p, 500)).collect();
        let asks: Vec<u64> = (0..10).map(|i| 5005 + 5 * i).collect();
        let bids = [5000, 4995, 4990, 4980, 4975, 4970, 4965, 4960, 4955, 4950];
        (side(&asks), side(&bids))
    }

    #[test]
    fn kraken_v1_documented_example() {
        let (asks, bids) = doc_v1_book();
        assert_eq!(kraken_checksum(&asks, &bids), 974_947_235);
    }
}
