//! Persistent state in SQLite (default) or PostgreSQL (shared by replicas), through
//! sqlx's `Any` driver so both run the same SQL.
//!
//! Times are Unix microseconds (`BIGINT`). Every write transaction starts with a write,
//! so SQLite takes its write lock up front and PostgreSQL locks the request row: two
//! votes on one request are serialised and exactly one outcome is recorded.

use dbward_approval_api::{ApprovalRequest, RequestStatus, SignedDecision, Vote, VoteRecord};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::rules::CastVote;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("storage {op}: {source}")]
    Db {
        /// Operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: sqlx::Error,
    },
    /// A stored JSON column did not parse (corruption or a newer schema).
    #[error("storage {op}: stored JSON is unreadable: {detail}")]
    Corrupt {
        /// Operation.
        op: &'static str,
        /// Parser message.
        detail: String,
    },
}

fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Db { op, source }
}

/// Unix microseconds of `t`.
pub fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

/// Time from Unix microseconds.
pub fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS requests (
        request_id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        requester TEXT NOT NULL,
        statement TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        break_glass BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        decided_at BIGINT,
        decided_by TEXT,
        decision TEXT,
        reviewed_by TEXT,
        review_comment TEXT)",
    "CREATE INDEX IF NOT EXISTS requests_status ON requests (status, expires_at)",
    "CREATE INDEX IF NOT EXISTS requests_decided ON requests (decided_at)",
    "CREATE TABLE IF NOT EXISTS votes (
        request_id TEXT NOT NULL,
        principal TEXT NOT NULL,
        vote TEXT NOT NULL,
        comment TEXT,
        channel TEXT NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (request_id, principal))",
    "CREATE TABLE IF NOT EXISTS events (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        received_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS events_host ON events (host, received_at)",
    "CREATE TABLE IF NOT EXISTS audit (
        id TEXT PRIMARY KEY,
        at BIGINT NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT,
        request_id TEXT,
        status BIGINT NOT NULL,
        detail TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS channel_messages (
        request_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        reference TEXT NOT NULL,
        PRIMARY KEY (request_id, channel))",
    "CREATE TABLE IF NOT EXISTS seen_nonces (
        nonce TEXT PRIMARY KEY,
        at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS web_sessions (
        id TEXT PRIMARY KEY,
        principal TEXT NOT NULL,
        expires_at BIGINT NOT NULL)",
];

/// One stored request with its state.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    /// As filed.
    pub request: ApprovalRequest,
    /// Status.
    pub status: RequestStatus,
    /// Approved by break-glass.
    pub break_glass: bool,
    /// Filed at.
    pub created_at: OffsetDateTime,
    /// The signed decision once decided.
    pub decision: Option<SignedDecision>,
    /// Break-glass reviewer, once reviewed.
    pub reviewed_by: Option<String>,
}

/// One audit record of the approver itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    /// When (RFC 3339).
    pub at: String,
    /// What happened (`rejected`, `vote`, `decided`, `break_glass`, …).
    pub kind: String,
    /// Who (principal, host or peer).
    pub actor: Option<String>,
    /// Request concerned.
    pub request_id: Option<String>,
    /// HTTP status given.
    pub status: i64,
    /// Details.
    pub detail: String,
}

/// Result of filing a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filed {
    /// Stored now.
    New,
    /// Same request already stored, with this status.
    Existing(RequestStatus),
    /// Same id already stored with different content.
    Conflict,
}

/// The storage handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

fn parse_json<T: serde::de::DeserializeOwned>(op: &'static str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt {
        op,
        detail: e.to_string(),
    })
}

fn get<'r, T>(row: &'r AnyRow, col: &str, op: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col).map_err(db(op))
}

fn status_of(op: &'static str, s: &str) -> Result<RequestStatus, StoreError> {
    RequestStatus::parse(s).ok_or_else(|| StoreError::Corrupt {
        op,
        detail: format!("unknown status {s:?}"),
    })
}

fn stored(row: &AnyRow, op: &'static str) -> Result<StoredRequest, StoreError> {
    let decision: Option<String> = get(row, "decision", op)?;
    Ok(StoredRequest {
        request: parse_json(op, &get::<String>(row, "body", op)?)?,
        status: status_of(op, &get::<String>(row, "status", op)?)?,
        break_glass: get::<i64>(row, "break_glass", op)? != 0,
        created_at: from_micros(get(row, "created_at", op)?),
        decision: decision.map(|d| parse_json(op, &d)).transpose()?,
        reviewed_by: get(row, "reviewed_by", op)?,
    })
}

const REQUEST_COLS: &str = "body, status, break_glass, created_at, decision, reviewed_by";

impl Store {
    /// Connects and creates the schema. `sqlite:` URLs create the file when missing.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let in_memory = url.contains(":memory:");
        let url = if sqlite && !in_memory && !url.contains("mode=") {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=rwc")
        } else {
            url.to_string()
        };
        let max = if in_memory {
            1
        } else if sqlite {
            8
        } else {
            16
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if sqlite {
                        // WAL with synchronous=NORMAL: durable against crashes of the
                        // process, one fsync per checkpoint instead of per commit.
                        sqlx::Executor::execute(&mut *conn, "PRAGMA journal_mode = WAL").await?;
                        sqlx::Executor::execute(&mut *conn, "PRAGMA synchronous = NORMAL").await?;
                        sqlx::Executor::execute(&mut *conn, "PRAGMA busy_timeout = 10000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(db("connect"))?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        for stmt in SCHEMA {
            sqlx::query(stmt)
                .execute(&self.pool)
                .await
                .map_err(db("create schema"))?;
        }
        Ok(())
    }

    /// Stores a new request as pending; idempotent for an identical request.
    pub async fn insert_request(
        &self,
        req: &ApprovalRequest,
        now: OffsetDateTime,
    ) -> Result<Filed, StoreError> {
        let body = serde_json::to_string(req).map_err(|e| StoreError::Corrupt {
            op: "insert request",
            detail: e.to_string(),
        })?;
        let done = sqlx::query(
            "INSERT INTO requests (request_id, host, requester, statement, body, status, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7) ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(req.request_id.to_string())
        .bind(&req.host)
        .bind(&req.requester.principal)
        .bind(&req.statement)
        .bind(&body)
        .bind(micros(now))
        .bind(micros(req.expires_at))
        .execute(&self.pool)
        .await
        .map_err(db("insert request"))?;
        if done.rows_affected() == 1 {
            return Ok(Filed::New);
        }
        match self.get_request(req.request_id).await? {
            Some(existing) if existing.request == *req => Ok(Filed::Existing(existing.status)),
            _ => Ok(Filed::Conflict),
        }
    }

    /// One request.
    pub async fn get_request(&self, id: Uuid) -> Result<Option<StoredRequest>, StoreError> {
        let op = "get request";
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLS} FROM requests WHERE request_id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(op))?;
        row.map(|r| stored(&r, op)).transpose()
    }

    /// Requests by status and free text (statement, requester, host, id), newest first.
    pub async fn list_requests(
        &self,
        status: Option<RequestStatus>,
        q: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        let op = "list requests";
        let pattern = format!("%{}%", q.unwrap_or("").to_lowercase());
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLS} FROM requests
             WHERE ($1 = '' OR status = $1)
               AND (LOWER(statement) LIKE $2 OR LOWER(requester) LIKE $2
                    OR LOWER(host) LIKE $2 OR request_id LIKE $2)
             ORDER BY created_at DESC LIMIT $3"
        ))
        .bind(status.map(|s| s.as_str()).unwrap_or(""))
        .bind(pattern)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db(op))?;
        rows.iter().map(|r| stored(r, op)).collect()
    }

    /// Break-glass approvals not yet reviewed.
    pub async fn unreviewed_break_glass(&self) -> Result<Vec<StoredRequest>, StoreError> {
        let op = "list break-glass";
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLS} FROM requests WHERE break_glass = 1 AND reviewed_by IS NULL ORDER BY created_at"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db(op))?;
        rows.iter().map(|r| stored(r, op)).collect()
    }

    /// Marks a break-glass approval reviewed; false when not found or already reviewed.
    pub async fn mark_reviewed(
        &self,
        id: Uuid,
        by: &str,
        comment: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE requests SET reviewed_by = $2, review_comment = $3
             WHERE request_id = $1 AND break_glass = 1 AND reviewed_by IS NULL",
        )
        .bind(id.to_string())
        .bind(by)
        .bind(comment)
        .execute(&self.pool)
        .await
        .map_err(db("mark reviewed"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Votes on a request, in order.
    pub async fn votes(&self, id: Uuid) -> Result<Vec<VoteRecord>, StoreError> {
        let op = "list votes";
        let rows = sqlx::query(
            "SELECT principal, vote, comment, channel, at FROM votes WHERE request_id = $1 ORDER BY at, principal",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db(op))?;
        rows.iter()
            .map(|r| {
                Ok(VoteRecord {
                    principal: get(r, "principal", op)?,
                    vote: vote_of(&get::<String>(r, "vote", op)?),
                    comment: get(r, "comment", op)?,
                    channel: get(r, "channel", op)?,
                    at: from_micros(get(r, "at", op)?),
                })
            })
            .collect()
    }

    /// Starts a transaction on one request, locking it (see the module doc). `None`
    /// when the request does not exist.
    pub async fn lock_request(&self, id: Uuid) -> Result<Option<RequestTx>, StoreError> {
        let op = "lock request";
        let mut tx = self.pool.begin().await.map_err(db(op))?;
        let locked = sqlx::query("UPDATE requests SET status = status WHERE request_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db(op))?;
        if locked.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLS} FROM requests WHERE request_id = $1"
        ))
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(db(op))?;
        let current = stored(&row, op)?;
        let votes = sqlx::query(
            "SELECT principal, vote FROM votes WHERE request_id = $1 ORDER BY at, principal",
        )
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(db(op))?
        .iter()
        .map(|r| {
            Ok(CastVote {
                principal: get(r, "principal", op)?,
                vote: vote_of(&get::<String>(r, "vote", op)?),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(RequestTx { tx, current, votes }))
    }

    /// Ids of pending requests whose expiry passed.
    pub async fn due_for_expiry(&self, now: OffsetDateTime) -> Result<Vec<Uuid>, StoreError> {
        let op = "find expired";
        let rows = sqlx::query(
            "SELECT request_id FROM requests WHERE status = 'pending' AND expires_at < $1",
        )
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await
        .map_err(db(op))?;
        Ok(rows
            .iter()
            .filter_map(|r| get::<String>(r, "request_id", op).ok())
            .filter_map(|s| Uuid::parse_str(&s).ok())
            .collect())
    }

    /// Requests decided at or after `since` by a replica other than `replica`.
    pub async fn decided_elsewhere(
        &self,
        since: OffsetDateTime,
        replica: &str,
    ) -> Result<Vec<Uuid>, StoreError> {
        let op = "find decisions of other replicas";
        let rows = sqlx::query(
            "SELECT request_id FROM requests WHERE decided_at >= $1 AND decided_by <> $2",
        )
        .bind(micros(since))
        .bind(replica)
        .fetch_all(&self.pool)
        .await
        .map_err(db(op))?;
        Ok(rows
            .iter()
            .filter_map(|r| get::<String>(r, "request_id", op).ok())
            .filter_map(|s| Uuid::parse_str(&s).ok())
            .collect())
    }

    /// Stores audit events once per id: returns (accepted, duplicates).
    pub async fn insert_events(
        &self,
        host: &str,
        events: &[(String, String, String)],
        now: OffsetDateTime,
    ) -> Result<(u64, u64), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("insert events"))?;
        let mut accepted = 0;
        for (id, kind, body) in events {
            let done = sqlx::query(
                "INSERT INTO events (id, host, kind, body, received_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(host)
            .bind(kind)
            .bind(body)
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .map_err(db("insert events"))?;
            accepted += done.rows_affected();
        }
        tx.commit().await.map_err(db("insert events"))?;
        Ok((accepted, events.len() as u64 - accepted))
    }

    /// Stored events, oldest first, after a `received_at` cursor (microseconds).
    pub async fn list_events(
        &self,
        host: Option<&str>,
        q: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, serde_json::Value)>, StoreError> {
        let op = "list events";
        let rows = sqlx::query(
            "SELECT body, received_at FROM events
             WHERE ($1 = '' OR host = $1) AND LOWER(body) LIKE $2 AND received_at > $3
             ORDER BY received_at, id LIMIT $4",
        )
        .bind(host.unwrap_or(""))
        .bind(format!("%{}%", q.unwrap_or("").to_lowercase()))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db(op))?;
        rows.iter()
            .map(|r| {
                Ok((
                    get(r, "received_at", op)?,
                    parse_json(op, &get::<String>(r, "body", op)?)?,
                ))
            })
            .collect()
    }

    /// Appends to the approver's own audit table.
    pub async fn audit(&self, rec: &AuditRecord, at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit (id, at, kind, actor, request_id, status, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(micros(at))
        .bind(&rec.kind)
        .bind(&rec.actor)
        .bind(&rec.request_id)
        .bind(rec.status)
        .bind(&rec.detail)
        .execute(&self.pool)
        .await
        .map_err(db("write audit"))?;
        Ok(())
    }

    /// Latest audit records, newest first.
    pub async fn list_audit(&self, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let op = "list audit";
        let rows = sqlx::query(
            "SELECT at, kind, actor, request_id, status, detail FROM audit ORDER BY at DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db(op))?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    at: dbward_approval_api::timefmt::format(from_micros(get(r, "at", op)?)),
                    kind: get(r, "kind", op)?,
                    actor: get(r, "actor", op)?,
                    request_id: get(r, "request_id", op)?,
                    status: get(r, "status", op)?,
                    detail: get(r, "detail", op)?,
                })
            })
            .collect()
    }

    /// Remembers a channel message reference (Slack `channel:ts`) for a request.
    pub async fn set_channel_message(
        &self,
        id: Uuid,
        channel: &str,
        reference: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO channel_messages (request_id, channel, reference) VALUES ($1, $2, $3)
             ON CONFLICT (request_id, channel) DO UPDATE SET reference = $3",
        )
        .bind(id.to_string())
        .bind(channel)
        .bind(reference)
        .execute(&self.pool)
        .await
        .map_err(db("save channel message"))?;
        Ok(())
    }

    /// The channel message reference of a request.
    pub async fn channel_message(
        &self,
        id: Uuid,
        channel: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT reference FROM channel_messages WHERE request_id = $1 AND channel = $2",
        )
        .bind(id.to_string())
        .bind(channel)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("get channel message"))?;
        row.map(|r| get(&r, "reference", "get channel message"))
            .transpose()
    }

    /// Records a callback nonce (e.g. a signature) seen at `at`; false when it was seen
    /// before. Nonces older than `horizon` are forgotten.
    pub async fn first_sighting(
        &self,
        nonce: &str,
        at: OffsetDateTime,
        horizon: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM seen_nonces WHERE at < $1")
            .bind(micros(horizon))
            .execute(&self.pool)
            .await
            .map_err(db("prune nonces"))?;
        let done = sqlx::query(
            "INSERT INTO seen_nonces (nonce, at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
        )
        .bind(nonce)
        .bind(micros(at))
        .execute(&self.pool)
        .await
        .map_err(db("record nonce"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Creates a web session.
    pub async fn create_session(
        &self,
        id: &str,
        principal: &str,
        expires: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO web_sessions (id, principal, expires_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(principal)
            .bind(micros(expires))
            .execute(&self.pool)
            .await
            .map_err(db("create session"))?;
        Ok(())
    }

    /// Ends a web session.
    pub async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_sessions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("delete session"))?;
        Ok(())
    }

    /// The principal of a live web session.
    pub async fn session_principal(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT principal FROM web_sessions WHERE id = $1 AND expires_at > $2")
                .bind(id)
                .bind(micros(now))
                .fetch_optional(&self.pool)
                .await
                .map_err(db("get session"))?;
        row.map(|r| get(&r, "principal", "get session")).transpose()
    }
}

fn vote_of(s: &str) -> Vote {
    if s == "approve" {
        Vote::Approve
    } else {
        Vote::Deny
    }
}

/// A locked request inside a transaction (see [`Store::lock_request`]).
pub struct RequestTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    /// The request as stored when locked.
    pub current: StoredRequest,
    /// Votes so far, in order.
    pub votes: Vec<CastVote>,
}

impl RequestTx {
    /// Records a vote.
    pub async fn insert_vote(
        &mut self,
        principal: &str,
        vote: Vote,
        comment: Option<&str>,
        channel: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO votes (request_id, principal, vote, comment, channel, at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(self.current.request.request_id.to_string())
        .bind(principal)
        .bind(vote.as_str())
        .bind(comment)
        .bind(channel)
        .bind(micros(at))
        .execute(&mut *self.tx)
        .await
        .map_err(db("insert vote"))?;
        self.votes.push(CastVote {
            principal: principal.to_string(),
            vote,
        });
        Ok(())
    }

    /// Ends the request with a signed decision (only if still pending), recording which
    /// replica decided.
    pub async fn decide(
        &mut self,
        decision: &SignedDecision,
        status: RequestStatus,
        break_glass: bool,
        replica: &str,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(decision).map_err(|e| StoreError::Corrupt {
            op: "decide",
            detail: e.to_string(),
        })?;
        let done = sqlx::query(
            "UPDATE requests SET status = $2, decision = $3, decided_at = $4, break_glass = $5, decided_by = $6
             WHERE request_id = $1 AND status = 'pending'",
        )
        .bind(self.current.request.request_id.to_string())
        .bind(status.as_str())
        .bind(json)
        .bind(micros(decision.decided_at))
        .bind(i64::from(break_glass))
        .bind(replica)
        .execute(&mut *self.tx)
        .await
        .map_err(db("decide"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(db("commit"))
    }
}
