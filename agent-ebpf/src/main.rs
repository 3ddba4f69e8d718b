//! dbward's kernel programs: PostgreSQL statement and session capture.
//!
//! - uprobes in the server binary: the statement text once per `Query` / `Execute`, either
//!   from `report_site` on the `call pgstat_report_activity` instructions of the callers that
//!   run statements (*direct* points, one hit per statement, found by the agent), or
//!   (*classic* points) from `pgstat_report_activity` itself with `pq_getbyte`'s return
//!   telling which message is served; `InitPostgres` (database and role; its return marks
//!   the session ready), `pgstat_report_appname` (`application_name`). Backends flagged in
//!   `HOLD_SESSIONS` stop before each statement of a `Query` is parsed (`report_site`, or
//!   `pg_parse_query` with classic points) and before each `Execute` runs, except plain
//!   statements whose first keyword is in `PASS_KEYWORDS`.
//! - tracepoints: `accept`/`accept4` of watched postmasters (client address), fork and exit of
//!   their children (backend lifecycle), `connect` of local clients to watched ports and
//!   sockets (client identity), `exec` of binaries named like PostgreSQL (new clusters).
//! - `block`: cgroup `connect4`/`connect6` hooks on the root cgroup (attached only with
//!   `[block]`) refuse connects to the watched servers' ports on local addresses unless the
//!   connector is allowed; `sys_enter_connect` judges unix sockets the same way for the
//!   agent's `cgroup/connect_unix` program.
//!
//! Entry points are thin wrappers over `try_*` functions; every failed ring-buffer write is
//! counted per event kind in `DROPS`, never lost silently.
#![no_std]
#![no_main]

mod block;
mod mysql;

use agent_common::{
    AcceptEvent, COMM_LEN, ConnectEvent, DROP_SLOTS, EventHeader, EventKind, ExecEvent, ExitEvent,
    ForkEvent, HELD_AT_EXECUTE, HELD_AT_PARSE, HELD_FIXED, HOLD_EXEMPT, HOLD_PASS_ALL,
    HOLD_PASS_MASK, HeldEvent, KEYWORD_LEN, LoginEvent, MAX_MEASURED_STATEMENT, MAX_STATEMENT,
    NAME_LEN, NameEvent, RING_BYTES, RawSockAddr, SITE_EXECUTE, SITE_QUERY, SITE_REPLICATION,
    STATEMENT_FIXED, STMT_LEN_LOWER_BOUND, STMT_TRUNCATED, StatementEvent, UNIX_PATH_LEN,
};
use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_ANY, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns,
        bpf_probe_read_user, bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes,
        generated::{bpf_get_attach_cookie, bpf_get_current_cgroup_id, bpf_send_signal},
    },
    macros::{map, tracepoint, uprobe, uretprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const EINPROGRESS: i64 = 115;
/// `STATE_RUNNING` of PostgreSQL's `BackendState` enum (UNDEFINED, IDLE, RUNNING, …).
const STATE_RUNNING: u32 = 2;
const SIGSTOP: u32 = 19;
/// Longest statement a flagged backend may run without a stop (see [`plain_statement`]);
/// longer ones always stop for the agent's decision.
const PLAIN_SCAN: usize = 512;

/// All events, in order.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Failed ring-buffer writes per event kind (index = kind - 1).
#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_SLOTS, 0);

/// Per-CPU scratch space for statement events (too large for the 512-byte stack).
#[map]
static STATEMENT_SCRATCH: PerCpuArray<StatementEvent> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch space for measuring statements longer than the capture size.
#[map]
static MEASURE_SCRATCH: PerCpuArray<[u8; MAX_STATEMENT]> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch space for connect events (their socket path is large).
#[map]
static CONNECT_SCRATCH: PerCpuArray<ConnectEvent> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch space for held-statement events.
#[map]
static HELD_SCRATCH: PerCpuArray<HeldEvent> = PerCpuArray::with_max_entries(1, 0);

/// Flagged backends: pid → `HOLD_EXEMPT` (the shim's own), `HOLD_PASS_ALL` (policy can stop
/// nothing of its principal), or the `HOLD_PASS_MASK` bits of the plain kinds it runs
/// without a stop; every other statement stops for a decision (set by the agent, and by the
/// kernel with the default mask when a session becomes ready or changes its
/// `application_name`).
#[map]
static HOLD_SESSIONS: HashMap<u32, u32> = HashMap::with_max_entries(65536, 0);

/// Slot 0 non-zero: holds are on, flag every backend of a watched cluster once its session
/// is ready, before its first statement. Slot 1: the pass mask for a session whose principal
/// the agent has not judged yet (what no principal could be stopped for). Set by the agent.
#[map]
static HOLD_ALL: Array<u32> = Array::with_max_entries(2, 0);

/// Upper-case first keywords of the plain kinds, NUL-padded → their bit in pass masks (set
/// by the agent).
#[map]
static PASS_KEYWORDS: HashMap<[u8; KEYWORD_LEN], u32> = HashMap::with_max_entries(64, 0);

/// Postmaster tgids the agent watches (set by the agent).
#[map]
static POSTMASTERS: HashMap<u32, u32> = HashMap::with_max_entries(1024, 0);

/// Live children of watched postmasters: child pid → postmaster pid.
#[map]
static BACKENDS: HashMap<u32, u32> = HashMap::with_max_entries(65536, 0);

/// TCP ports of watched servers (and of the shim), host byte order (set by the agent).
#[map]
static WATCH_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(256, 0);

/// Unix socket paths of watched servers, NUL-padded (set by the agent).
#[map]
static WATCH_SOCKETS: HashMap<[u8; UNIX_PATH_LEN], u8> = HashMap::with_max_entries(256, 0);

/// The frontend message type each backend is serving (from `pq_getbyte`'s return).
#[map]
static CURRENT_MESSAGE: LruHashMap<u32, u8> = LruHashMap::with_max_entries(65536, 0);

/// `accept` in progress: pid_tgid → the `upeer_sockaddr` user pointer.
#[map]
static PENDING_ACCEPT: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

/// `connect` in progress to a watched server: pid_tgid → (fd, server address).
#[map]
static PENDING_CONNECT: LruHashMap<u64, PendingConnect> = LruHashMap::with_max_entries(4096, 0);

#[repr(C)]
#[derive(Clone, Copy)]
struct PendingConnect {
    fd: i64,
    server: RawSockAddr,
}

#[inline(always)]
fn count_drop(kind: EventKind) {
    if let Some(slot) = DROPS.get_ptr_mut(kind as u32 - 1) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
fn header(kind: EventKind) -> EventHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    EventHeader {
        kind: kind as u32,
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: bpf_get_current_uid_gid() as u32,
        // SAFETY: helper without preconditions.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
    }
}

/// Unread bytes in the ring above which the agent is woken at once; below it the agent
/// drains on its own short timer, saving a wake-up per event on busy servers.
const WAKEUP_THRESHOLD: u64 = 256 * 1024;

/// Wake-up flag for the next output: `BPF_RB_FORCE_WAKEUP` once enough is queued (and for
/// lifecycle events the agent must see promptly), else `BPF_RB_NO_WAKEUP`.
#[inline(always)]
fn wakeup(urgent: bool) -> u64 {
    if urgent || EVENTS.query(BPF_RB_AVAIL_DATA as u64) > WAKEUP_THRESHOLD {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Writes a fixed-size lifecycle event (wakes the agent), counting a drop when the ring is
/// full.
#[inline(always)]
fn emit<T: 'static>(kind: EventKind, event: &T) {
    if EVENTS.output::<T>(event, wakeup(true)).is_err() {
        count_drop(kind);
    }
}

#[inline(always)]
fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// Server-side uprobes only report backends of watched postmasters (`--pid` filters, and
/// several agents on one host never see each other's clusters).
#[inline(always)]
fn in_watched_backend() -> bool {
    // SAFETY: map lookup of a plain value.
    unsafe { BACKENDS.get(&current_tgid()) }.is_some()
}

// ---------------------------------------------------------------- statements

/// `pq_getbyte()` returned the type byte of the next frontend message (or EOF).
#[uretprobe]
pub fn pq_getbyte_ret(ctx: RetProbeContext) -> u32 {
    if !in_watched_backend() {
        return 0;
    }
    let ret: i32 = ctx.ret();
    if (0..=255).contains(&ret) {
        let _ = CURRENT_MESSAGE.insert(&current_tgid(), &(ret as u8), BPF_ANY as u64);
    }
    0
}

/// `pgstat_report_activity(BackendState state, const char *cmd_str)` (the *classic* points):
/// every report, with the message being served (from `pq_getbyte`) telling which ones run a
/// statement.
#[uprobe]
pub fn pgstat_report_activity(ctx: ProbeContext) -> u32 {
    // Bind and Parse report the statement too; only Query and Execute run it. A backend
    // that was already waiting in `pq_getbyte` when the probes were attached has no entry
    // yet (0): report its statement rather than lose it.
    let message = current_message();
    if message != b'Q' && message != b'E' && message != 0 {
        return 0;
    }
    let _ = report_statement(&ctx, message, message == b'E');
    0
}

/// A `call pgstat_report_activity` instruction in one of the callers that run statements
/// (the *direct* points, one hit per statement; see the agent's `capture::points`). The
/// attach cookie says which: [`SITE_QUERY`], [`SITE_EXECUTE`] or [`SITE_REPLICATION`]. At
/// the call the arguments are in their registers, as at a function entry.
#[uprobe]
pub fn report_site(ctx: ProbeContext) -> u32 {
    // SAFETY: helper reading this attachment's cookie.
    let site = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let _ = match site {
        SITE_QUERY => report_statement(&ctx, b'Q', false).and_then(|text| match hold_pass() {
            Some(pass) => hold_statement(text, pass, HELD_AT_PARSE),
            None => Ok(()),
        }),
        SITE_EXECUTE => report_statement(&ctx, b'E', true).map(|_| ()),
        SITE_REPLICATION => report_statement(&ctx, b'Q', false).map(|_| ()),
        _ => Ok(()),
    };
    0
}

/// Sends the statement reported by `pgstat_report_activity(STATE_RUNNING, text)` (the
/// probe's arguments) as a [`StatementEvent`] for `message`; an `Execute` (`execute`) of a
/// flagged backend then stops here, before its portal runs, as a `Query` stops before it
/// is parsed. Returns the text's address.
#[inline(always)]
fn report_statement(ctx: &ProbeContext, message: u8, execute: bool) -> Result<*const u8, i64> {
    let state: u32 = ctx.arg(0).ok_or(1)?;
    let text: *const u8 = ctx.arg(1).ok_or(1)?;
    if state != STATE_RUNNING || text.is_null() || !in_watched_backend() {
        return Err(1);
    }
    let event = STATEMENT_SCRATCH.get_ptr_mut(0).ok_or(1)?;
    // SAFETY: the per-CPU slot is ours for the duration of this program.
    let event = unsafe { &mut *event };
    event.header = header(EventKind::Statement);
    event.message = message;
    event.flags = 0;
    // SAFETY: reads user memory through the helper, bounded by the buffer.
    let copied = unsafe { bpf_probe_read_user_str_bytes(text, &mut event.text) }
        .map(|s| s.len())
        .unwrap_or(0);
    let mut full_len = copied;
    if copied >= MAX_STATEMENT - 1 {
        event.flags |= STMT_TRUNCATED;
        full_len = measure(text, copied, &mut event.flags);
    }
    let text_len = copied & (MAX_STATEMENT - 1);
    event.text_len = text_len as u32;
    event.full_len = full_len as u32;
    let size = STATEMENT_FIXED + text_len;
    // SAFETY: `size` is at most the size of the per-CPU event it points into.
    let bytes =
        unsafe { core::slice::from_raw_parts((event as *const StatementEvent).cast::<u8>(), size) };
    if EVENTS.output::<[u8]>(bytes, wakeup(false)).is_err() {
        count_drop(EventKind::Statement);
    }
    if execute && let Some(pass) = hold_pass() {
        hold_statement(text, pass, HELD_AT_EXECUTE)?;
    }
    Ok(text)
}

/// Length of a statement longer than the capture size, measured in chunks up to
/// [`MAX_MEASURED_STATEMENT`]; beyond that the result is a lower bound.
#[inline(always)]
fn measure(text: *const u8, already: usize, flags: &mut u8) -> usize {
    let Some(buf) = MEASURE_SCRATCH.get_ptr_mut(0) else {
        *flags |= STMT_LEN_LOWER_BOUND;
        return already;
    };
    // SAFETY: per-CPU scratch owned by this program run.
    let buf = unsafe { &mut *buf };
    let chunk = MAX_STATEMENT - 1;
    let mut total = already;
    for _ in 1..(MAX_MEASURED_STATEMENT / MAX_STATEMENT) {
        // SAFETY: user read bounded by `buf`; the pointer stays inside the string until NUL.
        let n = unsafe { bpf_probe_read_user_str_bytes(text.wrapping_add(total), buf) }
            .map(|s| s.len())
            .unwrap_or(0);
        total += n;
        if n < chunk {
            return total;
        }
    }
    *flags |= STMT_LEN_LOWER_BOUND;
    total
}

// ---------------------------------------------------------------- hold

/// `pg_parse_query(const char *query_string)`: stop a flagged backend before a statement of
/// a `Query` message is parsed, unless it is plain and policy lets its kind run (see
/// [`plain_statement`]), and tell the agent where the text lives. A `Parse` message is not
/// stopped here: nothing runs until its `Execute`, which stops in
/// [`pgstat_report_activity`], once per execution.
#[uprobe]
pub fn parse_query(ctx: ProbeContext) -> u32 {
    let Some(pass) = hold_pass() else {
        return 0;
    };
    if current_message() == b'P' {
        return 0;
    }
    let Some(text) = ctx.arg::<*const u8>(0) else {
        return 0;
    };
    let _ = hold_statement(text, pass, HELD_AT_PARSE);
    0
}

/// The pass mask of the current backend when it is flagged for holds, `None` when it is not
/// (or is exempt, or policy can stop nothing of it). Unflagged backends pay only this lookup.
#[inline(always)]
fn hold_pass() -> Option<u32> {
    // SAFETY: map lookup of a plain value.
    let flags = (unsafe { HOLD_SESSIONS.get(&current_tgid()) }).copied()?;
    (flags & (HOLD_EXEMPT | HOLD_PASS_ALL) == 0).then_some(flags & HOLD_PASS_MASK)
}

/// The frontend message the current backend is serving (0 when not seen yet: a backend that
/// was already waiting for a message when the probes were attached).
#[inline(always)]
fn current_message() -> u8 {
    // SAFETY: map lookup of a plain value.
    unsafe { CURRENT_MESSAGE.get(&current_tgid()) }
        .copied()
        .unwrap_or(0)
}

/// Stops the current backend before the statement at `text` runs, unless it is plain and
/// in `pass` (see [`plain_statement`]), and sends the agent a [`HeldEvent`] saying where it
/// stopped (`at`).
fn hold_statement(text: *const u8, pass: u32, at: u8) -> Result<(), i64> {
    if text.is_null() {
        return Ok(());
    }
    let event = HELD_SCRATCH.get_ptr_mut(0).ok_or(1)?;
    // SAFETY: the per-CPU slot is ours for the duration of this program.
    let event = unsafe { &mut *event };
    // SAFETY: reads user memory through the helper, bounded by the buffer.
    let copied = unsafe { bpf_probe_read_user_str_bytes(text, &mut event.text) }
        .map(|s| s.len())
        .unwrap_or(0);
    if plain_statement(&event.text, copied, pass) {
        return Ok(());
    }
    // SAFETY: signals the current task; delivered before it returns to user space.
    unsafe { bpf_send_signal(SIGSTOP) };
    event.header = header(EventKind::Held);
    event.buf_addr = text as u64;
    event.flags = 0;
    event.at = at;
    let mut full_len = copied;
    if copied >= MAX_STATEMENT - 1 {
        event.flags |= STMT_TRUNCATED;
        full_len = measure(text, copied, &mut event.flags);
    }
    let text_len = copied & (MAX_STATEMENT - 1);
    event.text_len = text_len as u32;
    event.full_len = full_len as u32;
    let size = HELD_FIXED + text_len;
    // SAFETY: `size` is at most the size of the per-CPU event it points into.
    let bytes =
        unsafe { core::slice::from_raw_parts((event as *const HeldEvent).cast::<u8>(), size) };
    if EVENTS
        .output::<[u8]>(bytes, BPF_RB_FORCE_WAKEUP as u64)
        .is_err()
    {
        count_drop(EventKind::Held);
    }
    Ok(())
}

/// Plain-statement scanner states (see [`plain_statement`]).
const PLAIN_LEAD: u32 = 0;
const PLAIN_FIRST: u32 = 1;
const PLAIN_BODY: u32 = 2;
const PLAIN_WORD: u32 = 3;
const PLAIN_DASH: u32 = 4;
const PLAIN_SLASH: u32 = 5;
const PLAIN_SEMI: u32 = 6;
const PLAIN_END: u32 = 7;
const PLAIN_STOP: u32 = 8;
const PLAIN_DOLLAR: u32 = 9;

/// `INTO` and `FOR` packed as [`PlainScan::word`] accumulates them: words that turn a
/// SELECT into DDL (`SELECT … INTO t`) or a row lock (`FOR UPDATE`).
const WORD_INTO: u32 = u32::from_be_bytes(*b"INTO");
const WORD_FOR: u32 = u32::from_be_bytes(*b"\0FOR");

/// Plain-statement scanner state, kept in a map so the verifier sees one state per
/// position instead of one per path through the scanner (which exceeds its complexity
/// limit).
#[repr(C)]
#[derive(Clone, Copy)]
struct PlainScan {
    state: u32,
    /// Length of the first keyword so far.
    len: u32,
    /// The current word's first four letters, upper-cased, packed big-endian.
    word: u32,
    /// The current word's length.
    word_len: u32,
    /// The first keyword, upper-cased and NUL-padded.
    keyword: [u8; KEYWORD_LEN],
}

/// Per-CPU plain-statement scanner state.
#[map]
static SCAN_SCRATCH: PerCpuArray<PlainScan> = PerCpuArray::with_max_entries(1, 0);

/// Whether the statement is *plain* and its first keyword's bit in `PASS_KEYWORDS` is in
/// `pass`, so a flagged backend may run it without a stop. Plain means that PostgreSQL's lexer cannot
/// read it as anything but a list of keywords, names, numbers and operators: the whole
/// text is within [`PLAIN_SCAN`] bytes, starts with a keyword, and has no comment, quote,
/// dollar sign other than a parameter's (`$1`), backslash, parenthesis (no function call), byte outside printable ASCII,
/// second statement (only whitespace after a `;`), or the word `INTO` or `FOR`. Anything
/// else stops, and the agent's classifier decides on the full text.
#[inline(always)]
fn plain_statement(text: &[u8; MAX_STATEMENT], len: usize, pass: u32) -> bool {
    if len >= PLAIN_SCAN {
        return false;
    }
    let Some(scan) = SCAN_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: the per-CPU slot is ours for the duration of this program. Volatile accesses
    // keep the state in the map (see `PlainScan`).
    let plain = unsafe {
        core::ptr::write_volatile(&raw mut (*scan).state, PLAIN_LEAD);
        core::ptr::write_volatile(&raw mut (*scan).len, 0);
        core::ptr::write_volatile(&raw mut (*scan).word, 0);
        core::ptr::write_volatile(&raw mut (*scan).word_len, 0);
        (*scan).keyword = [0; KEYWORD_LEN];
        for i in 0..PLAIN_SCAN {
            let c = if i < len { text[i] } else { 0 };
            let state = core::ptr::read_volatile(&raw const (*scan).state);
            let next = plain_step(state, c, &mut *scan);
            core::ptr::write_volatile(&raw mut (*scan).state, next);
            if next == PLAIN_END || next == PLAIN_STOP {
                break;
            }
        }
        core::ptr::read_volatile(&raw const (*scan).state) == PLAIN_END
    };
    // SAFETY: map lookup of a plain value; `scan` is the per-CPU slot filled above.
    plain && unsafe { PASS_KEYWORDS.get(&(*scan).keyword) }.is_some_and(|bit| pass & *bit != 0)
}

/// One byte of the plain-statement scanner: the next state.
#[inline(always)]
fn plain_step(state: u32, c: u8, scan: &mut PlainScan) -> u32 {
    let word_char = c.is_ascii_alphanumeric() || c == b'_';
    match state {
        PLAIN_LEAD => match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => PLAIN_LEAD,
            _ if c.is_ascii_alphabetic() => {
                scan.keyword[0] = c.to_ascii_uppercase();
                // SAFETY: plain store into the per-CPU slot.
                unsafe { core::ptr::write_volatile(&raw mut scan.len, 1) };
                PLAIN_FIRST
            }
            _ => PLAIN_STOP,
        },
        PLAIN_FIRST if c.is_ascii_alphabetic() || c == b'_' => {
            // SAFETY: plain load/store in the per-CPU slot.
            let n = unsafe { core::ptr::read_volatile(&raw const scan.len) } as usize;
            if n >= KEYWORD_LEN - 1 {
                return PLAIN_STOP;
            }
            scan.keyword[n & (KEYWORD_LEN - 1)] = c.to_ascii_uppercase();
            // SAFETY: as above.
            unsafe { core::ptr::write_volatile(&raw mut scan.len, n as u32 + 1) };
            PLAIN_FIRST
        }
        PLAIN_FIRST if c.is_ascii_digit() => PLAIN_STOP,
        PLAIN_WORD if word_char => {
            // SAFETY: plain load/store in the per-CPU slot.
            unsafe {
                let n = core::ptr::read_volatile(&raw const scan.word_len);
                if n < 4 {
                    let w = core::ptr::read_volatile(&raw const scan.word);
                    core::ptr::write_volatile(
                        &raw mut scan.word,
                        (w << 8) | u32::from(c.to_ascii_uppercase()),
                    );
                }
                core::ptr::write_volatile(&raw mut scan.word_len, n.saturating_add(1));
            }
            PLAIN_WORD
        }
        PLAIN_WORD => {
            // SAFETY: plain loads from the per-CPU slot.
            let (w, n) = unsafe {
                (
                    core::ptr::read_volatile(&raw const scan.word),
                    core::ptr::read_volatile(&raw const scan.word_len),
                )
            };
            if (n == 4 && w == WORD_INTO) || (n == 3 && w == WORD_FOR) {
                return PLAIN_STOP;
            }
            plain_body(c, scan)
        }
        // `$` then a digit is a parameter (`$1`); a dollar quote's delimiter (`$$`, `$tag$`)
        // never has a digit second.
        PLAIN_DOLLAR if c.is_ascii_digit() => PLAIN_BODY,
        PLAIN_DASH if c == b'-' => PLAIN_STOP,
        PLAIN_SLASH if c == b'*' => PLAIN_STOP,
        PLAIN_SEMI => match c {
            0 => PLAIN_END,
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | b';' => PLAIN_SEMI,
            _ => PLAIN_STOP,
        },
        PLAIN_FIRST | PLAIN_BODY | PLAIN_DASH | PLAIN_SLASH => plain_body(c, scan),
        _ => PLAIN_STOP,
    }
}

/// A byte between tokens of a plain statement.
#[inline(always)]
fn plain_body(c: u8, scan: &mut PlainScan) -> u32 {
    match c {
        0 => PLAIN_END,
        b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => PLAIN_BODY,
        b';' => PLAIN_SEMI,
        b'-' => PLAIN_DASH,
        b'/' => PLAIN_SLASH,
        b'$' => PLAIN_DOLLAR,
        b'\'' | b'"' | b'\\' | b'(' | b')' => PLAIN_STOP,
        _ if !(0x20..0x7f).contains(&c) => PLAIN_STOP,
        _ if c.is_ascii_alphabetic() || c == b'_' => {
            // SAFETY: plain stores into the per-CPU slot.
            unsafe {
                core::ptr::write_volatile(&raw mut scan.word, u32::from(c.to_ascii_uppercase()));
                core::ptr::write_volatile(&raw mut scan.word_len, 1);
            }
            PLAIN_WORD
        }
        _ => PLAIN_BODY,
    }
}

// ---------------------------------------------------------------- session identity

/// `InitPostgres(const char *in_dbname, Oid dboid, const char *username, …)`.
#[uprobe]
pub fn init_postgres(ctx: ProbeContext) -> u32 {
    let _ = try_init_postgres(&ctx);
    0
}

fn try_init_postgres(ctx: &ProbeContext) -> Result<(), i64> {
    if !in_watched_backend() {
        return Ok(());
    }
    let dbname: *const u8 = ctx.arg(0).ok_or(1)?;
    let username: *const u8 = ctx.arg(2).ok_or(1)?;
    let mut event = LoginEvent {
        header: header(EventKind::Login),
        database: [0; NAME_LEN],
        user: [0; NAME_LEN],
    };
    if !dbname.is_null() {
        // SAFETY: bounded user read.
        let _ = unsafe { bpf_probe_read_user_str_bytes(dbname, &mut event.database) };
    }
    if !username.is_null() {
        // SAFETY: bounded user read.
        let _ = unsafe { bpf_probe_read_user_str_bytes(username, &mut event.user) };
    }
    emit(EventKind::Login, &event);
    Ok(())
}

/// `InitPostgres` returned: the session passed authentication and is ready.
#[uretprobe]
pub fn init_postgres_ret(_ctx: RetProbeContext) -> u32 {
    if !in_watched_backend() {
        return 0;
    }
    flag_with_default_mask();
    emit(EventKind::Ready, &header(EventKind::Ready));
    0
}

/// While holds are on, flags the current backend with the default pass mask, unless it is
/// the shim's own session.
#[inline(always)]
fn flag_with_default_mask() {
    if !HOLD_ALL.get(0).is_some_and(|on| *on != 0) {
        return;
    }
    let pid = current_tgid();
    // SAFETY: map lookup of a plain value.
    if unsafe { HOLD_SESSIONS.get(&pid) }.is_some_and(|flags| flags & HOLD_EXEMPT != 0) {
        return;
    }
    let default = HOLD_ALL.get(1).copied().unwrap_or(0) & HOLD_PASS_MASK;
    let _ = HOLD_SESSIONS.insert(&pid, &default, BPF_ANY as u64);
}

/// `pgstat_report_appname(const char *appname)`.
#[uprobe]
pub fn report_appname(ctx: ProbeContext) -> u32 {
    if !in_watched_backend() {
        return 0;
    }
    let Some(name) = ctx.arg::<*const u8>(0) else {
        return 0;
    };
    if name.is_null() {
        return 0;
    }
    // The principal may change with the name: back to the default mask until the agent
    // has judged the session again.
    flag_with_default_mask();
    let mut event = NameEvent {
        header: header(EventKind::AppName),
        name: [0; NAME_LEN],
    };
    // SAFETY: bounded user read.
    let _ = unsafe { bpf_probe_read_user_str_bytes(name, &mut event.name) };
    emit(EventKind::AppName, &event);
    0
}

// ---------------------------------------------------------------- server lifecycle

/// `sys_enter_accept` / `sys_enter_accept4`: remember where the peer address goes.
#[tracepoint]
pub fn accept_enter(ctx: TracePointContext) -> u32 {
    // SAFETY: map lookup of a plain value.
    if unsafe { POSTMASTERS.get(&current_tgid()) }.is_none() {
        return 0;
    }
    // SAFETY: offset 24 is `upeer_sockaddr` in both syscalls' formats.
    let Ok(addr) = (unsafe { ctx.read_at::<u64>(24) }) else {
        return 0;
    };
    let _ = PENDING_ACCEPT.insert(&bpf_get_current_pid_tgid(), &addr, BPF_ANY as u64);
    0
}

/// `sys_exit_accept` / `sys_exit_accept4`: a watched postmaster accepted a client.
#[tracepoint]
pub fn accept_exit(ctx: TracePointContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: map lookup of a plain value.
    let Some(addr) = (unsafe { PENDING_ACCEPT.get(&key) }).copied() else {
        return 0;
    };
    let _ = PENDING_ACCEPT.remove(&key);
    // SAFETY: offset 16 is `ret` in sys_exit_* formats.
    let Ok(fd) = (unsafe { ctx.read_at::<i64>(16) }) else {
        return 0;
    };
    if fd < 0 {
        return 0;
    }
    let mut event = AcceptEvent {
        header: header(EventKind::Accept),
        fd: fd as i32,
        _pad: 0,
        peer: empty_addr(),
    };
    if addr != 0 {
        read_sockaddr(addr as *const u8, &mut event.peer);
    }
    emit(EventKind::Accept, &event);
    0
}

/// `sched_process_fork`: a watched postmaster forked (a backend, or an auxiliary process).
#[tracepoint]
pub fn process_fork(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the tracepoint's format file (parent_pid 12, child_pid 20).
    let (Ok(parent), Ok(child)) = (unsafe { ctx.read_at::<u32>(12) }, unsafe {
        ctx.read_at::<u32>(20)
    }) else {
        return 0;
    };
    // SAFETY: map lookup of a plain value.
    if unsafe { POSTMASTERS.get(&parent) }.is_none() {
        if block::enabled() {
            let tgid = current_tgid();
            // SAFETY: map lookups of plain values.
            if unsafe { BACKENDS.get(&tgid).is_some() || block::CLUSTER_TREE.get(&tgid).is_some() }
            {
                let _ = block::CLUSTER_TREE.insert(&child, &1, BPF_ANY as u64);
            }
        }
        return 0;
    }
    let _ = BACKENDS.insert(&child, &parent, BPF_ANY as u64);
    let event = ForkEvent {
        header: header(EventKind::Fork),
        child,
        _pad: 0,
    };
    emit(EventKind::Fork, &event);
    0
}

/// `sched_process_exit`: the last thread of a watched process exited.
#[tracepoint]
pub fn process_exit(ctx: TracePointContext) -> u32 {
    if block::enabled() {
        let _ = block::CLUSTER_TREE.remove(&(bpf_get_current_pid_tgid() as u32));
    }
    // SAFETY: offset 32 is `group_dead` in the tracepoint's format file.
    let group_dead = unsafe { ctx.read_at::<u8>(32) }.unwrap_or(1);
    if group_dead == 0 {
        return 0;
    }
    let pid = current_tgid();
    // SAFETY: map lookups of plain values.
    let watched = unsafe {
        BACKENDS.get(&pid).is_some()
            || POSTMASTERS.get(&pid).is_some()
            || mysql::MYSQL_SERVERS.get(&pid).is_some()
    };
    if !watched {
        return 0;
    }
    let _ = BACKENDS.remove(&pid);
    let _ = mysql::MYSQL_SERVERS.remove(&pid);
    let _ = CURRENT_MESSAGE.remove(&pid);
    let _ = HOLD_SESSIONS.remove(&pid);
    let event = ExitEvent {
        header: header(EventKind::Exit),
    };
    emit(EventKind::Exit, &event);
    0
}

/// `sched_process_exec`: report binaries named like a PostgreSQL or MariaDB server so the agent can
/// attach to clusters that start after it.
#[tracepoint]
pub fn process_exec(_ctx: TracePointContext) -> u32 {
    let Ok(comm) = bpf_get_current_comm() else {
        return 0;
    };
    if !(comm.starts_with(b"postgres\0")
        || comm.starts_with(b"postmaster\0")
        || comm.starts_with(b"mariadbd\0")
        || comm.starts_with(b"mysqld\0"))
    {
        return 0;
    }
    let event = ExecEvent {
        header: header(EventKind::Exec),
        comm,
    };
    emit(EventKind::Exec, &event);
    0
}

// ---------------------------------------------------------------- client identity

/// `sys_enter_connect`: a client is connecting; keep it if the target is watched.
#[tracepoint]
pub fn connect_enter(ctx: TracePointContext) -> u32 {
    let _ = try_connect_enter(&ctx);
    0
}

fn try_connect_enter(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: offsets from the sys_enter_connect format file (fd 16, uservaddr 24).
    let fd = unsafe { ctx.read_at::<i64>(16) }?;
    let addr = unsafe { ctx.read_at::<u64>(24) }?;
    if addr == 0 {
        return Ok(());
    }
    let scratch = CONNECT_SCRATCH.get_ptr_mut(0).ok_or(1)?;
    // SAFETY: per-CPU scratch owned by this program run.
    let scratch = unsafe { &mut *scratch };
    scratch.server = empty_addr();
    read_sockaddr(addr as *const u8, &mut scratch.server);
    let server = &scratch.server;
    if server.family == AF_UNIX {
        block::judge_unix_connect(server);
    }
    // SAFETY: map lookups of plain values.
    let watched = match server.family {
        AF_INET | AF_INET6 => unsafe { WATCH_PORTS.get(&server.port) }.is_some(),
        AF_UNIX => unsafe { WATCH_SOCKETS.get(&server.path) }.is_some(),
        _ => false,
    };
    if !watched {
        return Ok(());
    }
    let pending = PendingConnect {
        fd,
        server: *server,
    };
    PENDING_CONNECT
        .insert(&bpf_get_current_pid_tgid(), &pending, BPF_ANY as u64)
        .map_err(i64::from)
}

/// `sys_exit_connect`: the watched connect went through (or is in progress).
#[tracepoint]
pub fn connect_exit(ctx: TracePointContext) -> u32 {
    let _ = block::DENY_CONNECT.remove(&bpf_get_current_pid_tgid());
    let _ = try_connect_exit(&ctx);
    0
}

fn try_connect_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let key = bpf_get_current_pid_tgid();
    let pending = PENDING_CONNECT.get_ptr(&key).ok_or(1)?;
    // SAFETY: offset 16 is `ret` in sys_exit_* formats.
    let ret = unsafe { ctx.read_at::<i64>(16) }?;
    let event = CONNECT_SCRATCH.get_ptr_mut(0).ok_or(1)?;
    // SAFETY: per-CPU scratch owned by this program run; `pending` is a live map value.
    let (event, pending) = unsafe { (&mut *event, &*pending) };
    if ret == 0 || ret == -EINPROGRESS {
        event.header = header(EventKind::Connect);
        event.gid = (bpf_get_current_uid_gid() >> 32) as u32;
        event.fd = pending.fd as i32;
        // SAFETY: helper without preconditions.
        event.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
        event.comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
        event.server = pending.server;
        emit(EventKind::Connect, &*event);
    }
    let _ = PENDING_CONNECT.remove(&key);
    Ok(())
}

// ---------------------------------------------------------------- helpers

#[inline(always)]
fn empty_addr() -> RawSockAddr {
    RawSockAddr {
        family: 0,
        port: 0,
        _pad: 0,
        addr: [0; 16],
        path: [0; UNIX_PATH_LEN],
        _pad2: [0; 4],
    }
}

/// Decodes a user-space `struct sockaddr` (in, in6 or un) into `out`.
#[inline(always)]
fn read_sockaddr(ptr: *const u8, out: &mut RawSockAddr) {
    // SAFETY: user reads through helpers; failures leave `out` zeroed.
    unsafe {
        let Ok(family) = bpf_probe_read_user(ptr.cast::<u16>()) else {
            return;
        };
        out.family = family;
        match family {
            AF_INET => {
                let port = bpf_probe_read_user(ptr.add(2).cast::<u16>()).unwrap_or(0);
                out.port = u16::from_be(port);
                let _ = bpf_probe_read_user_buf(ptr.add(4), &mut out.addr[..4]);
            }
            AF_INET6 => {
                let port = bpf_probe_read_user(ptr.add(2).cast::<u16>()).unwrap_or(0);
                out.port = u16::from_be(port);
                let _ = bpf_probe_read_user_buf(ptr.add(8), &mut out.addr);
            }
            AF_UNIX => {
                let _ = bpf_probe_read_user_str_bytes(ptr.add(2), &mut out.path);
            }
            _ => {}
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
