//! Loopback TCP clients of the agent's own listeners (the socket shim), indexed by the
//! client's local port as the kernel's `connect` records reveal them, so that a session
//! accepted by the shim learns which local process (pid, uid, exe, unit, container) is on the
//! other end — the same tuple match the correlator uses for the server's own sessions.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::event::Client;
use crate::shim::{PeerFacts, PeerIdentity};

/// How long an accepted connection waits for its client's `connect` record: the record
/// travels through the ring buffer and the agent's loop, typically well under 10 ms.
const ARRIVAL_WAIT: Duration = Duration::from_millis(250);

/// Records older than this are dropped (their connection was never accepted by us).
const RECORD_TTL: Duration = Duration::from_secs(30);

/// Recorded clients keyed by client port; shared by the correlator (writer) and the shim.
#[derive(Debug, Default)]
pub struct TcpClients {
    records: Mutex<HashMap<u16, Record>>,
    arrived: Notify,
}

#[derive(Debug)]
struct Record {
    server_port: u16,
    client: Client,
    at: Instant,
}

impl TcpClients {
    /// Records that `client` connected from local port `client_port` to `server_port`.
    pub fn record(&self, client_port: u16, server_port: u16, client: Client) {
        let Ok(mut records) = self.records.lock() else {
            return;
        };
        if records.len() >= 1024 {
            records.retain(|_, r| r.at.elapsed() < RECORD_TTL);
        }
        records.insert(
            client_port,
            Record {
                server_port,
                client,
                at: Instant::now(),
            },
        );
        drop(records);
        self.arrived.notify_waiters();
    }

    /// Takes the record of the client connected from `client_port` to `server_port`.
    pub fn take(&self, client_port: u16, server_port: u16) -> Option<Client> {
        let mut records = self.records.lock().ok()?;
        match records.get(&client_port) {
            Some(r) if r.server_port == server_port && r.at.elapsed() < RECORD_TTL => {
                records.remove(&client_port).map(|r| r.client)
            }
            _ => None,
        }
    }

    /// Waits up to `wait` for the record of `client_port` → `server_port`.
    pub async fn wait_for(
        &self,
        client_port: u16,
        server_port: u16,
        wait: Duration,
    ) -> Option<Client> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            // Registered before the check, so a record inserted in between still wakes us.
            arrived.as_mut().enable();
            if let Some(client) = self.take(client_port, server_port) {
                return Some(client);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }
}

impl PeerIdentity for TcpClients {
    fn lookup_tcp(
        &self,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Option<PeerFacts>> + Send + '_>> {
        Box::pin(async move {
            // Only a client on this host has a connect record.
            if !peer.ip().is_loopback() {
                return None;
            }
            self.wait_for(peer.port(), local.port(), ARRIVAL_WAIT)
                .await
                .map(PeerFacts::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(pid: u32) -> Client {
        Client {
            pid: Some(pid),
            uid: Some(1000),
            exe: Some("/usr/bin/psql".into()),
            ..Client::default()
        }
    }

    #[tokio::test]
    async fn a_record_arriving_after_the_accept_is_still_found() {
        let clients = std::sync::Arc::new(TcpClients::default());
        let writer = clients.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            writer.record(40001, 6432, client(7));
        });
        let facts = clients
            .lookup_tcp(
                "127.0.0.1:40001".parse().unwrap(),
                "127.0.0.1:6432".parse().unwrap(),
            )
            .await
            .expect("found");
        assert_eq!((facts.pid, facts.uid), (Some(7), Some(1000)));
        assert_eq!(facts.exe.as_deref(), Some("/usr/bin/psql"));
        // Taken: a second connection from the same port needs its own record.
        assert!(clients.take(40001, 6432).is_none());
    }

    #[tokio::test]
    async fn a_record_for_another_server_port_or_a_remote_peer_is_not_used() {
        let clients = TcpClients::default();
        clients.record(40002, 5432, client(8));
        assert!(
            clients
                .wait_for(40002, 6432, Duration::from_millis(10))
                .await
                .is_none()
        );
        assert!(
            clients
                .lookup_tcp(
                    "10.0.0.9:40002".parse().unwrap(),
                    "127.0.0.1:5432".parse().unwrap(),
                )
                .await
                .is_none()
        );
        assert_eq!(clients.take(40002, 5432).and_then(|c| c.pid), Some(8));
    }
}
