//! `[block]`: refusing connects to the watched servers' ports and sockets.
//!
//! cgroup `connect4`/`connect6` hooks (attached by the agent to the cgroup v2 root, so they
//! see every socket) refuse a connect to a protected port on a local address with
//! `ECONNREFUSED` unless the connector is allowed; `sys_enter_connect` judges unix sockets
//! the same way and leaves its verdict in `DENY_CONNECT` for the agent's hand-assembled
//! `cgroup/connect_unix` program. Every refusal is a [`BlockedEvent`]. Connects to other
//! ports return after one map lookup.

use agent_common::{BlockedEvent, COMM_LEN, EventKind, RawSockAddr, UNIX_PATH_LEN};
use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_netns_cookie,
            bpf_set_retval,
        },
    },
    macros::{cgroup_sock_addr, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::SockAddrContext,
};

use crate::{AF_INET, AF_INET6, AF_UNIX, BACKENDS, POSTMASTERS, current_tgid, emit, header};

const ECONNREFUSED: i32 = 111;
/// Deepest cgroup level whose ancestors are compared with `ALLOW_CGROUPS`.
const MAX_CGROUP_DEPTH: i32 = 16;

/// Settings written by the agent (slots in [`agent_common::config`]).
#[map]
static CONFIG: Array<u32> = Array::with_max_entries(agent_common::config::SLOTS, 0);

/// Protected TCP ports, host byte order (set by the agent: the watched clusters' ports).
#[map]
static BLOCK_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(256, 0);

/// Protected unix socket paths, NUL-padded (set by the agent: the watched clusters' sockets).
#[map]
static BLOCK_SOCKETS: HashMap<[u8; UNIX_PATH_LEN], u8> = HashMap::with_max_entries(256, 0);

/// This host's addresses except loopback, as IPv6 (IPv4 as `::ffff:a.b.c.d`), kept
/// current by the agent; a protected port is only refused on these and, from the agent's
/// network namespace, on 127.0.0.0/8, `::1` and the unspecified address (connects to other
/// hosts, and to another namespace's own loopback, are never touched).
#[map]
static LOCAL_ADDRS: HashMap<[u8; 16], u8> = HashMap::with_max_entries(1024, 0);

/// Slot 0: the cookie of the agent's network namespace, where the watched servers listen
/// (set by the agent).
#[map]
static HOST_NETNS: Array<u64> = Array::with_max_entries(1, 0);

/// Descendants of the watched clusters' children (the shells of `archive_command`,
/// `COPY … TO PROGRAM`, …) forked while blocking is on: pid → 1. They may connect like the
/// cluster's own processes.
#[map]
pub(crate) static CLUSTER_TREE: HashMap<u32, u8> = HashMap::with_max_entries(65536, 0);

/// Whether `[block]` is on (the agent set its pid for the connect hooks).
#[inline(always)]
pub(crate) fn enabled() -> bool {
    CONFIG
        .get(agent_common::config::AGENT_PID)
        .is_some_and(|pid| *pid != 0)
}

/// Real uids allowed to connect to protected servers (set by the agent).
#[map]
static ALLOW_UIDS: HashMap<u32, u8> = HashMap::with_max_entries(256, 0);

/// cgroup v2 ids whose members (and their descendants) may connect (set by the agent).
#[map]
static ALLOW_CGROUPS: HashMap<u64, u8> = HashMap::with_max_entries(256, 0);

/// Per-CPU scratch space for blocked-connection events (their socket path is large).
#[map]
static BLOCKED_SCRATCH: PerCpuArray<BlockedEvent> = PerCpuArray::with_max_entries(1, 0);

/// Threads whose unix `connect` the `sys_enter_connect` tracepoint found to be refused
/// (pid_tgid → 1); the agent's `cgroup/connect_unix` program (aya cannot build that attach
/// type, so the agent assembles it) refuses the connect and clears the entry, and
/// `sys_exit_connect` clears it in any case.
#[map]
pub(crate) static DENY_CONNECT: LruHashMap<u64, u8> = LruHashMap::with_max_entries(4096, 0);

/// `connect()` of an IPv4 socket (attached to the root cgroup: every socket on the host).
#[cgroup_sock_addr(connect4)]
pub fn block_connect4(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: `user_port` and `user_ip4` are readable 4-byte context fields in connect4.
    let (port, ip4) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*sa).user_port),
            core::ptr::read_volatile(&raw const (*sa).user_ip4),
        )
    };
    let port = u16::from_be(port as u16);
    // SAFETY: map lookup of a plain value. Connects to other ports end here.
    if unsafe { BLOCK_PORTS.get(&port) }.is_none() {
        return 1;
    }
    let mut ip = [0u8; 16];
    ip[10] = 0xff;
    ip[11] = 0xff;
    let v4 = ip4.to_ne_bytes();
    ip[12] = v4[0];
    ip[13] = v4[1];
    ip[14] = v4[2];
    ip[15] = v4[3];
    refuse_tcp(AF_INET, port, &ip, in_host_netns(&ctx))
}

/// `connect()` of an IPv6 socket (also IPv4-mapped addresses).
#[cgroup_sock_addr(connect6)]
pub fn block_connect6(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: readable 4-byte context field in connect6.
    let port = u16::from_be(unsafe { core::ptr::read_volatile(&raw const (*sa).user_port) } as u16);
    // SAFETY: map lookup of a plain value. Connects to other ports end here.
    if unsafe { BLOCK_PORTS.get(&port) }.is_none() {
        return 1;
    }
    let mut ip = [0u8; 16];
    for i in 0..4 {
        // SAFETY: `user_ip6` is readable as four 4-byte context fields.
        let word = unsafe { core::ptr::read_volatile(&raw const (*sa).user_ip6[i]) }.to_ne_bytes();
        ip[i * 4] = word[0];
        ip[i * 4 + 1] = word[1];
        ip[i * 4 + 2] = word[2];
        ip[i * 4 + 3] = word[3];
    }
    refuse_tcp(AF_INET6, port, &ip, in_host_netns(&ctx))
}

/// Whether the connecting socket lives in the agent's network namespace (where loopback
/// reaches the watched servers).
#[inline(always)]
fn in_host_netns(ctx: &SockAddrContext) -> bool {
    // SAFETY: the helper takes the program's context.
    let cookie = unsafe { bpf_get_netns_cookie(ctx.sock_addr.cast()) };
    HOST_NETNS.get(0).is_some_and(|host| *host == cookie)
}

/// Verdict for a connect to a protected port: 1 (go on) unless the address is local and
/// the connector is not allowed; then the event is reported and the connect fails with
/// `ECONNREFUSED` (0 with the return value set).
#[inline(always)]
fn refuse_tcp(family: u16, port: u16, ip: &[u8; 16], host_netns: bool) -> i32 {
    if !is_local(ip, host_netns) || allowed() {
        return 1;
    }
    if let Ok(event) = blocked_event() {
        event.server.family = family;
        event.server.port = port;
        if family == AF_INET {
            event.server.addr[..4].copy_from_slice(&ip[12..]);
        } else {
            event.server.addr = *ip;
        }
        emit(EventKind::Blocked, &*event);
    }
    // SAFETY: sets this hook's return value; allowed in connect hooks.
    unsafe { bpf_set_retval(-ECONNREFUSED) };
    0
}

/// `sys_enter_connect` to a protected unix socket by someone not allowed: remember the
/// verdict for the `cgroup/connect_unix` program and report it.
#[inline(always)]
pub(crate) fn judge_unix_connect(server: &RawSockAddr) {
    // SAFETY: map lookup of a plain value.
    if unsafe { BLOCK_SOCKETS.get(&server.path) }.is_none() || allowed() {
        return;
    }
    let _ = DENY_CONNECT.insert(&bpf_get_current_pid_tgid(), &1, BPF_ANY as u64);
    if let Ok(event) = blocked_event() {
        event.server.family = AF_UNIX;
        event.server.path = server.path;
        emit(EventKind::Blocked, &*event);
    }
}

/// The per-CPU blocked event with the connector's identity filled in and no target yet.
#[inline(always)]
fn blocked_event() -> Result<&'static mut BlockedEvent, i64> {
    let event = BLOCKED_SCRATCH.get_ptr_mut(0).ok_or(1)?;
    // SAFETY: the per-CPU slot is ours for the duration of this program.
    let event = unsafe { &mut *event };
    event.header = header(EventKind::Blocked);
    event.gid = (bpf_get_current_uid_gid() >> 32) as u32;
    // SAFETY: helper without preconditions.
    event.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    event.comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    event.server.family = 0;
    event.server.port = 0;
    event.server.addr = [0; 16];
    Ok(event)
}

/// One of this host's addresses, or (with `loopback`, from the host's network namespace)
/// loopback or unspecified (`ip` as IPv6, IPv4 mapped).
#[inline(always)]
fn is_local(ip: &[u8; 16], loopback: bool) -> bool {
    if loopback {
        let mapped = ip[..10].iter().all(|b| *b == 0) && ip[10] == 0xff && ip[11] == 0xff;
        if mapped && (ip[12] == 127 || ip[12..].iter().all(|b| *b == 0)) {
            return true;
        }
        if ip[..15].iter().all(|b| *b == 0) && (ip[15] == 0 || ip[15] == 1) {
            return true;
        }
    }
    // SAFETY: map lookup of a plain value.
    unsafe { LOCAL_ADDRS.get(ip) }.is_some()
}

/// The agent (and its shim), the watched clusters' own processes, allowed uids and members
/// of allowed cgroups may connect to protected servers.
#[inline(always)]
fn allowed() -> bool {
    let tgid = current_tgid();
    if CONFIG
        .get(agent_common::config::AGENT_PID)
        .is_some_and(|pid| *pid == tgid)
    {
        return true;
    }
    // SAFETY: map lookups of plain values.
    if unsafe {
        POSTMASTERS.get(&tgid).is_some()
            || BACKENDS.get(&tgid).is_some()
            || CLUSTER_TREE.get(&tgid).is_some()
    } {
        return true;
    }
    let uid = bpf_get_current_uid_gid() as u32;
    // SAFETY: as above.
    if unsafe { ALLOW_UIDS.get(&uid) }.is_some() {
        return true;
    }
    // SAFETY: helper without preconditions; map lookup of a plain value.
    if unsafe { ALLOW_CGROUPS.get(&bpf_get_current_cgroup_id()) }.is_some() {
        return true;
    }
    for level in 1..=MAX_CGROUP_DEPTH {
        // SAFETY: helper without preconditions (0 beyond the task's depth).
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if id == 0 {
            break;
        }
        // SAFETY: map lookup of a plain value.
        if unsafe { ALLOW_CGROUPS.get(&id) }.is_some() {
            return true;
        }
    }
    false
}
