//! `dbward held resume` on real stopped processes: every one the state file lists is ended
//! (fail closed), a reused pid (other start time) is left alone, and a running agent is
//! never second-guessed.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use dbward_agent::enforce::neutralise::start_time;
use dbward_agent::enforce::state::{HeldRecord, StateFile};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A `sleep` stopped with SIGSTOP, as the kernel stops a held backend.
fn stopped_sleep() -> Child {
    let child = Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGSTOP).expect("SIGSTOP");
    assert!(becomes_stopped(child.id()), "sleep is not stopped");
    child
}

/// The state letter of `pid` (`T` stopped, `Z` ended but not reaped), `None` once gone.
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// Waits (signals are asynchronous) until `pid` is stopped; false after 5 s.
fn becomes_stopped(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while state_of(pid) != Some('T') {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The address of a writable mapping of `pid` (its stack), standing in for the statement
/// buffer.
fn writable_addr(pid: u32) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let line = maps
        .lines()
        .find(|l| l.ends_with("[stack]"))
        .expect("a [stack] mapping");
    u64::from_str_radix(line.split('-').next().expect("start"), 16).expect("hex address")
}

fn record(child: &Child, start_time_offset: u64) -> HeldRecord {
    let pid = child.id();
    HeldRecord {
        pid,
        start_time: start_time(pid).expect("start time") + start_time_offset,
        buf_addr: writable_addr(pid),
        len: 32,
        at_execute: false,
    }
}

fn held_resume(state: &Path, socket: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbward"))
        .args(["held", "resume", "--state"])
        .arg(state)
        .arg("--socket")
        .arg(socket)
        .output()
        .expect("run dbward held resume")
}

#[test]
fn recorded_backends_are_ended_and_reused_pids_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("held.json");
    let mut held = stopped_sleep();
    let mut reused = stopped_sleep();
    StateFile::new(&state)
        .store(&[record(&held, 0), record(&reused, 1)])
        .expect("write state file");

    let out = held_resume(&state, &dir.path().join("no-agent.sock"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("ended 1 held backend"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = held.try_wait().expect("wait for the held process") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = held.kill();
            panic!("the held process still exists 10 s after dbward held resume");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "the held process ran on: {status}");
    assert_eq!(
        state_of(reused.id()),
        Some('T'),
        "a process whose start time differs from the record was touched"
    );
    assert_eq!(StateFile::new(&state).load().expect("state file"), vec![]);
    let _ = reused.kill();
    let _ = reused.wait();
}

#[test]
fn nothing_is_ended_while_an_agent_answers_on_the_control_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("held.json");
    let socket = dir.path().join("agent.sock");
    let _agent = UnixListener::bind(&socket).expect("bind the control socket");
    let mut held = stopped_sleep();
    StateFile::new(&state)
        .store(&[record(&held, 0)])
        .expect("write state file");

    let out = held_resume(&state, &socket);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("an agent is running"),
        "{text}"
    );
    assert_eq!(
        state_of(held.id()),
        Some('T'),
        "the held process was touched"
    );
    assert_eq!(StateFile::new(&state).load().expect("state file").len(), 1);
    let _ = held.kill();
    let _ = held.wait();
}
