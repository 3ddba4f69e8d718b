//! PostgreSQL storage: the same rules on a shared database, and two approver replicas
//! sharing one PostgreSQL started by the test.

mod util;

use std::path::Path;
use std::time::Duration;

use dbward_approval_api::{Binding, EventBatch, Outcome, RequestStatus, Vote};
use dbward_approver::config::Config;
use serde_json::json;
use time::OffsetDateTime;
use util::postgres::Postgres;
use util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_state_and_decide_each_request_exactly_once() {
    let pg = tokio::task::spawn_blocking(Postgres::start)
        .await
        .expect("pg");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_text(dir.path(), &pg.url, "");
    let a =
        dbward_approver::server::start(Config::parse(&text, Path::new("a.toml")).expect("config"))
            .await
            .expect("replica a");
    let b =
        dbward_approver::server::start(Config::parse(&text, Path::new("b.toml")).expect("config"))
            .await
            .expect("replica b");
    assert_eq!(
        a.service.verifying_key(),
        b.service.verifying_key(),
        "replicas share the signing key"
    );
    let client = |r: &dbward_approver::server::Running, tok: &str| {
        dbward_approval_api::ApproverClient::new(&r.url(), tok).expect("client")
    };

    // Filed on A, long-polled on B, approved on A by two people: B's waiter wakes.
    let req = request("DELETE FROM orders WHERE id = 1", 2, 60);
    client(&a, DB1_TOKEN)
        .file_request(&req)
        .await
        .expect("file on a");
    let waiter = {
        let agent = client(&b, DB1_TOKEN);
        let id = req.request_id;
        tokio::spawn(async move { agent.wait_decision(id, Duration::from_secs(20)).await })
    };
    client(&a, &token("alice"))
        .vote(req.request_id, Vote::Approve, None)
        .await
        .expect("alice on a");
    let err = client(&b, &token("alice"))
        .vote(req.request_id, Vote::Approve, None)
        .await
        .expect_err("alice again on b");
    assert!(err.to_string().contains("double_vote"), "{err}");
    client(&b, &token("bob"))
        .vote(req.request_id, Vote::Approve, None)
        .await
        .expect("bob on b");
    let started = std::time::Instant::now();
    let d = waiter.await.expect("join").expect("poll").expect("decided");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "replica b woke after {:?}",
        started.elapsed()
    );
    assert_eq!(
        (d.outcome, d.approvers.clone()),
        (
            Outcome::Approved,
            vec!["alice".to_string(), "bob".to_string()]
        )
    );
    dbward_approval_api::DecisionVerifier::new(a.service.verifying_key())
        .verify(
            &d,
            &Binding {
                request_id: req.request_id,
                host: "db1",
                session_id: &req.session_id,
                statement_sha256: &req.statement_sha256,
            },
            OffsetDateTime::now_utc(),
        )
        .expect("verifies");

    // Approve on A races deny on B: exactly one outcome, every time.
    for round in 0..10 {
        let req = request(&format!("DELETE FROM t{round}"), 1, 60);
        client(&a, DB1_TOKEN)
            .file_request(&req)
            .await
            .expect("file");
        let (ca, cb) = (client(&a, &token("alice")), client(&b, &token("bob")));
        let id = req.request_id;
        let (ra, rb) = tokio::join!(
            async move { ca.vote(id, Vote::Approve, None).await },
            async move { cb.vote(id, Vote::Deny, Some("race")).await },
        );
        assert_eq!(
            usize::from(ra.is_ok()) + usize::from(rb.is_ok()),
            1,
            "round {round}: {ra:?} / {rb:?}"
        );
        let view_a = client(&a, &token("alice")).get(id).await.expect("view a");
        let view_b = client(&b, &token("alice")).get(id).await.expect("view b");
        assert_eq!(
            view_a.status,
            if ra.is_ok() {
                RequestStatus::Approved
            } else {
                RequestStatus::Denied
            }
        );
        assert_eq!(
            view_a.decision, view_b.decision,
            "both replicas serve the one decision"
        );
        assert_eq!(view_a.votes.len(), 1);
    }

    // Event ids are stored once across replicas.
    let events: Vec<_> = (1..=4)
        .map(|i| json!({"id": format!("db1:{i}"), "type": "statement"}))
        .collect();
    let r = client(&a, DB1_TOKEN)
        .send_events(
            &EventBatch {
                host: "db1".into(),
                events: events[..2].to_vec(),
            },
            true,
        )
        .await
        .expect("a");
    assert_eq!((r.accepted, r.duplicates), (2, 0));
    let r = client(&b, DB1_TOKEN)
        .send_events(
            &EventBatch {
                host: "db1".into(),
                events,
            },
            false,
        )
        .await
        .expect("b");
    assert_eq!((r.accepted, r.duplicates), (2, 2));

    // Listing, search and the audit trail run the same SQL on PostgreSQL.
    let approved = client(&b, &token("alice"))
        .list(Some(RequestStatus::Approved), Some("where id = 1"))
        .await
        .expect("list");
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0].request.request_id, req.request_id);
    let all = client(&a, &token("alice"))
        .list(None, None)
        .await
        .expect("list all");
    assert_eq!(all.len(), 11);
    let (status, found) = raw(
        reqwest::Method::GET,
        &format!("{}/api/v1/events?host=db1&q=db1:3", b.url()),
        Some(&token("alice")),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(found["events"].as_array().map(Vec::len), Some(1));
    let trail = a.service.store.list_audit(100).await.expect("audit");
    assert!(
        trail
            .iter()
            .any(|r| r.kind == "rejected" && r.detail.contains("double_vote")),
        "refusals are audited in PostgreSQL"
    );

    // Break-glass and its review queue.
    let mut urgent = request("VACUUM FULL orders", 2, 60);
    urgent.requester.principal = "oncall".into();
    urgent.requester.owner = None;
    client(&a, DB1_TOKEN)
        .file_request(&urgent)
        .await
        .expect("file");
    client(&b, &token("oncall"))
        .break_glass(urgent.request_id, "disk full")
        .await
        .expect("break glass");
    let queue = a
        .service
        .store
        .unreviewed_break_glass()
        .await
        .expect("queue");
    assert_eq!(queue.len(), 1);
    b.service
        .review(urgent.request_id, "bob", "justified")
        .await
        .expect("review");
    assert!(
        a.service
            .store
            .unreviewed_break_glass()
            .await
            .expect("queue")
            .is_empty()
    );

    // A request expires on the shared store and both replicas report it.
    let short = request("DELETE FROM orders", 1, 1);
    client(&b, DB1_TOKEN)
        .file_request(&short)
        .await
        .expect("file");
    let d = client(&a, DB1_TOKEN)
        .wait_decision(short.request_id, Duration::from_secs(10))
        .await
        .expect("poll")
        .expect("expired");
    assert_eq!(d.outcome, Outcome::Expired);

    a.stop().await;
    b.stop().await;
    drop(pg);
}
