//! The six InfluxDB measurements of the seed schema, in one place.
//!
//! InfluxDB types a field by the first value it stores and refuses every later
//! value of another type, so the type of each field is fixed here rather than
//! taken from whatever the caller passed (`10000` instead of `10000.0` would
//! make `total_equity` an integer field for good). `encode_line` converts and
//! checks every field of these measurements against this table; the market
//! core's own lines are tested against it.

/// InfluxDB's four field types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Float,
    Integer,
    Boolean,
    String,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Float => "Float",
            Kind::Integer => "Integer",
            Kind::Boolean => "Boolean",
            Kind::String => "String",
        }
    }
}

/// One measurement: its tag keys, named fields and the kind of any other field
/// (`None`: no other field belongs to it).
#[derive(Debug)]
pub struct Measurement {
    pub name: &'static str,
    pub tags: &'static [&'static str],
    pub fields: &'static [(&'static str, Kind)],
    pub other_fields: Option<Kind>,
}

impl Measurement {
    /// The kind of `field`, or `None` if it does not belong to this measurement.
    pub fn field_kind(&self, field: &str) -> Option<Kind> {
        self.fields
            .iter()
            .find(|(name, _)| *name == field)
            .map(|&(_, kind)| kind)
            .or(self.other_fields)
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.contains(&tag)
    }
}

use Kind::{Boolean, Float, Integer};

/// The seed's measurements. Free-form fields (levels and imbalances of the book,
/// features, per-asset positions, the bot's own metrics) are Float.
pub static SCHEMA: [Measurement; 6] = [
    Measurement {
        name: "market_data_l2",
        tags: &["exchange", "trading_pair"],
        fields: &[("is_snapshot", Boolean)],
        other_fields: Some(Float),
    },
    Measurement {
        name: "market_data_ohlcv",
        tags: &["exchange", "trading_pair", "interval"],
        fields: &[
            ("open", Float),
            ("high", Float),
            ("low", Float),
            ("close", Float),
            ("volume", Float),
        ],
        other_fields: None,
    },
    Measurement {
        name: "features",
        tags: &["exchange", "trading_pair", "feature_set_id"],
        fields: &[],
        other_fields: Some(Float),
    },
    Measurement {
        name: "predictions",
        tags: &["exchange", "trading_pair", "model_id", "prediction_target"],
        fields: &[("prediction_value", Float), ("confidence", Float)],
        other_fields: None,
    },
    Measurement {
        name: "portfolio_metrics",
        tags: &["account_id"],
        fields: &[],
        other_fields: Some(Float),
    },
    Measurement {
        name: "system_metrics",
        tags: &["host_id", "module_id"],
        // The seed's Integer and Boolean fields, then the recorder's own counters.
        fields: &[
            ("event_queue_depth", Integer),
            ("websocket_connected", Boolean),
            ("journal_depth", Integer),
            ("spool_bytes", Integer),
            ("lines_dropped", Integer),
            ("log_records_dropped", Integer),
        ],
        other_fields: Some(Float),
    },
];

/// The schema of `name`, if it is one of the six.
pub fn measurement(name: &str) -> Option<&'static Measurement> {
    SCHEMA.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_types() {
        let l2 = measurement("market_data_l2").unwrap();
        assert_eq!(l2.field_kind("is_snapshot"), Some(Boolean));
        assert_eq!(l2.field_kind("bid_price_level_7"), Some(Float));
        let ohlcv = measurement("market_data_ohlcv").unwrap();
        assert_eq!(ohlcv.field_kind("volume"), Some(Float));
        assert_eq!(ohlcv.field_kind("trades"), None);
        let sys = measurement("system_metrics").unwrap();
        assert_eq!(sys.field_kind("event_queue_depth"), Some(Integer));
        assert_eq!(sys.field_kind("cpu_usage_pct"), Some(Float));
        assert!(sys.has_tag("module_id") && !sys.has_tag("account_id"));
        assert_eq!(
            measurement("features").unwrap().field_kind("rsi_14"),
            Some(Float)
        );
        assert!(measurement("cpu").is_none());
    }
}
