//! tokio-postgres (binary extended protocol) and raw protocol bytes through the shim:
//! equal results, held Execute approved/denied, pipeline deny discards until Sync, and
//! cancel requests reaching the right backend.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{Pg, PrefixGate, ShimOptions, start_shim};
use dbward_agent::approval::LocalApprovals;
use dbward_agent::approval::local::ApproverIdentity;
use dbward_agent::protocol::postgres::{
    Bind, ErrorResponse, Execute, FromBytes, Parse, StartupPacket, ToBytes, check_typed,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::{Client, NoTls};

async fn connect(port: u16, user: &str, password: Option<&str>) -> Client {
    let mut conf = format!("host=127.0.0.1 port={port} user={user} dbname=postgres");
    if let Some(p) = password {
        conf.push_str(&format!(" password={p}"));
    }
    let (client, conn) = tokio_postgres::connect(&conf, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {port} as {user}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A workload touching binary parameters, NULLs, arrays, big values and transactions;
/// returns a textual summary to compare.
async fn workload(client: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    client
        .batch_execute("CREATE TEMP TABLE w (id int8 PRIMARY KEY, name text, score float8, tags text[], blob bytea)")
        .await
        .expect("create");
    let insert = client
        .prepare("INSERT INTO w VALUES ($1, $2, $3, $4, $5)")
        .await
        .expect("prepare");
    for i in 0..50_i64 {
        let name = (i % 7 != 0).then(|| format!("row {i}"));
        let tags = vec![format!("t{}", i % 3), "x".to_owned()];
        let blob = vec![u8::try_from(i).unwrap_or(0); usize::try_from(i).unwrap_or(0) * 10];
        client
            .execute(&insert, &[&i, &name, &(i as f64 / 3.0), &tags, &blob])
            .await
            .expect("insert");
    }
    let big = "z".repeat(5 * 1024 * 1024);
    let row = client
        .query_one("SELECT length($1::text), md5($1::text)", &[&big])
        .await
        .expect("big parameter");
    out.push(format!(
        "big {} {}",
        row.get::<_, i32>(0),
        row.get::<_, String>(1)
    ));
    for row in client
        .query(
            "SELECT id, name, score, tags, length(blob) FROM w WHERE id % 5 = 0 ORDER BY id",
            &[],
        )
        .await
        .expect("select")
    {
        out.push(format!(
            "{} {:?} {:.4} {:?} {:?}",
            row.get::<_, i64>(0),
            row.get::<_, Option<String>>(1),
            row.get::<_, f64>(2),
            row.get::<_, Vec<String>>(3),
            row.get::<_, Option<i32>>(4)
        ));
    }
    let tx = client.transaction().await.expect("begin");
    let n = tx
        .execute("DELETE FROM w WHERE id >= $1", &[&40_i64])
        .await
        .expect("delete");
    out.push(format!("deleted {n}"));
    tx.rollback().await.expect("rollback");
    let err = client
        .query("SELECT 1/0", &[])
        .await
        .expect_err("division by zero");
    out.push(format!(
        "error {:?}",
        err.code().map(|c| c.code().to_owned())
    ));
    let row = client
        .query_one("SELECT count(*) FROM w", &[])
        .await
        .expect("count");
    out.push(format!("count {}", row.get::<_, i64>(0)));
    let rows = client
        .simple_query("SELECT 1 AS a; SELECT 'two' AS b")
        .await
        .expect("simple");
    out.push(format!("simple messages {}", rows.len()));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_workload_equals_direct() {
    let pg = Pg::start();
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(PrefixGate::default()))).await;
    let direct = workload(&mut connect(pg.port, "postgres", None).await).await;
    let via = workload(&mut connect(shim.port(), "postgres", None).await).await;
    assert!(
        direct.iter().any(|l| l.starts_with("big 5242880")),
        "{direct:?}"
    );
    assert_eq!(via, direct);
    for (user, pw) in [common::pg::SCRAM_USER, common::pg::MD5_USER] {
        let c = connect(shim.port(), user, Some(pw)).await;
        let row = c
            .query_one("SELECT current_user::text", &[])
            .await
            .expect("query");
        assert_eq!(row.get::<_, String>(0), user);
    }
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_hold_at_execute_then_approve_or_deny() {
    let pg = Pg::start();
    pg.psql_direct("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2), (3);");
    let store = Arc::new(LocalApprovals::default());
    let gate = PrefixGate::default().hold("delete", Duration::from_secs(60), false);
    let mut opts = ShimOptions::new(Arc::new(gate));
    opts.approvals = store.clone();
    let shim = start_shim(&pg, opts).await;
    let client = Arc::new(connect(shim.port(), "postgres", None).await);
    let stmt = client
        .prepare("DELETE FROM t WHERE id = $1")
        .await
        .expect("prepare is not held");

    for (decide_approve, id_value, want_rows) in [(true, 1_i32, 3 - 1), (false, 2, 2)] {
        let c = Arc::clone(&client);
        let s = stmt.clone();
        let run = tokio::spawn(async move { c.execute(&s, &[&id_value]).await });
        let start = Instant::now();
        let pending = loop {
            if let Some(p) = store.list().into_iter().next() {
                break p;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no request filed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(pending.request.statement, "DELETE FROM t WHERE id = $1");
        let who = ApproverIdentity {
            user: "postgres".into(),
        };
        let id = pending.request.request_id;
        if decide_approve {
            store.approve(id, &who, None).expect("approve");
            assert_eq!(run.await.expect("task").expect("approved delete runs"), 1);
        } else {
            store.deny(id, &who, Some("no".into())).expect("deny");
            let err = run.await.expect("task").expect_err("denied");
            let db = err.as_db_error().expect("server-style error");
            assert_eq!(db.code().code(), "42501");
            assert!(db.message().contains(&id.to_string()), "{}", db.message());
        }
        let left: String = pg.psql_direct("SELECT count(*) FROM t").trim().to_owned();
        assert_eq!(left, want_rows.to_string());
    }
    let row = client
        .query_one("SELECT 'session still usable'", &[])
        .await
        .expect("usable");
    assert_eq!(row.get::<_, &str>(0), "session still usable");
    shim.stop().await;
}

async fn raw_startup(port: u16) -> (TcpStream, BytesMut) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let startup = StartupPacket::Startup {
        version: 196_608,
        params: vec![
            ("user".into(), "postgres".into()),
            ("database".into(), "postgres".into()),
        ],
    };
    s.write_all(&startup.to_bytes()).await.expect("startup");
    let mut buf = BytesMut::new();
    loop {
        let f = next_frame(&mut s, &mut buf).await;
        if f[0] == b'Z' {
            return (s, buf);
        }
    }
}

async fn next_frame(s: &mut TcpStream, buf: &mut BytesMut) -> bytes::Bytes {
    loop {
        if let Some(n) = check_typed(buf, 1 << 30).expect("valid frame") {
            return buf.split_to(n).freeze();
        }
        let n = tokio::time::timeout(Duration::from_secs(20), s.read_buf(buf))
            .await
            .expect("server answers in time")
            .expect("read");
        assert!(n > 0, "unexpected EOF");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_pipeline_deny_discards_until_sync_and_rolls_back_the_batch() {
    let pg = Pg::start();
    pg.psql_direct("CREATE TABLE t (id int)");
    let gate = PrefixGate::default().deny("delete", "no deletes");
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(gate))).await;
    let (mut s, mut buf) = raw_startup(shim.port()).await;
    let mut batch = Vec::new();
    for (name, sql) in [
        ("s1", "INSERT INTO t VALUES (1)"),
        ("s2", "DELETE FROM t"),
        ("s3", "INSERT INTO t VALUES (3)"),
    ] {
        batch.extend(parse(name, sql));
        batch.extend(bind_execute(name).concat());
    }
    batch.extend_from_slice(b"S\0\0\0\x04");
    s.write_all(&batch).await.expect("pipeline");
    let mut tags = Vec::new();
    let error = loop {
        let f = next_frame(&mut s, &mut buf).await;
        match f[0] {
            b'E' => break ErrorResponse::from_bytes(&f[5..]).expect("error"),
            t => tags.push(t as char),
        }
    };
    assert_eq!(
        tags,
        vec!['1', '2', 'C', '1', '2'],
        "s1 ran, s2 parsed and bound, then refused"
    );
    assert_eq!(error.0.code(), Some("42501"));
    assert_eq!(error.0.message(), Some("no deletes"));
    let z = next_frame(&mut s, &mut buf).await;
    assert_eq!(
        &z[..],
        b"Z\0\0\0\x05I",
        "ReadyForQuery follows directly: s3 was discarded"
    );
    assert_eq!(
        pg.psql_direct("SELECT count(*) FROM t").trim(),
        "0",
        "batch rolled back, s3 never ran"
    );
    s.write_all(
        &dbward_agent::protocol::postgres::Query {
            sql: "SELECT 1".into(),
        }
        .to_bytes(),
    )
    .await
    .expect("query");
    let mut after = Vec::new();
    loop {
        let f = next_frame(&mut s, &mut buf).await;
        after.push(f[0] as char);
        if f[0] == b'Z' {
            break;
        }
    }
    assert_eq!(after, vec!['T', 'D', 'C', 'Z'], "session goes on");
    shim.stop().await;
}

/// Frames of one batch: `messages` then Sync, answered up to ReadyForQuery; the type bytes
/// and the first error.
async fn batch(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    messages: &[Vec<u8>],
) -> (String, Option<ErrorResponse>) {
    let mut out: Vec<u8> = messages.concat();
    out.extend_from_slice(b"S\0\0\0\x04");
    s.write_all(&out).await.expect("send batch");
    answers(s, buf).await
}

/// The server's answers up to ReadyForQuery: their type bytes and the first error.
async fn answers(s: &mut TcpStream, buf: &mut BytesMut) -> (String, Option<ErrorResponse>) {
    let mut types = String::new();
    let mut error = None;
    loop {
        let f = next_frame(s, buf).await;
        types.push(f[0] as char);
        if f[0] == b'E' && error.is_none() {
            error = Some(ErrorResponse::from_bytes(&f[5..]).expect("error"));
        }
        if f[0] == b'Z' {
            return (types, error);
        }
    }
}

/// A Parse of `sql` as statement `name` (no parameter types).
fn parse(name: &str, sql: &str) -> Vec<u8> {
    Parse {
        name: name.into(),
        sql: sql.into(),
        param_types: vec![],
    }
    .to_bytes()
    .to_vec()
}

/// Bind of `statement` to the unnamed portal, then Execute of it (all rows).
fn bind_execute(statement: &str) -> Vec<Vec<u8>> {
    vec![
        Bind {
            portal: String::new(),
            statement: statement.into(),
            param_formats: vec![],
            params: vec![],
            result_formats: vec![],
        }
        .to_bytes()
        .to_vec(),
        Execute {
            portal: String::new(),
            max_rows: 0,
        }
        .to_bytes()
        .to_vec(),
    ]
}

/// Parsing a taken statement name again with harmless text fails at the server, which keeps
/// the old statement: executing the name must be judged on the old text too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_name_parsed_again_is_judged_on_every_text_it_may_run() {
    let pg = Pg::start();
    pg.psql_direct("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)");
    let gate = PrefixGate::default().deny("delete", "no deletes");
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(gate))).await;
    let (mut s, mut buf) = raw_startup(shim.port()).await;

    let (types, error) = batch(&mut s, &mut buf, &[parse("s1", "DELETE FROM t")]).await;
    assert_eq!((types.as_str(), error.is_none()), ("1Z", true));
    let (types, error) = batch(&mut s, &mut buf, &[parse("s1", "SELECT 1")]).await;
    assert_eq!(types, "EZ");
    assert_eq!(error.expect("error").0.code(), Some("42P05"), "name taken");

    let (types, error) = batch(&mut s, &mut buf, &bind_execute("s1")).await;
    let error = error.unwrap_or_else(|| panic!("the old DELETE ran: {types}"));
    assert_eq!(error.0.code(), Some("42501"));
    assert_eq!(error.0.message(), Some("no deletes"));
    assert_eq!(pg.psql_direct("SELECT count(*) FROM t").trim(), "2");

    // Once closed, the name is free and stands for its new text alone.
    let close = b"C\0\0\0\x08Ss1\0".to_vec();
    let (types, _) = batch(&mut s, &mut buf, &[close, parse("s1", "SELECT 1")]).await;
    assert_eq!(types, "31Z");
    let (types, error) = batch(&mut s, &mut buf, &bind_execute("s1")).await;
    assert!(error.is_none(), "{types}: {error:?}");
    assert_eq!(types, "2DCZ");
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_reaches_the_right_backend() {
    let pg = Pg::start();
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(PrefixGate::default()))).await;
    let a = connect(shim.port(), "postgres", None).await;
    let b = connect(shim.port(), "postgres", None).await;
    let token_b = b.cancel_token();
    let slow_a = tokio::spawn(async move { a.simple_query("SELECT pg_sleep(3)").await });
    let slow_b = tokio::spawn(async move { b.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    token_b.cancel_query(NoTls).await.expect("cancel sent");
    let err = slow_b.await.expect("task").expect_err("b canceled");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"));
    assert!(started.elapsed() < Duration::from_secs(5));
    slow_a.await.expect("task").expect("a was not canceled");
    shim.stop().await;
}

async fn read_until(s: &mut TcpStream, buf: &mut BytesMut, stop: u8) -> Vec<bytes::Bytes> {
    let mut frames = Vec::new();
    loop {
        let f = next_frame(s, buf).await;
        let done = f[0] == stop;
        frames.push(f);
        if done {
            return frames;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_execute_answers_at_flush_and_resumes_after_sync() {
    let pg = Pg::start();
    pg.psql_direct("CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    let gate = PrefixGate::default().deny("delete", "no deletes");
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(gate))).await;
    let (mut s, mut buf) = raw_startup(shim.port()).await;
    let mut batch = parse("", "DELETE FROM t");
    batch.extend(bind_execute("").concat());
    batch.extend_from_slice(b"H\0\0\0\x04");
    s.write_all(&batch).await.expect("execute and flush");
    let frames = read_until(&mut s, &mut buf, b'E').await;
    let tags: Vec<char> = frames.iter().map(|f| f[0] as char).collect();
    assert_eq!(
        tags,
        vec!['1', '2', 'E'],
        "the error arrives at Flush, before any Sync"
    );
    let err = ErrorResponse::from_bytes(&frames[2][5..]).expect("error");
    assert_eq!(err.0.message(), Some("no deletes"));
    s.write_all(&bind_execute("")[1])
        .await
        .expect("ignored execute");
    s.write_all(b"S\0\0\0\x04").await.expect("sync");
    let frames = read_until(&mut s, &mut buf, b'Z').await;
    assert_eq!(
        frames.len(),
        1,
        "messages after the error are skipped until Sync"
    );
    assert_eq!(pg.psql_direct("SELECT count(*) FROM t").trim(), "1");
    shim.stop().await;
}

/// A simple-protocol query, answered up to ReadyForQuery: the type bytes and the first
/// error.
async fn query(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    sql: &str,
) -> (String, Option<ErrorResponse>) {
    let message = dbward_agent::protocol::postgres::Query { sql: sql.into() }.to_bytes();
    s.write_all(&message).await.expect("send query");
    answers(s, buf).await
}

/// A statement made with SQL `PREPARE` is judged by its text when run, through the
/// protocol (Bind/Execute) and through SQL `EXECUTE`, and by its new text once deallocated
/// and prepared again; one made by code in the server is unknown to the shim and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_prepared_in_sql_are_judged_by_their_text() {
    let pg = Pg::start();
    pg.psql_direct("CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    let gate = PrefixGate::default().deny("delete", "no deletes");
    let shim = start_shim(&pg, ShimOptions::new(Arc::new(gate))).await;
    let (mut s, mut buf) = raw_startup(shim.port()).await;
    let (types, error) = query(&mut s, &mut buf, "PREPARE sneaky AS DELETE FROM t").await;
    assert!(error.is_none(), "{types}: {error:?}");

    let refused = |error: Option<ErrorResponse>| {
        let error = error.expect("refused");
        assert_eq!(error.0.code(), Some("42501"));
        error.0.message().unwrap_or_default().to_owned()
    };
    let (_, error) = batch(&mut s, &mut buf, &bind_execute("sneaky")).await;
    assert_eq!(refused(error), "no deletes", "protocol Execute");
    let (_, error) = query(&mut s, &mut buf, "EXECUTE sneaky").await;
    assert_eq!(refused(error), "no deletes", "SQL EXECUTE");
    assert_eq!(pg.psql_direct("SELECT count(*) FROM t").trim(), "1");

    // Prepared again under the same name after DEALLOCATE: judged by the new text.
    let (types, error) = query(
        &mut s,
        &mut buf,
        "DEALLOCATE sneaky; PREPARE sneaky AS SELECT id FROM t",
    )
    .await;
    assert!(error.is_none(), "{types}: {error:?}");
    let (types, error) = batch(&mut s, &mut buf, &bind_execute("sneaky")).await;
    assert!(error.is_none(), "{types}: {error:?}");
    assert_eq!(types, "2DCZ");

    // A statement made by code running in the server is unknown to the shim: refused.
    let (_, error) = query(
        &mut s,
        &mut buf,
        "DO $$ BEGIN EXECUTE 'PREPARE ghost AS DELETE FROM t'; END $$",
    )
    .await;
    assert!(error.is_none(), "{error:?}");
    let (_, error) = batch(&mut s, &mut buf, &bind_execute("ghost")).await;
    let message = refused(error);
    assert!(message.contains("did not see parsed"), "{message}");
    assert_eq!(pg.psql_direct("SELECT count(*) FROM t").trim(), "1");
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_hold_expires_with_request_id_and_session_goes_on() {
    let pg = Pg::start();
    pg.psql_direct("CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    let store = Arc::new(LocalApprovals::default());
    let gate = PrefixGate::default().hold("update", Duration::from_secs(1), false);
    let mut opts = ShimOptions::new(Arc::new(gate));
    opts.approvals = store.clone();
    let shim = start_shim(&pg, opts).await;
    let client = connect(shim.port(), "postgres", None).await;
    let started = Instant::now();
    let err = client
        .execute("UPDATE t SET id = $1", &[&7_i32])
        .await
        .expect_err("expired");
    let db = err.as_db_error().expect("server-style error");
    assert_eq!(db.code().code(), "42501");
    assert!(
        db.message().contains("expired after 1s"),
        "{}",
        db.message()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(store.list().is_empty());
    assert_eq!(pg.psql_direct("SELECT id FROM t").trim(), "1");
    let row = client
        .query_one("SELECT 1::int4", &[])
        .await
        .expect("usable");
    assert_eq!(row.get::<_, i32>(0), 1);
    shim.stop().await;
}
