//! [`ApproverClient`]: async HTTP client of the approver service (agents and approvers).

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::StatusCode;
use uuid::Uuid;

use crate::decision::SignedDecision;
use crate::types::{
    ApiError, ApprovalRequest, BreakGlassBody, EventBatch, FiledRequest, IngestResult, RequestList,
    RequestStatus, RequestView, Vote, VoteBody, VoteOutcome,
};

/// Why a call to the approver failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL could not be parsed.
    #[error("bad approver URL {url:?}: {detail}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Parser message.
        detail: String,
    },
    /// Could not reach the server or read its answer.
    #[error("approver {url} unreachable: {source}")]
    Transport {
        /// The URL called.
        url: String,
        /// Underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("approver {url} answered {status}: {message} ({code})")]
    Status {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: StatusCode,
        /// Stable error code from the body (or `unknown`).
        code: String,
        /// Error message from the body.
        message: String,
    },
    /// Compressing the event batch failed.
    #[error("compressing event batch: {0}")]
    Compress(#[from] std::io::Error),
}

/// Client of the approver HTTP API; cheap to clone.
#[derive(Debug, Clone)]
pub struct ApproverClient {
    base: reqwest::Url,
    token: String,
    http: reqwest::Client,
}

impl ApproverClient {
    /// A client of the server at `base_url` (e.g. `https://approver:8443`) that sends
    /// `Authorization: Bearer <token>` (a host token for agents, an approver token for
    /// people and pipelines).
    pub fn new(base_url: &str, token: impl Into<String>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| ClientError::Transport {
                url: base_url.to_string(),
                source,
            })?;
        Self::with_http(base_url, token, http)
    }

    /// Like [`ApproverClient::new`] with a caller-built `reqwest::Client` (custom root
    /// certificates, client certificate for mTLS, proxies).
    pub fn with_http(
        base_url: &str,
        token: impl Into<String>,
        http: reqwest::Client,
    ) -> Result<Self, ClientError> {
        let base = reqwest::Url::parse(base_url).map_err(|e| ClientError::BadUrl {
            url: base_url.to_string(),
            detail: e.to_string(),
        })?;
        Ok(Self {
            base,
            token: token.into(),
            http,
        })
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, ClientError> {
        self.base.join(path).map_err(|e| ClientError::BadUrl {
            url: format!("{}{path}", self.base),
            detail: e.to_string(),
        })
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &reqwest::Url,
    ) -> Result<reqwest::Response, ClientError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.to_string(),
                source,
            })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let (code, message) = match serde_json::from_str::<ApiError>(&text) {
            Ok(e) => (e.code, e.error),
            Err(_) => ("unknown".to_string(), text),
        };
        Err(ClientError::Status {
            url: url.to_string(),
            status,
            code,
            message,
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        resp: reqwest::Response,
        url: &reqwest::Url,
    ) -> Result<T, ClientError> {
        resp.json().await.map_err(|source| ClientError::Transport {
            url: url.to_string(),
            source,
        })
    }

    /// Files a held statement (`POST /api/v1/requests`); idempotent on `request_id`.
    pub async fn file_request(
        &self,
        request: &ApprovalRequest,
    ) -> Result<FiledRequest, ClientError> {
        let url = self.url("api/v1/requests")?;
        let resp = self
            .send(self.http.post(url.clone()).json(request), &url)
            .await?;
        Self::json(resp, &url).await
    }

    /// Long-polls for the decision up to `wait`; `None` when still pending. The caller
    /// must verify the decision with [`crate::DecisionVerifier`].
    pub async fn wait_decision(
        &self,
        id: Uuid,
        wait: Duration,
    ) -> Result<Option<SignedDecision>, ClientError> {
        let mut url = self.url(&format!("api/v1/requests/{id}/decision"))?;
        url.query_pairs_mut()
            .append_pair("wait", &wait.as_secs().to_string());
        let req = self
            .http
            .get(url.clone())
            .timeout(wait + Duration::from_secs(15));
        let resp = self.send(req, &url).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Self::json(resp, &url).await.map(Some)
    }

    /// Lists requests, optionally by status and free-text search.
    pub async fn list(
        &self,
        status: Option<RequestStatus>,
        q: Option<&str>,
    ) -> Result<Vec<RequestView>, ClientError> {
        let mut url = self.url("api/v1/requests")?;
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(s) = status {
                pairs.append_pair("status", s.as_str());
            }
            if let Some(q) = q {
                pairs.append_pair("q", q);
            }
        }
        let resp = self.send(self.http.get(url.clone()), &url).await?;
        Ok(Self::json::<RequestList>(resp, &url).await?.requests)
    }

    /// Fetches one request.
    pub async fn get(&self, id: Uuid) -> Result<RequestView, ClientError> {
        let url = self.url(&format!("api/v1/requests/{id}"))?;
        let resp = self.send(self.http.get(url.clone()), &url).await?;
        Self::json(resp, &url).await
    }

    /// Votes on a request as the principal of this client's approver token.
    pub async fn vote(
        &self,
        id: Uuid,
        vote: Vote,
        comment: Option<&str>,
    ) -> Result<VoteOutcome, ClientError> {
        let url = self.url(&format!("api/v1/requests/{id}/votes"))?;
        let body = VoteBody {
            vote,
            comment: comment.map(str::to_string),
        };
        let resp = self
            .send(self.http.post(url.clone()).json(&body), &url)
            .await?;
        Self::json(resp, &url).await
    }

    /// Break-glass: self-authorises the request as a member of its emergency group.
    pub async fn break_glass(&self, id: Uuid, reason: &str) -> Result<VoteOutcome, ClientError> {
        let url = self.url(&format!("api/v1/requests/{id}/break-glass"))?;
        let body = BreakGlassBody {
            reason: reason.to_string(),
        };
        let resp = self
            .send(self.http.post(url.clone()).json(&body), &url)
            .await?;
        Self::json(resp, &url).await
    }

    /// Sends a batch of audit events (`POST /api/v1/events`), gzip-compressed when
    /// `gzip` is set.
    pub async fn send_events(
        &self,
        batch: &EventBatch,
        gzip: bool,
    ) -> Result<IngestResult, ClientError> {
        let url = self.url("api/v1/events")?;
        let json = serde_json::to_vec(batch).map_err(std::io::Error::other)?;
        let mut req = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if gzip {
            let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
            enc.write_all(&json)?;
            req = req
                .header(reqwest::header::CONTENT_ENCODING, "gzip")
                .body(enc.finish()?);
        } else {
            req = req.body(json);
        }
        let resp = self.send(req, &url).await?;
        Self::json(resp, &url).await
    }
}
