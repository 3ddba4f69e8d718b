//! Client identity for a session: peer credentials on unix sockets (SO_PEERCRED, /proc),
//! and a pluggable lookup ([`PeerIdentity`]) for loopback TCP clients (eBPF connect records).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use crate::event::Client;
use crate::session::identity;

/// What is known about the process on the other end of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerFacts {
    /// Process id.
    pub pid: Option<u32>,
    /// OS uid.
    pub uid: Option<u32>,
    /// OS user name.
    pub user: Option<String>,
    /// Executable path.
    pub exe: Option<String>,
    /// systemd unit.
    pub unit: Option<String>,
    /// Container id.
    pub container: Option<String>,
}

/// Looks up the process behind a TCP connection (the capture module implements it from
/// eBPF connect records).
pub trait PeerIdentity: Send + Sync {
    /// Facts about the client that connected from `peer` to our `local` address; may wait
    /// briefly for the kernel's record of the connect to arrive.
    fn lookup_tcp(
        &self,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Option<PeerFacts>> + Send + '_>>;
}

/// No TCP identity source: TCP sessions carry only their source address.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPeerIdentity;

impl PeerIdentity for NoPeerIdentity {
    fn lookup_tcp(
        &self,
        _peer: SocketAddr,
        _local: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Option<PeerFacts>> + Send + '_>> {
        Box::pin(std::future::ready(None))
    }
}

/// Facts for a unix-socket peer from its credentials and /proc (read as the kernel
/// capture reads its clients: [`crate::session::identity::fill_from_proc`]).
pub fn unix_peer_facts(pid: Option<i32>, uid: u32) -> PeerFacts {
    let mut client = Client {
        uid: Some(uid),
        ..Client::default()
    };
    match pid.and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0) {
        Some(pid) => {
            client.pid = Some(pid);
            identity::fill_from_proc(&mut client, pid);
        }
        None => client.user = identity::user_name(uid),
    }
    PeerFacts::from(client)
}

impl From<Client> for PeerFacts {
    fn from(client: Client) -> Self {
        Self {
            pid: client.pid,
            uid: client.uid,
            user: client.user,
            exe: client.exe,
            unit: client.unit,
            container: client.container,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_user_and_exe() {
        let facts = unix_peer_facts(
            i32::try_from(std::process::id()).ok(),
            // SAFETY: getuid has no preconditions.
            unsafe { libc::getuid() },
        );
        assert!(facts.user.is_some());
        assert!(facts.exe.is_some());
    }
}
