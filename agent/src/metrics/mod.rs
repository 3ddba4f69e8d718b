//! Prometheus metrics (`[metrics] listen`): events by type, statements by class and outcome,
//! holds, decisions and their latency, kernel drops, the audit log and the stream spool,
//! served in the Prometheus text format on `GET /metrics`.
//!
//! - [`config`] — the `[metrics]` section of agent.toml.
//! - `server` — the HTTP listener, and the values read from other stages at scrape time.
//!
//! Counting is cheap: [`Metrics::observe`] maps an event's labels to indices and increments
//! an atomic counter whose label set was looked up once, so a statement allocates nothing.

pub mod config;
mod server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use config::MetricsConfig;
pub use server::{MetricsError, Sources, serve};

use crate::event::{Event, EventType};

/// `type` label values, in [`type_index`] order.
const TYPES: &[&str] = &[
    "session_start",
    "statement",
    "session_end",
    "kernel_drops",
    "cluster_attached",
    "hold",
    "decision",
    "policy_reload",
    "connection_blocked",
];
/// `source` label values: the kernel capture, the shim, or the agent itself (reloads).
const SOURCES: &[&str] = &["kernel", "shim", "agent"];
/// Statement `class` label values: every `policy::Class` (`unknown` last), then `none` (not classified: the shim's
/// own upstream statements seen by the kernel).
const CLASSES: &[&str] = &[
    "transaction",
    "session",
    "read",
    "write",
    "delete",
    "ddl",
    "admin",
    "privilege",
    "export",
    "unknown",
    "none",
];
/// Statement `outcome` label values (the policy's), `none` when policy was not asked.
const OUTCOMES: &[&str] = &["allow", "audit", "deny", "require_approval", "none"];
/// Statement `action` label values.
const ACTIONS: &[&str] = &["forwarded", "denied", "recorded", "none"];
/// Decision `outcome` label values; `deny` and `require_approval` are immediate
/// terminations by a rule (`unmediated: terminate`), without a request.
const DECISIONS: &[&str] = &[
    "approved",
    "denied",
    "expired",
    "cancelled",
    "unavailable",
    "rejected",
    "deny",
    "require_approval",
    "other",
];
/// Kernel stop `at` label values: before parsing a `Query`, or before running an `Execute`.
const STOP_POINTS: &[&str] = &["parse", "execute"];
/// Upper bounds (seconds) of the decision latency buckets: from a CI bot's instant answer
/// to a person answering within the hour.
const LATENCY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Most holds waiting for a decision whose start is remembered (for the latency).
const MAX_PENDING: usize = 100_000;

/// The agent's metrics; cheap to clone. A disabled handle (no `[metrics]`) counts nothing.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

struct Inner {
    registry: Registry,
    events: Counters<2>,
    statements: Counters<4>,
    holds: Counters<1>,
    decisions: Counters<2>,
    latency: Histogram,
    holds_pending: Gauge,
    kernel_stops: Counters<1>,
    pending: Mutex<HashMap<String, Instant>>,
    kernel_drops: Family<[(&'static str, String); 1], Counter>,
    scraped: server::Scraped,
}

impl Metrics {
    /// Enabled metrics with every series registered (none counted yet).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dbward");
        let events = Counters::new([("type", TYPES), ("source", SOURCES)]);
        registry.register(
            "events",
            "Events the agent published, by type and by who saw them",
            events.family.clone(),
        );
        let statements = Counters::new([
            ("source", &SOURCES[..2]),
            ("class", CLASSES),
            ("outcome", OUTCOMES),
            ("action", ACTIONS),
        ]);
        registry.register(
            "statements",
            "Statements by source, class, policy outcome and what was done",
            statements.family.clone(),
        );
        let holds = Counters::new([("source", &SOURCES[..2])]);
        registry.register(
            "holds",
            "Statements held for a human decision",
            holds.family.clone(),
        );
        let decisions = Counters::new([("source", &SOURCES[..2]), ("outcome", DECISIONS)]);
        registry.register(
            "decisions",
            "Decisions on held statements, by outcome",
            decisions.family.clone(),
        );
        let latency = Histogram::new(LATENCY_BUCKETS.iter().copied());
        registry.register(
            "decision_latency_seconds",
            "Seconds from a hold to its decision",
            latency.clone(),
        );
        let holds_pending = Gauge::default();
        registry.register(
            "holds_pending",
            "Held statements waiting for a decision",
            holds_pending.clone(),
        );
        let kernel_stops = Counters::new([("at", STOP_POINTS)]);
        registry.register(
            "kernel_stops",
            "Backends the kernel stopped for the agent's decision (--hold-unmediated), by where \
             they stopped; most are resumed at once",
            kernel_stops.family.clone(),
        );
        let kernel_drops = Family::default();
        registry.register(
            "kernel_drops",
            "Events the kernel could not write to the ring buffer, by event kind",
            kernel_drops.clone(),
        );
        let scraped = server::Scraped::register(&mut registry);
        Self {
            inner: Some(Arc::new(Inner {
                registry,
                events,
                statements,
                holds,
                decisions,
                latency,
                holds_pending,
                kernel_stops,
                pending: Mutex::new(HashMap::new()),
                kernel_drops,
                scraped,
            })),
        }
    }

    /// A handle that counts nothing (metrics not configured).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// [`Metrics::new`] when `on`, else [`Metrics::disabled`].
    pub fn enabled(on: bool) -> Self {
        if on { Self::new() } else { Self::disabled() }
    }

    /// Counts a published event: by type and source, statements by class, outcome and
    /// action, holds, decisions (with the latency since their hold), kernel drops.
    pub fn observe(&self, event: &Event) {
        let Some(inner) = &self.inner else {
            return;
        };
        let Some(kind) = event.kind else {
            return;
        };
        let source = source_index(event.source.as_deref());
        inner.events.inc([type_index(kind), source]);
        let mediator = source.min(1);
        match kind {
            EventType::Statement => inner.statements.inc([
                mediator,
                class_index(event.class.as_deref()),
                index_of(OUTCOMES, event.outcome.as_deref()),
                index_of(ACTIONS, event.action.as_deref()),
            ]),
            EventType::Hold => {
                inner.holds.inc([mediator]);
                if let Some(id) = &event.request_id {
                    let mut pending = inner.lock_pending();
                    if pending.len() < MAX_PENDING {
                        pending.insert(id.clone(), Instant::now());
                    }
                    inner.holds_pending.set(pending.len() as i64);
                }
            }
            EventType::Decision => {
                let outcome = index_of(DECISIONS, event.outcome.as_deref());
                inner.decisions.inc([mediator, outcome]);
                // A rejected decision (bad signature, wrong statement) leaves the hold open.
                if DECISIONS[outcome] != "rejected"
                    && let Some(id) = &event.request_id
                {
                    let mut pending = inner.lock_pending();
                    if let Some(held_at) = pending.remove(id) {
                        inner.latency.observe(held_at.elapsed().as_secs_f64());
                    }
                    inner.holds_pending.set(pending.len() as i64);
                }
            }
            EventType::KernelDrops => {
                for (kind, &total) in event.drops.iter().flatten() {
                    let counter = inner
                        .kernel_drops
                        .get_or_create_owned(&[("kind", kind.clone())]);
                    // The event carries totals since the agent started.
                    counter.inc_by(total.saturating_sub(counter.get()));
                }
            }
            _ => {}
        }
    }

    /// Counts a backend the kernel stopped for a decision, before parsing a `Query` or (when
    /// `at_execute`) before running an `Execute`.
    pub fn kernel_stop(&self, at_execute: bool) {
        if let Some(inner) = &self.inner {
            inner.kernel_stops.inc([usize::from(at_execute)]);
        }
    }

    /// The text exposition of every metric, after reading the scrape-time values from
    /// `sources`.
    pub fn render(&self, sources: &Sources) -> String {
        let mut out = String::new();
        if let Some(inner) = &self.inner {
            inner.scraped.refresh(sources);
            // Writing to a String cannot fail.
            let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &inner.registry);
        }
        out
    }
}

impl Inner {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A counter family over fixed label values, with each label set's counter looked up once.
struct Counters<const N: usize> {
    family: Family<[(&'static str, &'static str); N], Counter>,
    labels: [(&'static str, &'static [&'static str]); N],
    cells: Box<[OnceLock<Counter>]>,
}

impl<const N: usize> Counters<N> {
    fn new(labels: [(&'static str, &'static [&'static str]); N]) -> Self {
        let cells = labels.iter().map(|(_, values)| values.len()).product();
        Self {
            family: Family::default(),
            labels,
            cells: (0..cells).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Increments the counter of the label values at `at` (indices into each label's values).
    fn inc(&self, at: [usize; N]) {
        let flat = at
            .iter()
            .zip(&self.labels)
            .fold(0, |flat, (&i, (_, values))| flat * values.len() + i);
        self.cells[flat]
            .get_or_init(|| {
                let set = std::array::from_fn(|l| (self.labels[l].0, self.labels[l].1[at[l]]));
                self.family.get_or_create_owned(&set)
            })
            .inc();
    }
}

fn type_index(kind: EventType) -> usize {
    match kind {
        EventType::SessionStart => 0,
        EventType::Statement => 1,
        EventType::SessionEnd => 2,
        EventType::KernelDrops => 3,
        EventType::ClusterAttached => 4,
        EventType::Hold => 5,
        EventType::Decision => 6,
        EventType::PolicyReload => 7,
        EventType::ConnectionBlocked => 8,
    }
}

fn source_index(source: Option<&str>) -> usize {
    match source {
        Some("kernel") => 0,
        Some("shim") => 1,
        _ => 2,
    }
}

fn class_index(class: Option<&str>) -> usize {
    match class {
        None => CLASSES.len() - 1,
        Some(name) => CLASSES
            .iter()
            .position(|c| *c == name)
            .unwrap_or(CLASSES.len() - 2),
    }
}

/// Index of `value` in `values`, else the last (catch-all) entry.
fn index_of(values: &[&str], value: Option<&str>) -> usize {
    value
        .and_then(|v| values.iter().position(|known| *known == v))
        .unwrap_or(values.len() - 1)
}

#[cfg(test)]
mod tests;
