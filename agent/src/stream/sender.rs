//! Sending one batch to `POST /api/v1/events`: body encoding, gzip, bearer token, response,
//! and the retry delay (exponential backoff with jitter).

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Deserialize;

/// Why a batch was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The request did not complete (connection refused, reset, timeout).
    #[error("POST {url}: {source}")]
    Transport {
        /// The events URL.
        url: String,
        /// The client error.
        source: reqwest::Error,
    },
    /// The endpoint answered with an error status.
    #[error("POST {url}: HTTP {status}: {body}")]
    Status {
        /// The events URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The body could not be compressed.
    #[error("gzip: {0}")]
    Gzip(std::io::Error),
}

/// The endpoint's answer: `{accepted, duplicates}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Ack {
    /// Events stored for the first time.
    #[serde(default)]
    pub accepted: u64,
    /// Events the endpoint already had.
    #[serde(default)]
    pub duplicates: u64,
}

/// An HTTP client for the events endpoint.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    gzip: bool,
}

impl Sender {
    /// A sender to `<endpoint>/api/v1/events`.
    pub fn new(
        endpoint: &str,
        token: Option<String>,
        gzip: bool,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            client,
            url: events_url(endpoint),
            token,
            gzip,
        })
    }

    /// POSTs `{host, events: [...]}` built from record lines; returns the endpoint's ack.
    pub async fn send(&self, host: &str, lines: &[&[u8]]) -> Result<Ack, SendError> {
        let body = encode_body(host, lines);
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        let body = if self.gzip {
            request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
            gzip(&body).map_err(SendError::Gzip)?
        } else {
            body
        };
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let transport = |source| SendError::Transport {
            url: self.url.clone(),
            source,
        };
        let response = request.body(body).send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        if !status.is_success() {
            return Err(SendError::Status {
                url: self.url.clone(),
                status: status.as_u16(),
                body: text.chars().take(200).collect(),
            });
        }
        Ok(serde_json::from_str(&text).unwrap_or_default())
    }
}

/// `<endpoint>/api/v1/events`, with or without a trailing slash on the endpoint.
pub fn events_url(endpoint: &str) -> String {
    format!("{}/api/v1/events", endpoint.trim_end_matches('/'))
}

/// `{"host":…,"events":[line,…]}`; the lines are already JSON objects.
pub fn encode_body(host: &str, lines: &[&[u8]]) -> Vec<u8> {
    let mut body =
        Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + host.len() + 32);
    body.extend_from_slice(b"{\"host\":");
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut body, host);
    body.extend_from_slice(b",\"events\":[");
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(line);
    }
    body.extend_from_slice(b"]}");
    body
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

/// Delay before retry number `attempt` (0-based): `initial · 2^attempt` capped at `max`, of
/// which the upper half is scaled by `jitter` ∈ [0, 1) ("equal jitter").
pub fn backoff(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = initial
        .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .min(max);
    let half = exp / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_the_upper_half() {
        let ms = Duration::from_millis;
        let cases = [
            (0, 0.0, ms(50)),
            (0, 0.999_999, ms(100)),
            (1, 0.0, ms(100)),
            (3, 0.5, ms(600)),
            (10, 0.0, ms(2_500)),
            (10, 0.999_999, ms(5_000)),
            (200, 0.0, ms(2_500)),
        ];
        for (attempt, jitter, expected) in cases {
            let got = backoff(attempt, ms(100), ms(5_000), jitter);
            assert!(
                got.abs_diff(expected) <= ms(1),
                "attempt {attempt} jitter {jitter}: {got:?} vs {expected:?}"
            );
        }
    }

    #[test]
    fn body_is_the_contract_shape_and_gzip_round_trips() {
        let lines: [&[u8]; 2] = [br#"{"id":"h:1","seq":1}"#, br#"{"id":"h:2","seq":2}"#];
        let body = encode_body("db\"1", &lines);
        let value: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(value["host"], "db\"1");
        assert_eq!(value["events"][1]["id"], "h:2");
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&gzip(&body).expect("gzip")[..])
            .read_to_end(&mut unzipped)
            .expect("gunzip");
        assert_eq!(unzipped, body);
        assert_eq!(events_url("https://a:1/"), "https://a:1/api/v1/events");
    }
}
