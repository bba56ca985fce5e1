//! A tiny registry of counters, rendered in the Prometheus text exposition format for `/metrics`.
//!
//! Counters are atomics shared between the code that counts and the registry that renders them, so counting
//! takes no lock; only registering and rendering do.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// A monotonically increasing count. Clones count into the same value.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// A counter not (yet) in any registry.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
struct Family {
    help: String,
    /// Rendered label set (`{a="1",b="2"}` or empty) → counter.
    series: BTreeMap<String, Counter>,
}

/// The counters a process exposes. Cheap to clone: clones share one registry.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    families: Arc<Mutex<BTreeMap<String, Family>>>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter `name{labels}`, created on first use; later calls with the same name and labels return the
    /// same counter. `name` should end in `_total`, as Prometheus expects of counters.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let family = families.entry(name.to_owned()).or_insert_with(|| Family {
            help: help.to_owned(),
            series: BTreeMap::new(),
        });
        family
            .series
            .entry(render_labels(labels))
            .or_default()
            .clone()
    }

    /// Adds an existing counter to the registry as `name{labels}`, replacing any counter already there.
    pub fn register(&self, name: &str, help: &str, labels: &[(&str, &str)], counter: &Counter) {
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let family = families.entry(name.to_owned()).or_insert_with(|| Family {
            help: help.to_owned(),
            series: BTreeMap::new(),
        });
        family.series.insert(render_labels(labels), counter.clone());
    }

    /// Every counter in the Prometheus text format (version 0.0.4), sorted by name and labels.
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text = String::new();
        for (name, family) in families.iter() {
            let help = family.help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(text, "# HELP {name} {help}");
            let _ = writeln!(text, "# TYPE {name} counter");
            for (labels, counter) in &family.series {
                let _ = writeln!(text, "{name}{labels} {}", counter.get());
            }
        }
        text
    }
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut sorted = labels.to_vec();
    sorted.sort_unstable();
    let pairs: Vec<String> = sorted
        .iter()
        .map(|(key, value)| {
            let value = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{key}=\"{value}\"")
        })
        .collect();
    format!("{{{}}}", pairs.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_with_help_type_and_escaped_labels() {
        let metrics = Metrics::new();
        let handled = metrics.counter(
            "events_handled_total",
            "Events handled.",
            &[("group", "a\"b")],
        );
        handled.add(3);
        metrics
            .counter(
                "events_handled_total",
                "Events handled.",
                &[("group", "a\"b")],
            )
            .inc();
        let external = Counter::new();
        external.inc();
        metrics.register("apples_total", "Apples.", &[], &external);
        assert_eq!(
            metrics.render(),
            "# HELP apples_total Apples.\n# TYPE apples_total counter\napples_total 1\n\
             # HELP events_handled_total Events handled.\n# TYPE events_handled_total counter\n\
             events_handled_total{group=\"a\\\"b\"} 4\n"
        );
    }
}
