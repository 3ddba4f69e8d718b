//! Audit event ingest from agents (`POST /api/v1/events`, gzip allowed, each event id
//! stored once) and search over stored events (`GET /api/v1/events`).

use std::io::Read;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use dbward_approval_api::{EventBatch, IngestResult};
use serde::Deserialize;
use time::OffsetDateTime;

use super::error::Failure;
use super::{AppState, Body, parse_json};
use crate::service::ServiceError;

/// Inflates a gzip body, refusing more than `limit` bytes of output (gzip bombs).
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "bad_gzip",
                format!("Content-Encoding: gzip body does not inflate: {e}"),
            )
        })?;
    if out.len() > limit {
        return Err(Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "event batch inflates beyond max_event_batch_bytes ({limit}); send smaller batches"
            ),
        ));
    }
    Ok(out)
}

/// Splits a batch into `(id, type, json)` rows; every event must be an object with a
/// non-empty string `id`.
pub fn rows(batch: &EventBatch) -> Result<Vec<(String, String, String)>, String> {
    batch
        .events
        .iter()
        .enumerate()
        .map(|(i, ev)| {
            let id = ev
                .get("id")
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("event #{i} has no string \"id\""))?;
            let kind = ev.get("type").and_then(|v| v.as_str()).unwrap_or("unknown");
            Ok((id.to_string(), kind.to_string(), ev.to_string()))
        })
        .collect()
}

/// `POST /api/v1/events` (host).
pub async fn ingest(
    State(st): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<IngestResult>, Failure> {
    let host = st.host(&headers).await?;
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let json = if gzip {
        gunzip(&body, st.config.max_event_batch_bytes).map_err(|f| f.by(&host))?
    } else {
        body.to_vec()
    };
    let batch: EventBatch = parse_json(&json).map_err(|f| f.by(&host))?;
    if batch.host != host {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "host_mismatch",
            format!(
                "batch names host {:?} but the token belongs to host {host:?}",
                batch.host
            ),
        )
        .by(&host));
    }
    let rows = rows(&batch)
        .map_err(|e| Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_event", e).by(&host))?;
    let (accepted, duplicates) = st
        .svc
        .store
        .insert_events(&host, &rows, OffsetDateTime::now_utc())
        .await
        .map_err(|e| Failure::from(ServiceError::from(e)).by(&host))?;
    tracing::debug!(%host, accepted, duplicates, "event batch stored");
    Ok(Json(IngestResult {
        accepted,
        duplicates,
    }))
}

/// Query of the event search.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    /// Only this host.
    #[serde(default)]
    host: Option<String>,
    /// Free text within the event JSON.
    #[serde(default)]
    q: Option<String>,
    /// Cursor: only events received after this (microseconds, from `next`).
    #[serde(default)]
    after: Option<i64>,
    /// Most events (default 200, at most 2000).
    #[serde(default)]
    limit: Option<i64>,
}

/// `GET /api/v1/events` (approver): events oldest first, with a `next` cursor for a
/// live stream.
pub async fn search(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SearchQuery>,
) -> Result<Json<serde_json::Value>, Failure> {
    let who = st.approver(&headers).await?;
    let after = q.after.unwrap_or(-1);
    let found = st
        .svc
        .store
        .list_events(
            q.host.as_deref().filter(|h| !h.is_empty()),
            q.q.as_deref(),
            after,
            q.limit.unwrap_or(200).clamp(1, 2000),
        )
        .await
        .map_err(|e| Failure::from(ServiceError::from(e)).by(&who))?;
    let next = found.last().map_or(after, |(at, _)| *at);
    let events: Vec<_> = found.into_iter().map(|(_, ev)| ev).collect();
    Ok(Json(serde_json::json!({"events": events, "next": next})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_without_a_string_id_are_refused_with_their_position() {
        let batch = |events| EventBatch {
            host: "db1".into(),
            events,
        };
        assert_eq!(
            rows(&batch(vec![json!({"id": "db1:1", "type": "statement"})])).expect("ok")[0].1,
            "statement"
        );
        for (events, want) in [
            (vec![json!({"id": "a"}), json!({"seq": 2})], "event #1"),
            (vec![json!({"id": 3})], "event #0"),
            (vec![json!({"id": ""})], "event #0"),
            (vec![json!("text")], "event #0"),
        ] {
            assert!(rows(&batch(events)).expect_err(want).contains(want));
        }
    }

    #[test]
    fn gzip_bombs_and_garbage_are_refused() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b'a'; 100_000]).expect("write");
        let bomb = enc.finish().expect("gzip");
        assert_eq!(
            gunzip(&bomb, 1000).expect_err("bomb").status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(gunzip(&bomb, 100_000).expect("fits").len(), 100_000);
        assert_eq!(
            gunzip(b"not gzip", 1000).expect_err("garbage").code,
            "bad_gzip"
        );
    }
}
