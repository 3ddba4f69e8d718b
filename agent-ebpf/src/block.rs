//! `[block]`: refusing connects to the watched servers' ports and sockets.
//!
//! cgroup `connect4`/`connect6` hooks (attached by the agent to the cgroup v2 root, so they
//! see every socket) refuse a connect from the agent's network namespace to a protected port
//! on a local address with `ECONNREFUSED` unless the connector is allowed; `sys_enter_connect` judges unix sockets
//! the same way and leaves its verdict in `DENY_CONNECT` for the agent's hand-assembled
//! `cgroup/connect_unix` program. Every refusal is a [`BlockedEvent`].
//!
//! Clients on other hosts, and in other network namespaces of this host, are judged by an
//! `sk_lookup` program (attached to the agent's network namespace): a TCP connection request to a protected port from an address that is
//! neither this host's own (local connects were judged by the hooks above, which know the
//! process) nor in `ALLOW_REMOTE` finds no listening socket, so the kernel answers it with
//! a reset ("Connection refused"). Those refusals are [`RemoteBlockedEvent`]s, at most one
//! per remote address per second and [`REMOTE_EVENTS_PER_SEC`] per CPU; the others are
//! counted in `DROPS`. Connects and lookups for other ports return after one map lookup.

use agent_common::{
    BlockedEvent, COMM_LEN, EventHeader, EventKind, RawSockAddr, RemoteBlockedEvent, UNIX_PATH_LEN,
};
use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_netns_cookie,
            bpf_set_retval,
        },
    },
    macros::{cgroup_sock_addr, map, sk_lookup},
    maps::{
        Array, HashMap, LruHashMap, PerCpuArray,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{SkLookupContext, SockAddrContext},
};

use crate::{
    AF_INET, AF_INET6, AF_UNIX, BACKENDS, POSTMASTERS, count_drop, current_tgid, emit, header,
};

const ECONNREFUSED: i32 = 111;
const IPPROTO_TCP: u32 = 6;
/// `sk_lookup` verdicts: go on with the normal lookup, or find no socket (TCP: reset).
const SK_PASS: u32 = 1;
const SK_DROP: u32 = 0;
const NS_PER_SEC: u64 = 1_000_000_000;
/// Remote refusals reported per CPU per second at most (a flood from many addresses); the
/// others are counted in `DROPS`.
const REMOTE_EVENTS_PER_SEC: u64 = 32;
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
/// current by the agent. The connect hooks refuse a protected port only on these and on
/// 127.0.0.0/8, `::1` and the unspecified address, and only for sockets in the agent's
/// network namespace (connects to other hosts, and from or to other namespaces, are left to
/// `block_remote`); `block_remote` lets connections from these addresses through (local
/// clients, judged by the connect hooks).
#[map]
static LOCAL_ADDRS: HashMap<[u8; 16], u8> = HashMap::with_max_entries(1024, 0);

/// Networks on other hosts whose clients may connect to protected ports (set by the agent
/// from `allow_remote`): IPv6 prefixes, IPv4 networks as `::ffff:a.b.c.d/(96 + length)`.
#[map]
static ALLOW_REMOTE: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(1024, 0);

/// When a refusal from each remote address was last reported (`bpf_ktime_get_ns`): one
/// event per address per second.
#[map]
static REMOTE_REPORTED: LruHashMap<[u8; 16], u64> = LruHashMap::with_max_entries(4096, 0);

/// Per CPU: `[start of the current second (ktime ns), remote refusals reported in it]`.
#[map]
static REMOTE_BUDGET: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch space for remote refusal events.
#[map]
static REMOTE_SCRATCH: PerCpuArray<RemoteBlockedEvent> = PerCpuArray::with_max_entries(1, 0);

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
    if !in_host_netns(&ctx) {
        return 1;
    }
    refuse_tcp(AF_INET, port, &ip)
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
    if !in_host_netns(&ctx) {
        return 1;
    }
    refuse_tcp(AF_INET6, port, &ip)
}

/// Whether the connecting socket lives in the agent's network namespace, where the watched
/// servers listen. A socket in another namespace (a container with its own network) is
/// another host as far as `[block]` is concerned: its connection reaches the servers from
/// its own address, which `block_remote` judges.
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
fn refuse_tcp(family: u16, port: u16, ip: &[u8; 16]) -> i32 {
    if !is_local(ip) || allowed() {
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

/// A connection request arriving in the agent's network namespace (attached there with
/// `[block]`): TCP to a protected port from another host that is not allowed finds no
/// socket (the client gets a reset); everything else goes on to the normal lookup.
#[sk_lookup]
pub fn block_remote(ctx: SkLookupContext) -> u32 {
    let lookup = ctx.lookup;
    // SAFETY: `protocol` and `local_port` are readable 4-byte context fields.
    let (protocol, local_port) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*lookup).protocol),
            core::ptr::read_volatile(&raw const (*lookup).local_port),
        )
    };
    if protocol != IPPROTO_TCP {
        return SK_PASS;
    }
    let port = local_port as u16;
    // SAFETY: map lookup of a plain value. Lookups for other ports end here.
    if unsafe { BLOCK_PORTS.get(&port) }.is_none() {
        return SK_PASS;
    }
    // SAFETY: `family` is a readable 4-byte context field.
    let family = unsafe { core::ptr::read_volatile(&raw const (*lookup).family) } as u16;
    let mut remote = [0u8; 16];
    let mut local = [0u8; 16];
    if family == AF_INET {
        // SAFETY: readable 4-byte context fields (network byte order in memory).
        let (r, l) = unsafe {
            (
                core::ptr::read_volatile(&raw const (*lookup).remote_ip4),
                core::ptr::read_volatile(&raw const (*lookup).local_ip4),
            )
        };
        map_ipv4(&mut remote, r.to_ne_bytes());
        map_ipv4(&mut local, l.to_ne_bytes());
    } else if family == AF_INET6 {
        for i in 0..4 {
            // SAFETY: `remote_ip6` and `local_ip6` are readable as 4-byte context fields.
            let (r, l) = unsafe {
                (
                    core::ptr::read_volatile(&raw const (*lookup).remote_ip6[i]),
                    core::ptr::read_volatile(&raw const (*lookup).local_ip6[i]),
                )
            };
            remote[i * 4..i * 4 + 4].copy_from_slice(&r.to_ne_bytes());
            local[i * 4..i * 4 + 4].copy_from_slice(&l.to_ne_bytes());
        }
    } else {
        return SK_PASS;
    }
    if remote_allowed(&remote) {
        return SK_PASS;
    }
    // SAFETY: `remote_port` is a readable 2-byte context field (network byte order).
    let remote_port =
        u16::from_be(unsafe { core::ptr::read_volatile(&raw const (*lookup).remote_port) });
    report_remote(family, port, &local, remote_port, &remote);
    SK_DROP
}

/// `ip` (an IPv6 map key) set to the IPv4 address `v4` mapped (`::ffff:a.b.c.d`).
#[inline(always)]
fn map_ipv4(ip: &mut [u8; 16], v4: [u8; 4]) {
    ip[10] = 0xff;
    ip[11] = 0xff;
    ip[12] = v4[0];
    ip[13] = v4[1];
    ip[14] = v4[2];
    ip[15] = v4[3];
}

/// A remote address that may reach protected ports: loopback and this host's own addresses
/// (local connects, already judged by the connect hooks) and the `allow_remote` networks.
#[inline(always)]
fn remote_allowed(ip: &[u8; 16]) -> bool {
    let mapped = ip[..10].iter().all(|b| *b == 0) && ip[10] == 0xff && ip[11] == 0xff;
    if mapped && ip[12] == 127 {
        return true;
    }
    if ip[..15].iter().all(|b| *b == 0) && ip[15] == 1 {
        return true;
    }
    // SAFETY: map lookups of plain values.
    unsafe { LOCAL_ADDRS.get(ip).is_some() || ALLOW_REMOTE.get(Key::new(128, *ip)).is_some() }
}

/// Reports a remote refusal unless this address was reported less than a second ago or
/// this CPU reported [`REMOTE_EVENTS_PER_SEC`] this second; then it is only counted.
#[inline(always)]
fn report_remote(family: u16, port: u16, local: &[u8; 16], peer_port: u16, peer: &[u8; 16]) {
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: map lookup of a plain value.
    if let Some(last) = unsafe { REMOTE_REPORTED.get(peer) }
        && now.wrapping_sub(*last) < NS_PER_SEC
    {
        count_drop(EventKind::RemoteBlocked);
        return;
    }
    let Some(budget) = REMOTE_BUDGET.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU slot is ours for the duration of this program.
    let budget = unsafe { &mut *budget };
    if now.wrapping_sub(budget[0]) >= NS_PER_SEC {
        budget[0] = now;
        budget[1] = 0;
    }
    if budget[1] >= REMOTE_EVENTS_PER_SEC {
        count_drop(EventKind::RemoteBlocked);
        return;
    }
    budget[1] += 1;
    let _ = REMOTE_REPORTED.insert(peer, &now, BPF_ANY as u64);
    let Some(event) = REMOTE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU slot is ours for the duration of this program.
    let event = unsafe { &mut *event };
    event.header = EventHeader {
        kind: EventKind::RemoteBlocked as u32,
        pid: 0,
        tid: 0,
        uid: 0,
        ktime_ns: now,
    };
    fill_inet(&mut event.server, family, port, local);
    fill_inet(&mut event.peer, family, peer_port, peer);
    emit(EventKind::RemoteBlocked, &*event);
}

/// A TCP address (`ip` as IPv6, IPv4 mapped) in the events' layout.
#[inline(always)]
fn fill_inet(out: &mut RawSockAddr, family: u16, port: u16, ip: &[u8; 16]) {
    out.family = family;
    out.port = port;
    out.addr = [0; 16];
    if family == AF_INET {
        out.addr[..4].copy_from_slice(&ip[12..]);
    } else {
        out.addr = *ip;
    }
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

/// One of this host's addresses, loopback or unspecified (`ip` as IPv6, IPv4 mapped), for a
/// socket in the host's network namespace.
#[inline(always)]
fn is_local(ip: &[u8; 16]) -> bool {
    let mapped = ip[..10].iter().all(|b| *b == 0) && ip[10] == 0xff && ip[11] == 0xff;
    if mapped && (ip[12] == 127 || ip[12..].iter().all(|b| *b == 0)) {
        return true;
    }
    if ip[..15].iter().all(|b| *b == 0) && (ip[15] == 0 || ip[15] == 1) {
        return true;
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
