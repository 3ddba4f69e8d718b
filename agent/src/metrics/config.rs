//! `[metrics]` of agent.toml: where the Prometheus endpoint listens (absent: no endpoint).

use std::net::SocketAddr;

use serde::Deserialize;

/// `[metrics]`: the Prometheus endpoint.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP listener serving `GET /metrics`, e.g. `"127.0.0.1:9187"`. The
    /// metrics carry no statement text, but keep them on loopback or a management network.
    pub listen: SocketAddr,
}

impl MetricsConfig {
    /// Every problem of the settings, each naming its key.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.listen.port() == 0 {
            problems.push(format!(
                "metrics.listen {} needs a fixed port for Prometheus to scrape (9187 is usual)",
                self.listen
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_port_is_required() {
        let config = |listen: &str| MetricsConfig {
            listen: listen.parse().unwrap(),
        };
        assert!(config("127.0.0.1:9187").check().is_empty());
        assert!(config("[::1]:9187").check().is_empty());
        let problems = config("127.0.0.1:0").check();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("metrics.listen "), "{problems:?}");
    }
}
