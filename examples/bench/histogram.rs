//! Latency histograms in microseconds, reported in milliseconds.

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

/// Latencies in microseconds, from 1 µs to 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// The `quantiles` of `latency_us` in milliseconds, keyed `p50`, `p99`,
/// `p99.9`…, with the count of samples they come from.
pub fn summary(latency_us: &Histogram<u64>, quantiles: &[f64]) -> Value {
    let mut fields = Map::new();
    for &q in quantiles {
        // Rounded to a tenth of a percent, so that 0.999 is named p99.9.
        let name = format!("p{}", (q * 1000.0).round() / 10.0);
        fields.insert(name, json!(latency_us.value_at_quantile(q) as f64 / 1000.0));
    }
    fields.insert("max".into(), json!(latency_us.max() as f64 / 1000.0));
    fields.insert("samples".into(), json!(latency_us.len()));
    Value::Object(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_quantiles_as_percentiles() {
        let mut h = histogram();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let s = summary(&h, &[0.5, 0.99, 0.999]);
        assert_eq!(s["p50"], json!(0.5));
        assert_eq!(s["p99"], json!(0.99));
        assert_eq!(s["p99.9"], json!(0.999));
        assert_eq!(s["samples"], json!(1000));
    }
}
