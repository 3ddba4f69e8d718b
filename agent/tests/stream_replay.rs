//! Streaming to a fake `POST /api/v1/events` endpoint that stores events by id: killing and
//! restarting the endpoint mid-run loses nothing and stores nothing twice; filters apply to
//! the stream only.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use dbward_agent::audit::event::{Extra, Statement};
use dbward_agent::audit::key::{VERIFYING_KEY_FILE, read_verifying_key};
use dbward_agent::audit::{AuditConfig, AuditEvent, AuditLog, AuditOptions, verify_path};
use dbward_agent::stream::{StreamConfig, StreamOptions, Streamer};
use serde_json::{Value, json};

const TOKEN: &str = "host-token-1";

#[derive(Default)]
struct Store {
    events: HashMap<String, Value>,
    duplicates_received: u64,
    requests: u64,
    /// Answer this many requests with 503 *after* storing them, as when an answer is lost.
    lose_answers: u64,
}

/// The fake endpoint runs on its own runtime so that "killing" it drops the listener and
/// every open connection at once.
struct Endpoint {
    runtime: tokio::runtime::Runtime,
}

impl Endpoint {
    fn start(addr: SocketAddr, store: Arc<Mutex<Store>>) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {addr}: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot bind {addr}: {e}"),
            }
        };
        listener.set_nonblocking(true).expect("nonblocking");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let app = Router::new()
            .route("/api/v1/events", post(events))
            .with_state(store);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            axum::serve(listener, app).await.expect("serve");
        });
        Self { runtime }
    }

    /// Stops the endpoint and waits until it has: a request it was handling may still
    /// complete (stored, its answer lost), but nothing is stored once this returns.
    fn kill(self) {
        // Shutting a runtime down waits for its workers, which cannot be done on a thread
        // of the test's own runtime.
        std::thread::spawn(move || self.runtime.shutdown_timeout(Duration::from_secs(10)))
            .join()
            .expect("endpoint shut down");
    }
}

async fn events(
    State(store): State<Arc<Mutex<Store>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return (StatusCode::UNAUTHORIZED, "bad token".into());
    }
    let mut raw = Vec::new();
    if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        if let Err(e) = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut raw) {
            return (StatusCode::BAD_REQUEST, e.to_string());
        }
    } else {
        raw = body.to_vec();
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&raw) else {
        return (StatusCode::BAD_REQUEST, "bad json".into());
    };
    let mut store = store.lock().expect("store lock");
    store.requests += 1;
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    for event in parsed["events"].as_array().cloned().unwrap_or_default() {
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        match store.events.entry(id) {
            Entry::Occupied(_) => duplicates += 1,
            Entry::Vacant(slot) => {
                slot.insert(event);
                accepted += 1;
            }
        }
    }
    store.duplicates_received += duplicates;
    if store.lose_answers > 0 {
        store.lose_answers -= 1;
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "stored, but the answer is lost".into(),
        );
    }
    (
        StatusCode::OK,
        json!({"accepted": accepted, "duplicates": duplicates}).to_string(),
    )
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

struct Setup {
    _tmp: tempfile::TempDir,
    audit: AuditConfig,
    stream: StreamConfig,
}

fn setup(addr: SocketAddr) -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
    let audit = AuditConfig {
        dir: tmp.path().join("audit"),
        key_file: tmp.path().join("audit.key"),
        fsync_interval_ms: 20,
        rotate_max_bytes: 4 * 1024 * 1024,
        ..AuditConfig::default()
    };
    let stream = StreamConfig {
        enabled: true,
        endpoint: format!("http://{addr}"),
        token_file: Some(token_file),
        cursor_file: tmp.path().join("stream.cursor"),
        request_timeout_secs: 5,
        backoff_initial_ms: 20,
        backoff_max_ms: 400,
        ..StreamConfig::default()
    };
    Setup {
        _tmp: tmp,
        audit,
        stream,
    }
}

fn statement(n: u64, class: &str) -> AuditEvent {
    AuditEvent::Statement(Statement {
        session_id: format!("s{}", n % 7),
        statement: format!("UPDATE t SET v = {n} WHERE id = {}", n % 100),
        outcome: "audit".into(),
        rule: Some("writes".into()),
        class: Some(class.into()),
        extra: Extra::new(),
    })
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_killed_mid_run_receives_every_event_exactly_once() {
    const EVENTS: u64 = 100_000;
    let addr = free_addr();
    let s = setup(addr);
    let store = Arc::new(Mutex::new(Store::default()));
    let mut endpoint = Some(Endpoint::start(addr, Arc::clone(&store)));

    let log = Arc::new(
        AuditLog::open(AuditOptions {
            config: s.audit.clone(),
            host: "db1".into(),
        })
        .expect("open log"),
    );
    let options = StreamOptions {
        config: s.stream.clone(),
        audit_dir: s.audit.dir.clone(),
        host: "db1".into(),
        retention_max_files: 100,
    };
    let streamer = Streamer::new(options, log.subscribe_synced()).expect("streamer");
    let metrics = streamer.metrics();
    let streaming = tokio::spawn(streamer.run(std::future::pending()));

    let appender = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for n in 0..EVENTS {
                log.append(&statement(n, "write")).expect("append");
                if n % 5_000 == 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    };

    let stored = || store.lock().expect("store").events.len() as u64;
    let kill_at = EVENTS / 4;
    tokio::task::block_in_place(|| {
        wait_for("a quarter of the events", Duration::from_secs(120), || {
            stored() >= kill_at
        })
    });
    endpoint.take().expect("running").kill();
    let during_outage = stored();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(stored(), during_outage, "the endpoint is down");
    let failures_while_down = metrics.snapshot().send_failures;
    assert!(
        failures_while_down > 0,
        "sends must have failed while the endpoint was down"
    );
    let backlog_while_down = metrics.snapshot().backlog_events;
    assert!(
        backlog_while_down > 0,
        "events must have accumulated while the endpoint was down"
    );

    store.lock().expect("store").lose_answers = 2;
    let restarted = Endpoint::start(addr, Arc::clone(&store));
    tokio::task::block_in_place(|| appender.join()).expect("appender");
    let last_seq = log.flush().await.expect("flush");
    tokio::task::block_in_place(|| log.close()).expect("close");
    tokio::time::timeout(Duration::from_secs(180), streaming)
        .await
        .expect("streamer drains and stops")
        .expect("join")
        .expect("streamer ok");

    let final_seq = {
        let key = read_verifying_key(&s.audit.dir.join(VERIFYING_KEY_FILE)).expect("key");
        verify_path(&s.audit.dir, &key)
            .expect("local log verifies")
            .last_seq
    };
    assert!(final_seq > last_seq, "close appends the stop checkpoint");
    let store = store.lock().expect("store");
    let statements = store
        .events
        .values()
        .filter(|e| e["type"] == "statement")
        .count() as u64;
    assert_eq!(statements, EVENTS, "exactly {EVENTS} statements arrive");
    assert_eq!(
        store.events.len() as u64,
        final_seq,
        "every record, checkpoints included, arrives once"
    );
    for seq in 1..=final_seq {
        assert!(
            store.events.contains_key(&format!("db1:{seq}")),
            "db1:{seq} missing"
        );
    }
    let stats = metrics.snapshot();
    assert!(
        store.duplicates_received > 0,
        "batches whose answer was lost are sent again"
    );
    assert_eq!(
        stats.accepted + stats.duplicates,
        final_seq,
        "each acknowledged event counted once as accepted or duplicate"
    );
    assert!(stats.duplicates > 0 && stats.accepted < final_seq);
    assert_eq!(stats.acked_seq, final_seq);
    assert_eq!(stats.events_lost_to_retention, 0);
    eprintln!(
        "requests {} duplicates re-sent {} send failures {}",
        store.requests, store.duplicates_received, stats.send_failures
    );
    drop(store);
    restarted.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_shape_the_stream_but_the_local_log_keeps_everything() {
    let addr = free_addr();
    let mut s = setup(addr);
    s.stream.exclude_classes = vec!["ddl".into()];
    s.stream.read_sample_rate = 0.25;
    let store = Arc::new(Mutex::new(Store::default()));
    let endpoint = Endpoint::start(addr, Arc::clone(&store));
    let log = AuditLog::open(AuditOptions {
        config: s.audit.clone(),
        host: "db1".into(),
    })
    .expect("open log");
    let options = StreamOptions {
        config: s.stream.clone(),
        audit_dir: s.audit.dir.clone(),
        host: "db1".into(),
        retention_max_files: 100,
    };
    let streamer = Streamer::new(options, log.subscribe_synced()).expect("streamer");
    let metrics = streamer.metrics();
    let streaming = tokio::spawn(streamer.run(std::future::pending()));
    for n in 0..4_000u64 {
        let class = ["read", "write", "ddl", "read"][(n % 4) as usize];
        log.append(&statement(n, class)).expect("append");
    }
    tokio::task::block_in_place(|| log.close()).expect("close");
    tokio::time::timeout(Duration::from_secs(60), streaming)
        .await
        .expect("drains")
        .expect("join")
        .expect("ok");

    let local = std::fs::read_to_string(
        dbward_agent::audit::files::list(&s.audit.dir).expect("list")[0]
            .path
            .clone(),
    )
    .expect("read log");
    let count = |text: &str, class: &str| text.matches(&format!("\"class\":\"{class}\"")).count();
    assert_eq!(
        (
            count(&local, "read"),
            count(&local, "write"),
            count(&local, "ddl")
        ),
        (2_000, 1_000, 1_000),
        "local log keeps everything"
    );

    let store = store.lock().expect("store");
    let by_class = |class: &str| {
        store
            .events
            .values()
            .filter(|e| e["class"] == class)
            .count()
    };
    assert_eq!(by_class("write"), 1_000);
    assert_eq!(by_class("ddl"), 0);
    let reads = by_class("read");
    assert!(
        (400..=600).contains(&reads),
        "about a quarter of 2000 reads, got {reads}"
    );
    assert!(
        store.events.values().any(|e| e["type"] == "checkpoint"),
        "checkpoints are always streamed"
    );
    let stats = metrics.snapshot();
    assert_eq!(stats.events_filtered + stats.events_sent, stats.events_read);
    drop(store);
    endpoint.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_streamer_resumes_from_its_cursor_without_resending() {
    let addr = free_addr();
    let s = setup(addr);
    let store = Arc::new(Mutex::new(Store::default()));
    let endpoint = Endpoint::start(addr, Arc::clone(&store));
    let log = AuditLog::open(AuditOptions {
        config: s.audit.clone(),
        host: "db1".into(),
    })
    .expect("open log");
    let options = StreamOptions {
        config: s.stream.clone(),
        audit_dir: s.audit.dir.clone(),
        host: "db1".into(),
        retention_max_files: 100,
    };
    let stored = || store.lock().expect("store").events.len() as u64;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let first = Streamer::new(options.clone(), log.subscribe_synced()).expect("streamer");
    let first_metrics = first.metrics();
    let first_run = tokio::spawn(first.run(async {
        let _ = stopped.await;
    }));
    for n in 0..1_000 {
        log.append(&statement(n, "write")).expect("append");
    }
    let durable = log.flush().await.expect("flush");
    tokio::task::block_in_place(|| {
        // Stored at the endpoint *and* acknowledged to the streamer (which persists its
        // cursor before counting the ack): stopping earlier would rightly resend the batch.
        wait_for("the first thousand", Duration::from_secs(60), || {
            stored() >= durable && first_metrics.snapshot().acked_seq >= durable
        })
    });
    stop.send(()).expect("stop the first streamer");
    first_run.await.expect("join").expect("first streamer ok");

    for n in 1_000..2_000 {
        log.append(&statement(n, "write")).expect("append");
    }
    let second = Streamer::new(options, log.subscribe_synced()).expect("streamer");
    let metrics = second.metrics();
    assert_eq!(
        metrics.snapshot().acked_seq,
        durable,
        "the cursor was persisted"
    );
    let second_run = tokio::spawn(second.run(std::future::pending()));
    tokio::task::block_in_place(|| log.close()).expect("close");
    tokio::time::timeout(Duration::from_secs(60), second_run)
        .await
        .expect("drains")
        .expect("join")
        .expect("ok");

    let store = store.lock().expect("store");
    assert_eq!(
        store
            .events
            .values()
            .filter(|e| e["type"] == "statement")
            .count(),
        2_000
    );
    assert_eq!(
        store.duplicates_received, 0,
        "nothing before the cursor is sent again"
    );
    assert_eq!(
        metrics.snapshot().events_read + durable,
        metrics.snapshot().acked_seq
    );
    drop(store);
    endpoint.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_beyond_retention_is_counted_as_lost_and_the_rest_arrives() {
    let addr = free_addr();
    let mut s = setup(addr);
    s.audit.rotate_max_bytes = 16 * 1024;
    s.audit.retention_max_files = 3;
    let store = Arc::new(Mutex::new(Store::default()));
    let log = AuditLog::open(AuditOptions {
        config: s.audit.clone(),
        host: "db1".into(),
    })
    .expect("open log");
    let options = StreamOptions {
        config: s.stream.clone(),
        audit_dir: s.audit.dir.clone(),
        host: "db1".into(),
        retention_max_files: s.audit.retention_max_files,
    };
    // The endpoint is down while the log rotates far past its retention.
    let streamer = Streamer::new(options, log.subscribe_synced()).expect("streamer");
    let metrics = streamer.metrics();
    let streaming = tokio::spawn(streamer.run(std::future::pending()));
    for n in 0..2_000 {
        log.append(&statement(n, "write")).expect("append");
    }
    let durable = log.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(metrics.snapshot().send_failures > 0);
    assert_eq!(metrics.snapshot().acked_seq, 0);

    let endpoint = Endpoint::start(addr, Arc::clone(&store));
    tokio::task::block_in_place(|| log.close()).expect("close");
    tokio::time::timeout(Duration::from_secs(60), streaming)
        .await
        .expect("drains")
        .expect("join")
        .expect("ok");

    let stats = metrics.snapshot();
    let stored = store.lock().expect("store").events.len() as u64;
    assert!(
        stats.events_lost_to_retention > 0,
        "retention outran the stream: {stats:?}"
    );
    assert_eq!(
        stored + stats.events_lost_to_retention,
        durable + 1,
        "every record is either delivered or counted as lost (the +1 is the stop checkpoint)"
    );
    assert!(
        stats.backlog_files <= 3,
        "the backlog never spans more than the retained files"
    );
    endpoint.kill();
}
