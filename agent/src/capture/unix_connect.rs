//! The `cgroup/connect_unix` program of `[block]`, assembled here because aya 0.14 cannot
//! load that attach type (Linux 6.7+). It does one thing: a unix `connect` that the
//! `sys_enter_connect` tracepoint marked in `DENY_CONNECT` (pid_tgid → 1) fails with
//! `ECONNREFUSED`; every other unix connect goes on. The tracepoint judged the target path
//! and the connector and reported the refusal.

use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
const BPF_CGROUP_UNIX_CONNECT: u32 = 49;
const ECONNREFUSED: i32 = 111;
const LOG_SIZE: usize = 64 * 1024;

/// One BPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const MOV64_IMM: u8 = 0xb7;
const MOV64_REG: u8 = 0xbf;
const ADD64_IMM: u8 = 0x07;
const STX_DW: u8 = 0x7b;
const JEQ_IMM: u8 = 0x15;
const LD_IMM64: u8 = 0x18;
const PSEUDO_MAP_FD: u8 = 1;
const FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const FUNC_MAP_DELETE_ELEM: i32 = 3;
const FUNC_GET_CURRENT_PID_TGID: i32 = 14;
const FUNC_SET_RETVAL: i32 = 187;

/// The program, with `map_fd` (DENY_CONNECT) as its map.
fn program(map_fd: i32) -> Vec<Insn> {
    vec![
        // key = bpf_get_current_pid_tgid(), on the stack at r10 - 8
        insn(CALL, 0, 0, 0, FUNC_GET_CURRENT_PID_TGID),
        insn(STX_DW, 10, 0, -8, 0),
        // if (!bpf_map_lookup_elem(&DENY_CONNECT, &key)) return 1;
        insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        insn(MOV64_REG, 2, 10, 0, 0),
        insn(ADD64_IMM, 2, 0, 0, -8),
        insn(CALL, 0, 0, 0, FUNC_MAP_LOOKUP_ELEM),
        insn(JEQ_IMM, 0, 0, 9, 0),
        // bpf_map_delete_elem(&DENY_CONNECT, &key);
        insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        insn(MOV64_REG, 2, 10, 0, 0),
        insn(ADD64_IMM, 2, 0, 0, -8),
        insn(CALL, 0, 0, 0, FUNC_MAP_DELETE_ELEM),
        // bpf_set_retval(-ECONNREFUSED); return 0;
        insn(MOV64_IMM, 1, 0, 0, -ECONNREFUSED),
        insn(CALL, 0, 0, 0, FUNC_SET_RETVAL),
        insn(MOV64_IMM, 0, 0, 0, 0),
        insn(EXIT, 0, 0, 0, 0),
        // return 1;
        insn(MOV64_IMM, 0, 0, 0, 1),
        insn(EXIT, 0, 0, 0, 0),
    ]
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`, zero-padded.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    rest: [u8; 64],
}

/// `union bpf_attr` for `BPF_LINK_CREATE` with a cgroup target, zero-padded.
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    rest: [u8; 48],
}

/// Why the program could not be loaded or attached.
#[derive(Debug, thiserror::Error)]
pub enum UnixConnectError {
    /// `BPF_PROG_LOAD` failed (kernels before 6.7 have no unix connect hook).
    #[error(
        "loading the cgroup/connect_unix program failed ({source}; it needs Linux 6.7 or later){log}"
    )]
    Load {
        /// The errno.
        #[source]
        source: std::io::Error,
        /// The verifier's log, if any (with a leading newline).
        log: String,
    },
    /// `BPF_LINK_CREATE` on the cgroup failed.
    #[error("attaching the cgroup/connect_unix program to the root cgroup failed: {0}")]
    Attach(#[source] std::io::Error),
}

/// Loads the program and links it to `cgroup` (the root of the cgroup v2 hierarchy, so
/// it runs for every unix socket). Dropping the returned link detaches it.
pub fn attach(map_fd: BorrowedFd<'_>, cgroup: BorrowedFd<'_>) -> Result<OwnedFd, UnixConnectError> {
    let insns = program(map_fd.as_raw_fd());
    let license = c"GPL";
    let mut log = vec![0u8; LOG_SIZE];
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"block_unix_c");
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: LOG_SIZE as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_UNIX_CONNECT,
        rest: [0; 64],
    };
    // SAFETY: `attr` points at live buffers (insns, license, log) for the call's duration.
    let prog = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &raw const attr,
            size_of::<ProgLoadAttr>(),
        )
    };
    if prog < 0 {
        let source = std::io::Error::last_os_error();
        let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(&log[..end]).trim().to_owned();
        return Err(UnixConnectError::Load {
            source,
            log: if text.is_empty() {
                String::new()
            } else {
                format!("\nverifier log:\n{text}")
            },
        });
    }
    // SAFETY: the kernel just returned this descriptor to us.
    let prog = unsafe { OwnedFd::from_raw_fd(prog as i32) };
    let attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_UNIX_CONNECT,
        flags: 0,
        rest: [0; 48],
    };
    // SAFETY: plain attribute struct, valid for the call.
    let link = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            &raw const attr,
            size_of::<LinkCreateAttr>(),
        )
    };
    if link < 0 {
        return Err(UnixConnectError::Attach(std::io::Error::last_os_error()));
    }
    // SAFETY: as above. The link keeps the program loaded; `prog` may close.
    Ok(unsafe { OwnedFd::from_raw_fd(link as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_path_jumps_over_to_return_one() {
        let p = program(7);
        let jeq = p.iter().position(|i| i.code == JEQ_IMM).unwrap();
        let target = jeq + 1 + p[jeq].off as usize;
        assert_eq!(p[target], insn(MOV64_IMM, 0, 0, 0, 1));
        assert_eq!(p[target + 1].code, EXIT);
        assert_eq!(p.iter().filter(|i| i.code == LD_IMM64).count(), 2);
        assert!(p.iter().filter(|i| i.code == LD_IMM64).all(|i| i.imm == 7));
        assert!(p.contains(&insn(MOV64_IMM, 1, 0, 0, -111)));
        assert_eq!(size_of::<Insn>(), 8);
    }
}
