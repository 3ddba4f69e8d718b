use std::collections::BTreeMap;
use std::path::Path;

use tokio::sync::watch;

use super::*;
use crate::policy::Class;

fn sources(dir: &Path, synced: u64, resumed_after: u64) -> Sources {
    Sources {
        stream: None,
        audit_synced: watch::channel(synced).1,
        audit_resumed_after: resumed_after,
        audit_dir: dir.to_owned(),
        shim_events: None,
    }
}

fn render(metrics: &Metrics) -> String {
    let dir = tempfile::tempdir().unwrap();
    metrics.render(&sources(dir.path(), 0, 0))
}

/// The value of the sample line that starts with `series ` (0 when absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

fn event(kind: EventType, source: &str) -> Event {
    Event {
        kind: Some(kind),
        source: Some(source.into()),
        ..Event::default()
    }
}

fn statement(source: &str, class: &str, outcome: &str, action: &str) -> Event {
    Event {
        class: Some(class.into()),
        outcome: Some(outcome.into()),
        action: Some(action.into()),
        ..event(EventType::Statement, source)
    }
}

#[test]
fn statements_are_counted_by_source_class_outcome_and_action() {
    let metrics = Metrics::new();
    for _ in 0..3 {
        metrics.observe(&statement(
            "shim",
            "export",
            "require_approval",
            "forwarded",
        ));
    }
    metrics.observe(&statement("kernel", "read", "audit", "recorded"));
    metrics.observe(&statement("kernel", "no-such-class", "allow", "recorded"));
    metrics.observe(&event(EventType::Statement, "kernel"));
    let text = render(&metrics);
    for (series, want) in [
        (
            r#"dbward_statements_total{source="shim",class="export",outcome="require_approval",action="forwarded"}"#,
            3.0,
        ),
        (
            r#"dbward_statements_total{source="kernel",class="read",outcome="audit",action="recorded"}"#,
            1.0,
        ),
        (
            r#"dbward_statements_total{source="kernel",class="unknown",outcome="allow",action="recorded"}"#,
            1.0,
        ),
        (
            r#"dbward_statements_total{source="kernel",class="none",outcome="none",action="none"}"#,
            1.0,
        ),
        (
            r#"dbward_events_total{type="statement",source="shim"}"#,
            3.0,
        ),
        (
            r#"dbward_events_total{type="statement",source="kernel"}"#,
            3.0,
        ),
    ] {
        assert_eq!(sample(&text, series), want, "{series} in\n{text}");
    }
    assert!(
        text.contains("# TYPE dbward_statements_total counter"),
        "no TYPE line:\n{text}"
    );
}

#[test]
fn a_decision_records_the_latency_since_its_hold() {
    let metrics = Metrics::new();
    let with_id = |mut e: Event, id: &str, outcome: Option<&str>| {
        e.request_id = Some(id.into());
        e.outcome = outcome.map(Into::into);
        e
    };
    metrics.observe(&with_id(event(EventType::Hold, "kernel"), "r1", None));
    metrics.observe(&with_id(event(EventType::Hold, "shim"), "r2", None));
    assert_eq!(sample(&render(&metrics), "dbward_holds_pending"), 2.0);
    std::thread::sleep(std::time::Duration::from_millis(60));
    metrics.observe(&with_id(
        event(EventType::Decision, "kernel"),
        "r1",
        Some("approved"),
    ));
    // A rejected decision leaves its hold open.
    metrics.observe(&with_id(
        event(EventType::Decision, "shim"),
        "r2",
        Some("rejected"),
    ));
    let text = render(&metrics);
    for (series, want) in [
        (r#"dbward_holds_total{source="kernel"}"#, 1.0),
        (r#"dbward_holds_total{source="shim"}"#, 1.0),
        (
            r#"dbward_decisions_total{source="kernel",outcome="approved"}"#,
            1.0,
        ),
        (
            r#"dbward_decisions_total{source="shim",outcome="rejected"}"#,
            1.0,
        ),
        ("dbward_holds_pending", 1.0),
        ("dbward_decision_latency_seconds_count", 1.0),
        (r#"dbward_decision_latency_seconds_bucket{le="0.05"}"#, 0.0),
        (r#"dbward_decision_latency_seconds_bucket{le="+Inf"}"#, 1.0),
    ] {
        assert_eq!(sample(&text, series), want, "{series} in\n{text}");
    }
    assert!(sample(&text, "dbward_decision_latency_seconds_sum") >= 0.05);
}

#[test]
fn kernel_drop_totals_become_counters() {
    let metrics = Metrics::new();
    let drops = |pairs: &[(&str, u64)]| Event {
        drops: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..event(EventType::KernelDrops, "kernel")
    };
    metrics.observe(&drops(&[("statement", 3)]));
    metrics.observe(&drops(&[("statement", 5), ("connect", 1)]));
    let text = render(&metrics);
    assert_eq!(
        sample(&text, r#"dbward_kernel_drops_total{kind="statement"}"#),
        5.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"dbward_kernel_drops_total{kind="connect"}"#),
        1.0
    );
}

#[test]
fn audit_values_are_read_at_scrape_time() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(crate::audit::files::file_name(1)),
        [b'x'; 700],
    )
    .unwrap();
    std::fs::write(dir.path().join("audit.pub"), [b'x'; 50]).unwrap();
    let metrics = Metrics::new();
    let text = metrics.render(&sources(dir.path(), 42, 40));
    assert_eq!(sample(&text, "dbward_audit_records_total"), 2.0, "{text}");
    assert_eq!(sample(&text, "dbward_audit_bytes"), 700.0);
    let text = metrics.render(&sources(dir.path(), 45, 40));
    assert_eq!(sample(&text, "dbward_audit_records_total"), 5.0);
}

#[test]
fn disabled_metrics_count_and_render_nothing() {
    let metrics = Metrics::disabled();
    metrics.observe(&statement("shim", "read", "allow", "forwarded"));
    assert_eq!(render(&metrics), "");
}

#[test]
fn every_class_has_a_label_value() {
    for class in Class::ALL {
        assert_eq!(
            CLASSES[class_index(Some(class.name()))],
            class.name(),
            "{class}"
        );
    }
    assert_eq!(CLASSES[class_index(None)], "none");
}
