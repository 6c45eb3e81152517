//! Filters' metrics in the host's Prometheus exposition: one family per
//! kind, each series labelled with the filter's name and the metric's.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::abi::MetricKind;
use crate::shared::{BUCKETS, FilterMetrics};

/// Every loaded filter's metrics, by filter name.
pub(crate) struct FiltersCollector(pub(crate) Loaded);

/// Each loaded filter's name and metrics, for as long as the filter lives.
pub(crate) type Loaded = Arc<Mutex<Vec<(String, Weak<FilterMetrics>)>>>;

impl std::fmt::Debug for FiltersCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FiltersCollector").finish_non_exhaustive()
    }
}

/// One series, summed over the filter's instances.
#[derive(Default)]
struct Sum {
    value: i64,
    count: u64,
    buckets: [u64; BUCKETS.len()],
}

impl Collector for FiltersCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // Filters that are gone leave the list; the same filter loaded
        // for several bindings is one series, the sum of its instances
        // (Prometheus refuses a scrape with a series twice).
        let live: Vec<(String, Arc<FilterMetrics>)> = {
            let mut loaded = self.0.lock();
            loaded.retain(|(_, m)| m.strong_count() > 0);
            loaded
                .iter()
                .filter_map(|(name, m)| Some((name.clone(), m.upgrade()?)))
                .collect()
        };
        let mut all: BTreeMap<(u8, String, String), Sum> = BTreeMap::new();
        for (filter, metrics) in &live {
            for metric in metrics.all() {
                let kind = match metric.kind {
                    MetricKind::Counter => 0,
                    MetricKind::Gauge => 1,
                    MetricKind::Histogram => 2,
                };
                let sum = all
                    .entry((kind, filter.clone(), metric.name.clone()))
                    .or_default();
                // The same filter on several bindings is one series: its
                // copies' values, each as large as a filter likes, add up
                // without overflowing.
                sum.value = sum
                    .value
                    .saturating_add(metric.value.load(Ordering::Relaxed));
                sum.count = sum
                    .count
                    .saturating_add(metric.count.load(Ordering::Relaxed));
                for (total, bucket) in sum.buckets.iter_mut().zip(&metric.buckets) {
                    *total = total.saturating_add(bucket.load(Ordering::Relaxed));
                }
            }
        }
        for (kind, family, help, ty) in [
            (
                0,
                "filter_counter",
                "Counters defined by Proxy-Wasm filters (proxy_define_metric), by filter and name",
                MetricType::Counter,
            ),
            (
                1,
                "filter_gauge",
                "Gauges defined by Proxy-Wasm filters, by filter and name",
                MetricType::Gauge,
            ),
            (
                2,
                "filter_histogram",
                "Histograms defined by Proxy-Wasm filters, by filter and name",
                MetricType::Histogram,
            ),
        ] {
            let mut series = all
                .range((kind, String::new(), String::new())..)
                .take_while(|((k, _, _), _)| *k == kind)
                .peekable();
            if series.peek().is_none() {
                continue;
            }
            let mut encoder = encoder.encode_descriptor(family, help, None, ty)?;
            for ((_, filter, name), sum) in series {
                let labels = [("filter", filter.as_str()), ("name", name.as_str())];
                let mut family = encoder.encode_family(&labels)?;
                match kind {
                    0 => family.encode_counter::<NoLabelSet, _, u64>(
                        &u64::try_from(sum.value).unwrap_or(0),
                        None,
                    )?,
                    1 => family.encode_gauge(&sum.value)?,
                    _ => {
                        let mut cumulative = 0;
                        let buckets: Vec<(f64, u64)> = BUCKETS
                            .iter()
                            .zip(&sum.buckets)
                            .map(|(bound, count)| {
                                cumulative += count;
                                (*bound, cumulative)
                            })
                            .collect();
                        #[allow(clippy::cast_precision_loss)]
                        family.encode_histogram::<NoLabelSet>(
                            sum.value as f64,
                            sum.count,
                            &buckets,
                            None,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::Status;

    #[test]
    fn copies_of_one_filter_sum_without_overflow() {
        let copies: Vec<Arc<FilterMetrics>> = (0..2).map(|_| Arc::default()).collect();
        let loaded: Loaded = Arc::default();
        for metrics in &copies {
            let gauge = metrics.define(MetricKind::Gauge, "g").unwrap();
            assert_eq!(metrics.record(gauge, u64::MAX), Status::Ok);
            loaded
                .lock()
                .push(("twice".to_string(), Arc::downgrade(metrics)));
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(FiltersCollector(loaded)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(&i64::MAX.to_string()), "{text}");
    }
}
