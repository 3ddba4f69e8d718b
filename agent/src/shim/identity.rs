//! Client identity for a session: peer credentials on unix sockets (SO_PEERCRED, /proc),
//! and a pluggable lookup ([`PeerIdentity`]) for loopback TCP clients (eBPF connect records).

use std::ffi::CStr;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

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

/// Facts for a unix-socket peer from its credentials and /proc.
pub fn unix_peer_facts(pid: Option<i32>, uid: u32) -> PeerFacts {
    let pid = pid.and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0);
    let cgroup = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/cgroup")).ok());
    PeerFacts {
        pid,
        uid: Some(uid),
        user: user_name(uid),
        exe: pid.and_then(|p| {
            std::fs::read_link(format!("/proc/{p}/exe"))
                .ok()
                .map(|e| e.display().to_string())
        }),
        unit: cgroup.as_deref().and_then(unit_from_cgroup),
        container: cgroup.as_deref().and_then(container_from_cgroup),
    }
}

/// The OS user name of `uid`.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0_u8; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value for getpwuid_r to overwrite.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf` outlives it.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`.
    Some(
        unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn cgroup_path(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| text.lines().next().and_then(|l| l.splitn(3, ':').nth(2)))
}

/// The systemd unit (service or scope) from a /proc/PID/cgroup text.
pub fn unit_from_cgroup(text: &str) -> Option<String> {
    cgroup_path(text)?
        .rsplit('/')
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
        .map(str::to_owned)
}

/// The container id (docker, containerd, podman, kubepods) from a /proc/PID/cgroup text.
pub fn container_from_cgroup(text: &str) -> Option<String> {
    let path = cgroup_path(text)?;
    path.rsplit('/').find_map(|c| {
        let c = c.strip_suffix(".scope").unwrap_or(c);
        let id = c.rsplit(['-', ':']).next()?;
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c3b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";

    #[test]
    fn units_and_containers_come_from_the_cgroup_path() {
        let cases = [
            (
                "0::/system.slice/cron.service\n",
                Some("cron.service"),
                None,
            ),
            (
                "0::/user.slice/user-1000.slice/session-3.scope\n",
                Some("session-3.scope"),
                None,
            ),
            (
                &*format!("0::/system.slice/docker-{ID}.scope\n"),
                Some(&*format!("docker-{ID}.scope")),
                Some(ID),
            ),
            (&*format!("12:pids:/docker/{ID}\n"), None, Some(ID)),
            ("0::/\n", None, None),
        ];
        for (text, unit, container) in cases {
            assert_eq!(unit_from_cgroup(text).as_deref(), unit, "{text}");
            assert_eq!(container_from_cgroup(text).as_deref(), container, "{text}");
        }
    }

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
