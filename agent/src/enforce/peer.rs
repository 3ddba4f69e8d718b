//! Whether a stopped backend's client went away: its client socket, borrowed with
//! `pidfd_getfd`, reads end-of-file (`recv(MSG_PEEK | MSG_DONTWAIT)` returns 0).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Whether every socket of `pid` that can be checked reports its peer closed. `false` when
/// the backend has no socket or none can be inspected (keep holding; the timeout ends it).
pub fn client_gone(pid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let Some(pidfd) = pidfd_open(pid) else {
        return false;
    };
    let mut checked = 0;
    for entry in entries.flatten() {
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if !is_socket {
            continue;
        }
        let Some(sock) = pidfd_getfd(&pidfd, fd) else {
            continue;
        };
        match peek(&sock) {
            Peek::Closed => checked += 1,
            Peek::Open => return false,
            Peek::NotStream => {}
        }
    }
    checked > 0
}

enum Peek {
    Closed,
    Open,
    NotStream,
}

fn peek(sock: &OwnedFd) -> Peek {
    let mut kind: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid descriptor, output buffer of the advertised size.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut kind).cast(),
            &mut len,
        )
    };
    if rc != 0 || kind != libc::SOCK_STREAM {
        return Peek::NotStream;
    }
    let mut byte = [0u8; 1];
    // SAFETY: valid descriptor and buffer; MSG_PEEK leaves the data for the backend.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n == 0 { Peek::Closed } else { Peek::Open }
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    // SAFETY: see above.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_getfd(pidfd: &OwnedFd, fd: i32) -> Option<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
    let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    // SAFETY: see above.
    (got >= 0).then(|| unsafe { OwnedFd::from_raw_fd(got as i32) })
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn a_closed_peer_reads_end_of_file_and_an_open_one_does_not() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let fd: OwnedFd = ours.into();
        assert!(matches!(peek(&fd), Peek::Open));
        drop(theirs);
        assert!(matches!(peek(&fd), Peek::Closed));
    }
}
