//! MariaDB capture: uprobes in `mariadbd`, which serves every session as a thread of one
//! process.
//!
//! - `dispatch_command(command, thd, packet, length, …)`: the SQL of `COM_QUERY` and
//!   `COM_STMT_PREPARE` ([`MysqlStatementEvent`]), with the connection id, current
//!   database and user read from the `THD`.
//! - `prepare_new_connection_state(thd)`: the connection has logged in; user, host, IP and
//!   database ([`MysqlSessionEvent`], start).
//! - `end_connection(thd)`: the connection ended ([`MysqlSessionEvent`], end).
//!
//! The `THD` layout differs between builds; the agent finds it in the server's plugin-API
//! accessors and stores it in `MYSQL_LAYOUTS`, in the slot that is the probes' attach
//! cookie. Only servers in `MYSQL_SERVERS` (set by the agent) are reported. Nothing is
//! ever stopped here: a stop signal would freeze every session of the server.

use agent_common::{
    COM_QUERY, COM_STMT_PREPARE, EventKind, MAX_STATEMENT, MYSQL_LAYOUT_SLOTS, MYSQL_SESSION_END,
    MYSQL_SESSION_START, MYSQL_STATEMENT_FIXED, MysqlLayout, MysqlSessionEvent,
    MysqlStatementEvent, STMT_TRUNCATED,
};
use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_probe_read_user, bpf_probe_read_user_str_bytes, generated::bpf_get_attach_cookie,
    },
    macros::{map, uprobe},
    maps::{Array, HashMap, PerCpuArray},
    programs::ProbeContext,
};

use crate::{EVENTS, count_drop, current_tgid, header, wakeup};

/// MariaDB server tgids the agent watches (set by the agent).
#[map]
pub static MYSQL_SERVERS: HashMap<u32, u32> = HashMap::with_max_entries(256, 0);

/// `THD` layouts, one slot per server binary (set by the agent; the slot is the cookie).
#[map]
static MYSQL_LAYOUTS: Array<MysqlLayout> = Array::with_max_entries(MYSQL_LAYOUT_SLOTS, 0);

/// Per-CPU scratch space for statement events.
#[map]
static MYSQL_STATEMENT_SCRATCH: PerCpuArray<MysqlStatementEvent> =
    PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch space for session events (larger than the stack allows).
#[map]
static MYSQL_SESSION_SCRATCH: PerCpuArray<MysqlSessionEvent> = PerCpuArray::with_max_entries(1, 0);

/// The layout of the binary this probe is attached to, when the current process is a
/// watched server.
#[inline(always)]
fn layout(ctx: &ProbeContext) -> Option<&'static MysqlLayout> {
    // SAFETY: map lookup of a plain value.
    unsafe { MYSQL_SERVERS.get(&current_tgid()) }?;
    // SAFETY: helper reading this attachment's cookie.
    let slot = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    MYSQL_LAYOUTS.get(slot)
}

/// Reads a `T` at `base + offset` in the server's memory.
#[inline(always)]
fn read_at<T>(base: u64, offset: u32) -> Option<T> {
    // SAFETY: reads user memory through the helper.
    unsafe { bpf_probe_read_user((base + offset as u64) as *const T) }.ok()
}

/// Copies the NUL-terminated string at `*(base + offset)` into `out` (empty when the
/// pointer is null or unreadable).
#[inline(always)]
fn read_name(base: u64, offset: u32, out: &mut [u8]) {
    out[0] = 0;
    let Some(ptr) = read_at::<u64>(base, offset) else {
        return;
    };
    if ptr == 0 {
        return;
    }
    // SAFETY: reads user memory through the helper, bounded by `out`.
    if unsafe { bpf_probe_read_user_str_bytes(ptr as *const u8, out) }.is_err() {
        out[0] = 0;
    }
}

/// `dispatch_command(enum_server_command command, THD *thd, char *packet, uint length, …)`.
#[uprobe]
pub fn mysql_dispatch(ctx: ProbeContext) -> u32 {
    let _ = try_dispatch(&ctx);
    0
}

fn try_dispatch(ctx: &ProbeContext) -> Result<(), i64> {
    let layout = layout(ctx).ok_or(1)?;
    let command: u32 = ctx.arg(0).ok_or(1)?;
    if command != COM_QUERY as u32 && command != COM_STMT_PREPARE as u32 {
        return Ok(());
    }
    let thd: u64 = ctx.arg(1).ok_or(1)?;
    let packet: *const u8 = ctx.arg(2).ok_or(1)?;
    let length: u32 = ctx.arg(3).ok_or(1)?;
    if thd == 0 || packet.is_null() {
        return Err(1);
    }
    let event = MYSQL_STATEMENT_SCRATCH.get_ptr_mut(0).ok_or(1)?;
    // SAFETY: the per-CPU slot is ours for the duration of this program.
    let event = unsafe { &mut *event };
    event.header = header(EventKind::MysqlStatement);
    event.conn_id = read_at::<u64>(thd, layout.thread_id).unwrap_or(0);
    event.command = command as u8;
    event.flags = 0;
    read_name(thd, layout.db, &mut event.db);
    event.user[0] = 0;
    if let Some(sctx) = read_at::<u64>(thd, layout.security_ctx)
        && sctx != 0
    {
        read_name(sctx, layout.user, &mut event.user);
    }
    // The server ends every packet it reads with a NUL; `length` bounds the text anyway.
    // SAFETY: reads user memory through the helper, bounded by the buffer.
    let copied = unsafe { bpf_probe_read_user_str_bytes(packet, &mut event.text) }
        .map(|s| s.len())
        .unwrap_or(0);
    let mut text_len = copied;
    if text_len > length as usize {
        text_len = length as usize;
    }
    if text_len < length as usize {
        event.flags |= STMT_TRUNCATED;
    }
    let text_len = text_len & (MAX_STATEMENT - 1);
    event.text_len = text_len as u32;
    event.full_len = length;
    let size = MYSQL_STATEMENT_FIXED + text_len;
    // SAFETY: `size` is at most the size of the per-CPU event it points into.
    let bytes = unsafe {
        core::slice::from_raw_parts((event as *const MysqlStatementEvent).cast::<u8>(), size)
    };
    if EVENTS.output::<[u8]>(bytes, wakeup(false)).is_err() {
        count_drop(EventKind::MysqlStatement);
    }
    Ok(())
}

/// `prepare_new_connection_state(THD *thd)`: the connection has logged in.
#[uprobe]
pub fn mysql_login(ctx: ProbeContext) -> u32 {
    let _ = session(&ctx, MYSQL_SESSION_START);
    0
}

/// `end_connection(THD *thd)`: the connection is over.
#[uprobe]
pub fn mysql_end(ctx: ProbeContext) -> u32 {
    let _ = session(&ctx, MYSQL_SESSION_END);
    0
}

fn session(ctx: &ProbeContext, phase: u32) -> Result<(), i64> {
    let layout = layout(ctx).ok_or(1)?;
    let thd: u64 = ctx.arg(0).ok_or(1)?;
    if thd == 0 {
        return Err(1);
    }
    let event = MYSQL_SESSION_SCRATCH.get_ptr_mut(0).ok_or(1)?;
    // SAFETY: the per-CPU slot is ours for the duration of this program.
    let event = unsafe { &mut *event };
    event.header = header(EventKind::MysqlSession);
    event.conn_id = read_at::<u64>(thd, layout.thread_id).unwrap_or(0);
    event.phase = phase;
    event._pad = 0;
    event.user[0] = 0;
    event.host[0] = 0;
    event.ip[0] = 0;
    event.db[0] = 0;
    if phase == MYSQL_SESSION_START {
        read_name(thd, layout.db, &mut event.db);
        if let Some(sctx) = read_at::<u64>(thd, layout.security_ctx)
            && sctx != 0
        {
            read_name(sctx, layout.user, &mut event.user);
            read_name(sctx, layout.host, &mut event.host);
            read_name(sctx, layout.ip, &mut event.ip);
        }
    }
    if EVENTS
        .output::<MysqlSessionEvent>(event, wakeup(true))
        .is_err()
    {
        count_drop(EventKind::MysqlSession);
    }
    Ok(())
}
