//! The approval API end to end over HTTP on loopback with SQLite: rules, signed
//! decisions, long-poll, expiry, races, break-glass, event ingest, bad input.

mod util;

use std::time::Duration;

use dbward_approval_api::{
    Binding, ClientError, DecisionError, EventBatch, Outcome, RequestStatus, Vote,
};
use reqwest::Method;
use serde_json::json;
use time::OffsetDateTime;
use util::*;

fn code_of(err: &ClientError) -> (u16, String) {
    match err {
        ClientError::Status { status, code, .. } => (status.as_u16(), code.clone()),
        other => panic!("expected an HTTP error status, got {other}"),
    }
}

#[tokio::test]
async fn quorum_of_two_distinct_humans_yields_a_decision_the_agent_verifies_once() {
    let h = start("").await;
    let req = request("DELETE FROM orders WHERE created < now()", 2, 60);
    let agent = h.agent();
    let filed = agent.file_request(&req).await.expect("file");
    assert_eq!(filed.status, RequestStatus::Pending);
    assert_eq!(
        agent.file_request(&req).await.expect("idempotent").status,
        RequestStatus::Pending
    );

    assert!(
        agent
            .wait_decision(req.request_id, Duration::ZERO)
            .await
            .expect("poll")
            .is_none()
    );
    let waiter = {
        let agent = agent.clone();
        let id = req.request_id;
        tokio::spawn(async move { agent.wait_decision(id, Duration::from_secs(20)).await })
    };
    let first = h
        .approver("alice")
        .vote(req.request_id, Vote::Approve, Some("looks right"))
        .await
        .expect("alice");
    assert_eq!(
        (first.status, first.approvals, first.quorum),
        (RequestStatus::Pending, 1, 2)
    );
    let second = h
        .approver("bob")
        .vote(req.request_id, Vote::Approve, None)
        .await
        .expect("bob");
    assert_eq!(second.status, RequestStatus::Approved);

    let decision = waiter.await.expect("join").expect("poll").expect("decided");
    assert_eq!(decision.outcome, Outcome::Approved);
    assert_eq!(
        decision.approvers,
        vec!["alice".to_string(), "bob".to_string()]
    );
    let verifier = h.verifier();
    let binding = Binding {
        request_id: req.request_id,
        host: "db1",
        session_id: &req.session_id,
        statement_sha256: &req.statement_sha256,
    };
    verifier
        .verify(&decision, &binding, OffsetDateTime::now_utc())
        .expect("genuine decision");
    assert!(matches!(
        verifier.verify(&decision, &binding, OffsetDateTime::now_utc()),
        Err(DecisionError::Replayed { .. })
    ));
    let other_session = Binding {
        session_id: "another-session",
        ..binding
    };
    assert!(matches!(
        h.verifier()
            .verify(&decision, &other_session, OffsetDateTime::now_utc()),
        Err(DecisionError::WrongSession { .. })
    ));
    let listed = h
        .approver("alice")
        .list(Some(RequestStatus::Approved), Some("created < now"))
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].votes.len(), 2);
}

#[tokio::test]
async fn ineligible_voters_are_refused_audited_and_change_nothing() {
    let h = start("").await;
    let req = request("DROP TABLE orders", 1, 60);
    h.agent().file_request(&req).await.expect("file");
    let cases = [
        ("claude-bot", 403, "not_human"),
        ("deploybot", 403, "not_human"),
        ("olivia", 403, "owner_approval"),
        ("eve", 403, "not_in_approver_group"),
    ];
    for (voter, status, code) in cases {
        let err = h
            .approver(voter)
            .vote(req.request_id, Vote::Approve, None)
            .await
            .expect_err(voter);
        assert_eq!(code_of(&err), (status, code.to_string()), "{voter}");
        assert!(
            audited(&h, code, status.into()).await,
            "{voter}: no audit record for {code}"
        );
    }
    let mut own = request("DROP TABLE orders", 1, 60);
    own.requester.principal = "root-admin".into();
    own.requester.owner = None;
    h.agent().file_request(&own).await.expect("file");
    let err = h
        .approver("root-admin")
        .vote(own.request_id, Vote::Approve, None)
        .await
        .expect_err("self");
    assert_eq!(code_of(&err), (403, "self_approval".to_string()));
    for id in [req.request_id, own.request_id] {
        let view = h.approver("alice").get(id).await.expect("get");
        assert_eq!(view.status, RequestStatus::Pending);
        assert!(view.votes.is_empty(), "refused votes must not be recorded");
    }
}

#[tokio::test]
async fn double_vote_counts_once_and_first_deny_ends_with_its_reason() {
    let h = start("").await;
    let req = request("TRUNCATE orders", 2, 60);
    h.agent().file_request(&req).await.expect("file");
    h.approver("alice")
        .vote(req.request_id, Vote::Approve, None)
        .await
        .expect("alice");
    let err = h
        .approver("alice")
        .vote(req.request_id, Vote::Approve, None)
        .await
        .expect_err("twice");
    assert_eq!(code_of(&err), (409, "double_vote".to_string()));
    assert!(audited(&h, "double_vote", 409).await);
    let out = h
        .approver("bob")
        .vote(
            req.request_id,
            Vote::Deny,
            Some("not during business hours"),
        )
        .await
        .expect("deny");
    assert_eq!(out.status, RequestStatus::Denied);
    let d = h
        .agent()
        .wait_decision(req.request_id, Duration::ZERO)
        .await
        .expect("poll")
        .expect("decided");
    assert_eq!(d.outcome, Outcome::Denied);
    assert_eq!(d.reason, "not during business hours");
    assert_eq!(d.approvers, vec!["bob".to_string()]);
    let err = h
        .approver("root-admin")
        .vote(req.request_id, Vote::Approve, None)
        .await
        .expect_err("after end");
    assert_eq!(code_of(&err), (409, "not_pending".to_string()));
}

#[tokio::test]
async fn concurrent_approve_and_deny_end_in_exactly_one_recorded_outcome() {
    let h = start("").await;
    for round in 0..15 {
        let req = request(&format!("DELETE FROM t{round}"), 1, 60);
        h.agent().file_request(&req).await.expect("file");
        let a = h.approver("alice");
        let b = h.approver("bob");
        let id = req.request_id;
        let (ra, rb) = tokio::join!(
            async move { a.vote(id, Vote::Approve, None).await },
            async move { b.vote(id, Vote::Deny, Some("race")).await },
        );
        let winners = [ra.is_ok(), rb.is_ok()].iter().filter(|w| **w).count();
        assert_eq!(
            winners, 1,
            "round {round}: exactly one vote must win: {ra:?} {rb:?}"
        );
        let loser = ra.as_ref().err().or(rb.as_ref().err()).expect("one loser");
        assert_eq!(
            code_of(loser),
            (409, "not_pending".to_string()),
            "round {round}"
        );
        let view = h.approver("alice").get(id).await.expect("get");
        let want = if ra.is_ok() {
            RequestStatus::Approved
        } else {
            RequestStatus::Denied
        };
        assert_eq!(view.status, want, "round {round}");
        assert_eq!(
            view.votes.len(),
            1,
            "round {round}: the losing vote is not recorded"
        );
        let d = view.decision.expect("decision");
        assert_eq!(
            d.outcome,
            if ra.is_ok() {
                Outcome::Approved
            } else {
                Outcome::Denied
            }
        );
    }
}

#[tokio::test]
async fn pending_request_expires_and_the_waiting_agent_gets_a_signed_expiry() {
    let h = start("").await;
    let req = request("DELETE FROM orders", 1, 2);
    h.agent().file_request(&req).await.expect("file");
    let started = std::time::Instant::now();
    let d = h
        .agent()
        .wait_decision(req.request_id, Duration::from_secs(10))
        .await
        .expect("poll")
        .expect("expired");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "expiry took {:?}",
        started.elapsed()
    );
    assert_eq!(d.outcome, Outcome::Expired);
    d.verify(&h.running.service.verifying_key())
        .expect("signed");
    let pending = h
        .approver("alice")
        .list(Some(RequestStatus::Pending), None)
        .await
        .expect("list");
    assert!(pending.is_empty(), "stale requests leave the inbox");
    let err = h
        .approver("alice")
        .vote(req.request_id, Vote::Approve, None)
        .await
        .expect_err("late");
    assert_eq!(code_of(&err).0, 409);
}

#[tokio::test]
async fn sweeper_expires_requests_nobody_waits_for() {
    let h = start("").await;
    let req = request("DELETE FROM orders", 1, 1);
    h.agent().file_request(&req).await.expect("file");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let view = h.approver("alice").get(req.request_id).await.expect("get");
    assert_eq!(view.status, RequestStatus::Expired);
}

#[tokio::test]
async fn break_glass_self_authorises_with_reason_and_queues_review() {
    let h = start("").await;
    let mut req = request("VACUUM FULL orders", 2, 60);
    req.requester.principal = "oncall".into();
    req.requester.owner = None;
    h.agent().file_request(&req).await.expect("file");
    let err = h
        .approver("oncall")
        .break_glass(req.request_id, " ")
        .await
        .expect_err("no reason");
    assert_eq!(code_of(&err), (400, "reason_required".to_string()));
    let err = h
        .approver("alice")
        .break_glass(req.request_id, "outage")
        .await
        .expect_err("not emergency");
    assert_eq!(code_of(&err), (403, "not_in_emergency_group".to_string()));
    let out = h
        .approver("oncall")
        .break_glass(req.request_id, "disk full, site down")
        .await
        .expect("break glass");
    assert_eq!(out.status, RequestStatus::Approved);
    let d = h
        .agent()
        .wait_decision(req.request_id, Duration::ZERO)
        .await
        .expect("poll")
        .expect("decided");
    assert_eq!(
        (d.outcome, d.approvers.clone()),
        (Outcome::Approved, vec!["oncall".to_string()])
    );
    assert!(d.reason.contains("disk full, site down"));
    let queue = h.approver("alice").list(None, None).await.expect("list");
    assert!(queue[0].break_glass);
    let (status, reviews) = raw(
        Method::GET,
        &format!("{}/api/v1/reviews", h.url()),
        Some(&token("alice")),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(reviews["requests"].as_array().map(Vec::len), Some(1));
    let review_url = format!("{}/api/v1/requests/{}/review", h.url(), req.request_id);
    let body = json!({"comment": "justified"}).to_string().into_bytes();
    let (status, _) = raw(
        Method::POST,
        &review_url,
        Some(&token("oncall")),
        &[("content-type", "application/json")],
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 403, "who broke the glass cannot review it");
    let (status, _) = raw(
        Method::POST,
        &review_url,
        Some(&token("bob")),
        &[("content-type", "application/json")],
        Some(body),
    )
    .await;
    assert_eq!(status, 200);
    let (_, reviews) = raw(
        Method::GET,
        &format!("{}/api/v1/reviews", h.url()),
        Some(&token("alice")),
        &[],
        None,
    )
    .await;
    assert_eq!(reviews["requests"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn event_batches_store_each_id_once_plain_or_gzip() {
    let h = start("").await;
    let events: Vec<_> = (1..=5).map(|i| json!({"seq": i, "id": format!("db1:{i}"), "type": "statement", "sql": format!("SELECT {i}")})).collect();
    let batch = EventBatch {
        host: "db1".into(),
        events: events[..3].to_vec(),
    };
    let r = h.agent().send_events(&batch, false).await.expect("plain");
    assert_eq!((r.accepted, r.duplicates), (3, 0));
    let replay = EventBatch {
        host: "db1".into(),
        events: events.clone(),
    };
    let r = h.agent().send_events(&replay, true).await.expect("gzip");
    assert_eq!((r.accepted, r.duplicates), (2, 3));
    let r = h.agent().send_events(&replay, true).await.expect("again");
    assert_eq!((r.accepted, r.duplicates), (0, 5));
    let (status, found) = raw(
        Method::GET,
        &format!("{}/api/v1/events?host=db1&q=select%204", h.url()),
        Some(&token("alice")),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(found["events"].as_array().map(Vec::len), Some(1));
    let (_, all) = raw(
        Method::GET,
        &format!("{}/api/v1/events?host=db1", h.url()),
        Some(&token("alice")),
        &[],
        None,
    )
    .await;
    assert_eq!(all["events"].as_array().map(Vec::len), Some(5));
    let wrong = EventBatch {
        host: "db2".into(),
        events: events.clone(),
    };
    let err = h
        .agent()
        .send_events(&wrong, false)
        .await
        .expect_err("other host");
    assert_eq!(code_of(&err), (403, "host_mismatch".to_string()));
}

#[tokio::test]
async fn bad_input_gets_a_clear_status_an_audit_record_and_changes_nothing() {
    let h = start("").await;
    let req = request("DELETE FROM orders", 1, 60);
    h.agent().file_request(&req).await.expect("file");
    let base = h.url();
    let json_ct = ("content-type", "application/json");
    let votes = format!("{base}/api/v1/requests/{}/votes", req.request_id);
    let unknown = format!("{base}/api/v1/requests/{}/votes", uuid::Uuid::new_v4());
    let alice = token("alice");
    let vote = json!({"vote": "approve"}).to_string().into_bytes();
    let mut other_host = request("SELECT 1", 1, 60);
    other_host.host = "db2".into();
    let mut bad_hash = request("DELETE FROM x", 1, 60);
    bad_hash.statement_sha256 = "00".repeat(32);
    let mut conflicting = req.clone();
    conflicting.statement = "DROP DATABASE shop".into();
    conflicting.statement_sha256 = dbward_approval_api::statement_sha256(&conflicting.statement);
    type Case<'a> = (
        &'a str,
        Method,
        String,
        Option<&'a str>,
        Option<Vec<u8>>,
        u16,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "no token",
            Method::POST,
            votes.clone(),
            None,
            Some(vote.clone()),
            401,
            "unauthenticated",
        ),
        (
            "unknown token",
            Method::POST,
            votes.clone(),
            Some("nope-nope-nope-nope"),
            Some(vote.clone()),
            401,
            "unauthenticated",
        ),
        (
            "host votes",
            Method::POST,
            votes.clone(),
            Some(DB1_TOKEN),
            Some(vote.clone()),
            403,
            "forbidden",
        ),
        (
            "approver files",
            Method::POST,
            format!("{base}/api/v1/requests"),
            Some(&alice),
            Some(serde_json::to_vec(&req).expect("json")),
            403,
            "forbidden",
        ),
        (
            "malformed json",
            Method::POST,
            votes.clone(),
            Some(&alice),
            Some(b"{\"vote\": ".to_vec()),
            400,
            "malformed_json",
        ),
        (
            "unknown field",
            Method::POST,
            votes.clone(),
            Some(&alice),
            Some(br#"{"vote":"approve","admin":true}"#.to_vec()),
            400,
            "malformed_json",
        ),
        (
            "oversized",
            Method::POST,
            votes.clone(),
            Some(&alice),
            Some(vec![b' '; 70_000]),
            413,
            "payload_too_large",
        ),
        (
            "unknown request",
            Method::POST,
            unknown,
            Some(&alice),
            Some(vote.clone()),
            404,
            "unknown_request",
        ),
        (
            "bad id",
            Method::POST,
            format!("{base}/api/v1/requests/xyz/votes"),
            Some(&alice),
            Some(vote.clone()),
            400,
            "bad_request_id",
        ),
        (
            "other host's request",
            Method::POST,
            format!("{base}/api/v1/requests"),
            Some(DB1_TOKEN),
            Some(serde_json::to_vec(&other_host).expect("json")),
            403,
            "host_mismatch",
        ),
        (
            "hash mismatch",
            Method::POST,
            format!("{base}/api/v1/requests"),
            Some(DB1_TOKEN),
            Some(serde_json::to_vec(&bad_hash).expect("json")),
            422,
            "invalid_request",
        ),
        (
            "id reuse",
            Method::POST,
            format!("{base}/api/v1/requests"),
            Some(DB1_TOKEN),
            Some(serde_json::to_vec(&conflicting).expect("json")),
            409,
            "conflict",
        ),
        (
            "decision of other host",
            Method::GET,
            format!("{base}/api/v1/requests/{}/decision", req.request_id),
            Some(DB2_TOKEN),
            None,
            403,
            "host_mismatch",
        ),
        (
            "bad gzip",
            Method::POST,
            format!("{base}/api/v1/events"),
            Some(DB1_TOKEN),
            Some(b"garbage".to_vec()),
            400,
            "bad_gzip",
        ),
    ];
    for (name, method, url, tok, body, status, code) in cases {
        let gzip = name == "bad gzip";
        let mut headers = vec![json_ct];
        if gzip {
            headers.push(("content-encoding", "gzip"));
        }
        let (got, answer) = raw(method, &url, tok, &headers, body).await;
        assert_eq!(got, status, "{name}: {answer}");
        assert_eq!(answer["code"], code, "{name}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name}: no message"
        );
        assert!(
            audited(&h, code, status.into()).await,
            "{name}: not audited"
        );
    }
    let view = h.approver("alice").get(req.request_id).await.expect("get");
    assert_eq!(view.status, RequestStatus::Pending);
    assert!(view.votes.is_empty());
    assert_eq!(view.request.statement, "DELETE FROM orders");
    let (status, trail) = raw(
        Method::GET,
        &format!("{base}/api/v1/audit?limit=500"),
        Some(&alice),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let rejected = trail["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["kind"] == "rejected")
        .count();
    assert!(
        rejected >= 14,
        "the audit API shows every refusal, got {rejected}"
    );
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let h = start("").await;
    for (method, path) in dbward_approver::api::openapi::ROUTES {
        let url = format!(
            "{}{}",
            h.url(),
            path.replace("{id}", &uuid::Uuid::new_v4().to_string())
        );
        let method = if *method == "get" {
            Method::GET
        } else {
            Method::POST
        };
        let (status, body) = raw(method, &url, None, &[], None).await;
        assert!(
            status != 404 || body.get("code").is_some_and(|c| c != "http"),
            "{path} not routed ({status})"
        );
        assert_ne!(status, 405, "{path}: method not routed");
    }
    let (status, doc) = raw(
        Method::GET,
        &format!("{}/openapi.json", h.url()),
        None,
        &[],
        None,
    )
    .await;
    assert_eq!((status, doc["openapi"].as_str()), (200, Some("3.1.0")));
}
