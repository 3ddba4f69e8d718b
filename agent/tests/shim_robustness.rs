//! Bad input and load at the shim: malformed, truncated and oversized messages, stalled
//! clients and 1,000 idle connections close or cost only their own connection; others
//! keep working, nothing panics, idle sessions stay small.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{Pg, PrefixGate, ShimOptions, start_shim};
use dbward_agent::protocol::postgres::{
    ErrorResponse, FromBytes, StartupPacket, ToBytes, check_typed,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn works(port: u16) {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("a well-behaved client still connects");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let row = client.query_one("SELECT 40 + 2", &[]).await.expect("query");
    assert_eq!(row.get::<_, i32>(0), 42);
}

async fn startup(port: u16) -> (TcpStream, BytesMut) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let p = StartupPacket::Startup {
        version: 196_608,
        params: vec![("user".into(), "postgres".into())],
    };
    s.write_all(&p.to_bytes()).await.expect("startup");
    let mut buf = BytesMut::new();
    loop {
        if let Some(n) = check_typed(&buf, 1 << 20).expect("frame") {
            if buf.split_to(n)[0] == b'Z' {
                return (s, buf);
            }
            continue;
        }
        assert!(
            s.read_buf(&mut buf).await.expect("read") > 0,
            "EOF during startup"
        );
    }
}

/// Reads until EOF (bounded in time); returns the first ErrorResponse seen, if any.
async fn error_then_eof(s: &mut TcpStream, mut buf: BytesMut) -> Option<ErrorResponse> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut first = None;
    loop {
        while let Ok(Some(n)) = check_typed(&buf, 1 << 20) {
            let f = buf.split_to(n);
            if f[0] == b'E' && first.is_none() {
                first = ErrorResponse::from_bytes(&f[5..]).ok();
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return first,
            Ok(Ok(_)) => {}
            Err(_) => panic!("connection was not closed"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_truncated_messages_close_only_the_offending_connection() {
    let pg = Pg::start();
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(PrefixGate::default()))).await;
    let port = shim.port();
    let cases: &[(&str, &[u8])] = &[
        ("unknown message type", b"?\0\0\0\x04"),
        ("query without terminator", b"Q\0\0\0\x08abcd"),
        ("bind with negative count", b"B\0\0\0\x0a\0\0\xff\xff\0\0"),
        ("length smaller than itself", b"Q\0\0\0\x02"),
        ("sync with a body", b"S\0\0\0\x05x"),
    ];
    for (what, bytes) in cases {
        let (mut s, buf) = startup(port).await;
        s.write_all(bytes).await.expect("send garbage");
        let err = error_then_eof(&mut s, buf).await;
        let err = err.unwrap_or_else(|| panic!("{what}: no error before close"));
        assert_eq!(err.0.code(), Some("08P01"), "{what}: {err:?}");
        works(port).await;
    }
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"\0\0\0\x10\0\x09\0\0garbage!")
        .await
        .expect("bad startup");
    let err = error_then_eof(&mut s, BytesMut::new()).await;
    assert_eq!(
        err.and_then(|e| e.0.code().map(str::to_owned)).as_deref(),
        Some("08P01")
    );
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"\0\0\0\x10\0\x03")
        .await
        .expect("truncated startup");
    drop(s);
    works(port).await;
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_and_over_maximum_lengths_are_refused() {
    let pg = Pg::start();
    let mut opts = ShimOptions::new(Arc::new(PrefixGate::default()));
    opts.tweak = Box::new(|c| c.max_message_len = 1 << 20);
    let shim = start_shim(&pg, opts).await;
    let port = shim.port();
    for header in [
        &b"Q\x7f\xff\xff\xff"[..],
        &b"Q\xff\xff\xff\xff"[..],
        &b"Q\0\x20\0\0"[..],
    ] {
        let (mut s, buf) = startup(port).await;
        s.write_all(header).await.expect("header");
        let err = error_then_eof(&mut s, buf)
            .await
            .expect("error before close");
        assert!(
            err.0
                .message()
                .is_some_and(|m| m.contains("exceeds the maximum")),
            "{err:?}"
        );
        works(port).await;
    }
    let (mut s, buf) = startup(port).await;
    let sql = format!("SELECT length('{}')", "x".repeat(900_000));
    s.write_all(&dbward_agent::protocol::postgres::Query { sql }.to_bytes())
        .await
        .expect("large but allowed query");
    let mut buf = buf;
    loop {
        if let Some(n) = check_typed(&buf, 1 << 20).expect("frame") {
            let f = buf.split_to(n);
            assert_ne!(f[0], b'E', "large message under the maximum works");
            if f[0] == b'Z' {
                break;
            }
            continue;
        }
        assert!(s.read_buf(&mut buf).await.expect("read") > 0);
    }
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_client_is_closed_while_others_are_served() {
    let pg = Pg::start();
    let mut opts = ShimOptions::new(Arc::new(PrefixGate::default()));
    opts.tweak = Box::new(|c| c.stall_timeout_secs = 1);
    let shim = start_shim(&pg, opts).await;
    let port = shim.port();
    let (mut s, buf) = startup(port).await;
    s.write_all(b"Q\0\0\x10\0SELECT")
        .await
        .expect("half a message");
    let started = Instant::now();
    works(port).await;
    let err = error_then_eof(&mut s, buf)
        .await
        .expect("error before close");
    assert!(
        err.0.message().is_some_and(|m| m.contains("stalled")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut pre = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    pre.write_all(b"\0\0\0\x50\0\x03")
        .await
        .expect("half a startup packet");
    assert!(error_then_eof(&mut pre, BytesMut::new()).await.is_none());
    shim.stop().await;
}

/// Counts live heap bytes so the cost of an idle session can be measured exactly.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only adding bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_idle_connections_do_not_stop_another_client_and_idle_sessions_stay_small() {
    let pg = Pg::start();
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(PrefixGate::default()))).await;
    let port = shim.port();
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(
            TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("idle connect"),
        );
    }
    let started = Instant::now();
    works(port).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "served promptly beside 1,000 idle connections"
    );
    drop(idle);

    works(port).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = LIVE.load(Ordering::Relaxed);
    let mut sessions = Vec::new();
    for _ in 0..150 {
        sessions.push(startup(port).await.0);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let per_session = LIVE.load(Ordering::Relaxed).saturating_sub(before) / 150;
    eprintln!("shim memory per idle session: {per_session} bytes");
    assert!(
        per_session <= 64 * 1024,
        "idle session costs {per_session} bytes in the shim process"
    );
    works(port).await;
    drop(sessions);
    shim.stop().await;
}
