//! Filters' metrics in the host's Prometheus exposition: one family per
//! kind, each series labelled with the filter's name and the metric's.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::abi::MetricKind;
use crate::shared::{BUCKETS, FilterMetrics};

/// Every loaded filter's metrics, by filter name.
pub(crate) struct FiltersCollector(pub(crate) Loaded);

/// Each loaded filter's name and metrics.
pub(crate) type Loaded = Arc<Mutex<Vec<(String, Arc<FilterMetrics>)>>>;

impl std::fmt::Debug for FiltersCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FiltersCollector").finish_non_exhaustive()
    }
}

impl Collector for FiltersCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let filters = self.0.lock().clone();
        let all: Vec<(String, Arc<crate::shared::Metric>)> = filters
            .iter()
            .flat_map(|(filter, m)| m.all().into_iter().map(move |m| (filter.clone(), m)))
            .collect();
        for (kind, family, help, ty) in [
            (
                MetricKind::Counter,
                "filter_counter",
                "Counters defined by Proxy-Wasm filters (proxy_define_metric), by filter and name",
                MetricType::Counter,
            ),
            (
                MetricKind::Gauge,
                "filter_gauge",
                "Gauges defined by Proxy-Wasm filters, by filter and name",
                MetricType::Gauge,
            ),
            (
                MetricKind::Histogram,
                "filter_histogram",
                "Histograms defined by Proxy-Wasm filters, by filter and name",
                MetricType::Histogram,
            ),
        ] {
            let series: Vec<_> = all.iter().filter(|(_, m)| m.kind == kind).collect();
            if series.is_empty() {
                continue;
            }
            let mut encoder = encoder.encode_descriptor(family, help, None, ty)?;
            for (filter, metric) in series {
                let labels = [("filter", filter.as_str()), ("name", metric.name.as_str())];
                let value = metric.value.load(Ordering::Relaxed);
                let mut family = encoder.encode_family(&labels)?;
                match kind {
                    MetricKind::Counter => family.encode_counter::<NoLabelSet, _, u64>(
                        &u64::try_from(value).unwrap_or(0),
                        None,
                    )?,
                    MetricKind::Gauge => family.encode_gauge(&value)?,
                    MetricKind::Histogram => {
                        let mut cumulative = 0;
                        let buckets: Vec<(f64, u64)> = BUCKETS
                            .iter()
                            .zip(&metric.buckets)
                            .map(|(bound, count)| {
                                cumulative += count.load(Ordering::Relaxed);
                                (*bound, cumulative)
                            })
                            .collect();
                        #[allow(clippy::cast_precision_loss)]
                        family.encode_histogram::<NoLabelSet>(
                            value as f64,
                            metric.count.load(Ordering::Relaxed),
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
