//! Who a local client process is: executable, user, systemd unit, container — read from
//! `/proc` — and the socket facts only the process's own descriptor can tell
//! (`pidfd_getfd` + `getsockname`/`SO_PEERCRED`).

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::event::Client;

/// Resolves what `/proc/<pid>` tells about a process into `client` (fields it can read).
pub fn fill_from_proc(client: &mut Client, pid: u32) {
    if let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) {
        client.exe = Some(exe.to_string_lossy().into_owned());
    }
    if client.comm.is_none()
        && let Ok(comm) = fs::read_to_string(format!("/proc/{pid}/comm"))
    {
        client.comm = Some(comm.trim_end().to_owned());
    }
    if let Ok(cgroup) = fs::read_to_string(format!("/proc/{pid}/cgroup")) {
        let path = cgroup_v2_path(&cgroup);
        client.unit = path.as_deref().and_then(systemd_unit);
        client.container = container_id(&cgroup);
        client.cgroup = path;
    }
    if client.uid.is_none()
        && let Some(uid) = status_uid(pid)
    {
        client.uid = Some(uid);
    }
    if let Some(uid) = client.uid {
        client.user = user_name(uid);
    }
}

fn status_uid(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The user name of a uid, if the host knows it.
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// The unified (v2) hierarchy's path from `/proc/<pid>/cgroup` (the `0::` line), or the
/// systemd named hierarchy on hybrid hosts.
pub fn cgroup_v2_path(text: &str) -> Option<String> {
    let find = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .filter(|p| !p.is_empty() && *p != "/")
            .map(str::to_owned)
    };
    find("0::").or_else(|| find("1:name=systemd:"))
}

/// The innermost systemd unit (`*.service`, `*.scope`, …) in a cgroup path.
pub fn systemd_unit(path: &str) -> Option<String> {
    const SUFFIXES: [&str; 5] = [".service", ".scope", ".socket", ".mount", ".swap"];
    path.split('/')
        .rev()
        .find(|seg| SUFFIXES.iter().any(|s| seg.ends_with(s)))
        .map(str::to_owned)
}

/// A container id (64 hex digits) in any cgroup line: docker, containerd, podman, kubepods.
pub fn container_id(text: &str) -> Option<String> {
    text.split(['/', '-', ':', '.', '\n'])
        .find(|seg| seg.len() == 64 && seg.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
}

/// Duplicates descriptor `fd` of process `pid` into this process (needs PTRACE_MODE_ATTACH,
/// i.e. root or CAP_SYS_PTRACE).
pub fn steal_fd(pid: u32, fd: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscalls; the returned descriptors are owned and closed on drop.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0);
        if pidfd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd as i32);
        let dup = libc::syscall(
            libc::SYS_pidfd_getfd,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd),
            fd,
            0,
        );
        if dup < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(dup as i32))
    }
}

/// The local TCP port of a socket.
pub fn local_port(sock: &OwnedFd) -> Option<u16> {
    use nix::sys::socket::{SockaddrStorage, getsockname};
    let addr: SockaddrStorage = getsockname(std::os::fd::AsRawFd::as_raw_fd(sock)).ok()?;
    addr.as_sockaddr_in()
        .map(|a| a.port())
        .or_else(|| addr.as_sockaddr_in6().map(|a| a.port()))
}

/// Credentials of the process at the other end of a unix socket: (pid, uid, gid).
pub fn peer_credentials(sock: &OwnedFd) -> Option<(u32, u32, u32)> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let cred = getsockopt(sock, PeerCredentials).ok()?;
    Some((cred.pid() as u32, cred.uid(), cred.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_containers_come_from_cgroup_paths() {
        let cg = "0::/system.slice/cron.service\n";
        assert_eq!(
            cgroup_v2_path(cg).as_deref(),
            Some("/system.slice/cron.service")
        );
        assert_eq!(
            systemd_unit("/system.slice/cron.service").as_deref(),
            Some("cron.service")
        );
        assert_eq!(
            systemd_unit("/user.slice/user-1000.slice/session-3.scope").as_deref(),
            Some("session-3.scope")
        );
        assert_eq!(systemd_unit("/"), None);
        let id = "a".repeat(64);
        let docker = format!("0::/system.slice/docker-{id}.scope\n");
        assert_eq!(container_id(&docker), Some(id.clone()));
        let kube = format!("0::/kubepods/burstable/pod1234/{id}\n");
        assert_eq!(container_id(&kube), Some(id));
        assert_eq!(container_id(cg), None);
        let hybrid = "12:cpu:/\n1:name=systemd:/system.slice/ssh.service\n0::/\n";
        assert_eq!(
            cgroup_v2_path(hybrid).as_deref(),
            Some("/system.slice/ssh.service")
        );
    }

    #[test]
    fn units_and_containers_of_unix_peers_and_kernel_clients_agree() {
        const ID: &str = "4f1c3b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";
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
            let path = cgroup_v2_path(text);
            assert_eq!(
                path.as_deref().and_then(systemd_unit).as_deref(),
                unit,
                "{text}"
            );
            assert_eq!(container_id(text).as_deref(), container, "{text}");
        }
    }

    #[test]
    fn own_process_resolves() {
        let mut client = Client::default();
        fill_from_proc(&mut client, std::process::id());
        assert_eq!(client.uid, Some(nix::unistd::getuid().as_raw()));
        assert!(client.exe.is_some());
    }
}
