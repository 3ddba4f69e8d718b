//! Process control of a stopped backend: overwrite its statement buffer through
//! `/proc/<pid>/mem` so the statement can never run, and send it signals.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Most bytes overwritten (the kernel measures statements up to this length).
const MAX_OVERWRITE: usize = agent_common::MAX_MEASURED_STATEMENT;

/// Why a backend could not be neutralised or signalled.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// `/proc/<pid>/mem` could not be opened, written or read back.
    #[error(
        "cannot overwrite the statement of backend {pid} at {addr:#x} via /proc/{pid}/mem: {source} (is the agent root and the backend alive?)"
    )]
    Mem {
        /// Backend pid.
        pid: u32,
        /// Buffer address.
        addr: u64,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The buffer did not read back as overwritten.
    #[error("the statement of backend {pid} at {addr:#x} did not read back as overwritten")]
    NotOverwritten {
        /// Backend pid.
        pid: u32,
        /// Buffer address.
        addr: u64,
    },
    /// A signal could not be sent.
    #[error("cannot send {signal} to backend {pid}: {source}")]
    Signal {
        /// Backend pid.
        pid: u32,
        /// Signal name.
        signal: &'static str,
        /// The cause.
        #[source]
        source: nix::Error,
    },
}

/// What a neutralised statement becomes: a query that reads nothing but passes through
/// the executor, where the pending SIGTERM is handled before any reply is sent (so the
/// client sees "terminating connection due to administrator command").
const HARMLESS: &[u8] = b"SELECT";

/// The bytes that replace a statement of `len` bytes (its NUL terminator stays): `SELECT`,
/// a NUL ending the C string whatever follows (even when `len` is only a lower bound), then
/// spaces. Shorter statements become the empty query (a NUL, then spaces).
pub fn replacement(len: usize) -> Vec<u8> {
    let len = len.clamp(1, MAX_OVERWRITE);
    let mut bytes = vec![b' '; len];
    if len >= HARMLESS.len() {
        bytes[..HARMLESS.len()].copy_from_slice(HARMLESS);
        if len > HARMLESS.len() {
            bytes[HARMLESS.len()] = 0;
        }
    } else {
        bytes[0] = 0;
    }
    bytes
}

/// Overwrites the statement buffer of a stopped backend and checks it read back.
pub fn neutralise(pid: u32, addr: u64, len: usize) -> Result<(), ProcessError> {
    let mem_error = |source| ProcessError::Mem { pid, addr, source };
    let mem = OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .map_err(mem_error)?;
    let bytes = replacement(len);
    mem.write_all_at(&bytes, addr).map_err(mem_error)?;
    let check = bytes.len().min(HARMLESS.len() + 1);
    let mut back = vec![0xffu8; check];
    mem.read_exact_at(&mut back, addr).map_err(mem_error)?;
    if back != bytes[..check] {
        return Err(ProcessError::NotOverwritten { pid, addr });
    }
    Ok(())
}

fn signal(pid: u32, sig: Signal) -> Result<(), ProcessError> {
    kill(Pid::from_raw(pid as i32), sig).map_err(|source| ProcessError::Signal {
        pid,
        signal: sig.as_str(),
        source,
    })
}

/// Lets a stopped backend run on.
pub fn resume(pid: u32) -> Result<(), ProcessError> {
    signal(pid, Signal::SIGCONT)
}

/// Ends a stopped backend's session: SIGTERM, then SIGCONT so it handles it ("terminating
/// connection due to administrator command").
pub fn terminate(pid: u32) -> Result<(), ProcessError> {
    signal(pid, Signal::SIGTERM)?;
    signal(pid, Signal::SIGCONT)
}

/// Kills a backend whose statement could not be neutralised (the statement must not run;
/// PostgreSQL then restarts its other sessions).
pub fn kill_hard(pid: u32) -> Result<(), ProcessError> {
    signal(pid, Signal::SIGKILL)
}

/// Start time of a process in clock ticks since boot (field 22 of `/proc/<pid>/stat`): a
/// pid plus its start time names one process even after pid reuse.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses: count from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_is_a_harmless_select_or_the_empty_query() {
        for (len, want) in [
            (0, b"\0".to_vec()),
            (1, b"\0".to_vec()),
            (4, b"\0   ".to_vec()),
            (6, b"SELECT".to_vec()),
            (7, b"SELECT\0".to_vec()),
            (10, b"SELECT\0   ".to_vec()),
        ] {
            assert_eq!(replacement(len), want, "len {len}");
        }
        assert_eq!(replacement(usize::MAX).len(), MAX_OVERWRITE);
    }

    #[test]
    fn start_time_is_field_22_even_with_odd_command_names() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21";
        for comm in ["postgres", "a b) (c", ""] {
            let stat = format!("42 ({comm}) {tail}");
            assert_eq!(parse_start_time(&stat), Some(987654), "comm {comm:?}");
        }
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn own_process_has_a_start_time() {
        assert!(start_time(std::process::id()).is_some());
    }
}
