//! What the kernel needs to know about a MariaDB server binary (`mariadbd`): the symbols of
//! the functions it probes, and where a connection's `THD` keeps the connection id, the
//! security context (user, host, IP) and the current database.
//!
//! The `THD` layout changes with every build, and Debian ships no debug information in the
//! server package. MariaDB's plugin API exports small accessors that read exactly those
//! fields (`thd_get_thread_id`, `thd_user_name`, `thd_client_host`, `thd_client_ip`,
//! `thd_current_db`), so their machine code says where the fields are: each is one or two
//! loads from its `THD *` argument. The accessors are decoded here (iced-x86) and refused
//! unless they have exactly that shape and agree on the security context's offset, so a
//! build that reads the fields differently is reported instead of probed with wrong
//! offsets.

use std::path::Path;

use agent_common::MysqlLayout;
use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction, OpKind, Register};
use object::read::elf::ElfFile64;
use object::{Endianness, Object as _, ObjectSection as _, ObjectSymbol as _};

/// Why a binary cannot be probed as a MariaDB server.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotProbeable {
    /// Not readable, not a 64-bit x86-64 ELF file.
    #[error("{0}")]
    Unreadable(String),
    /// A function the probes need is not exported.
    #[error("the binary exports no {0} (is it a MariaDB server?)")]
    MissingSymbol(&'static str),
    /// An accessor does not have the expected shape.
    #[error(
        "{accessor} does not read the THD as expected ({detail}); this MariaDB build is not supported"
    )]
    UnexpectedCode {
        /// The accessor.
        accessor: &'static str,
        /// What was found.
        detail: String,
    },
}

/// The probed functions of one MariaDB server binary and its `THD` layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MariadbBinary {
    /// The (mangled) symbol of `dispatch_command(enum_server_command, THD*, char*, uint, …)`.
    pub dispatch: String,
    /// The symbol of `prepare_new_connection_state(THD*)` (login done).
    pub login: String,
    /// The symbol of `end_connection(THD*)`.
    pub end: String,
    /// Where the probes read the connection's fields.
    pub layout: MysqlLayout,
}

/// Mangled-name prefix of `dispatch_command(enum_server_command, THD*, char*, unsigned int`
/// (the trailing `bool` parameters differ between versions).
const DISPATCH_PREFIX: &str = "_Z16dispatch_command19enum_server_commandP3THDPcj";
const LOGIN: &str = "_Z28prepare_new_connection_stateP3THD";
const END: &str = "_Z14end_connectionP3THD";

/// Most instructions an accessor may have before its `ret`.
const ACCESSOR_LIMIT: usize = 12;

/// Whether `name` (a file name) is what MariaDB's server binary is called.
pub fn is_server_name(name: &str) -> bool {
    name == "mariadbd" || name == "mysqld"
}

/// Reads `binary` and finds its probe symbols and `THD` layout.
pub fn inspect(binary: &Path) -> Result<MariadbBinary, NotProbeable> {
    let data = std::fs::read(binary)
        .map_err(|e| NotProbeable::Unreadable(format!("reading {}: {e}", binary.display())))?;
    inspect_bytes(&data)
}

/// [`inspect`] on the binary's bytes.
pub fn inspect_bytes(data: &[u8]) -> Result<MariadbBinary, NotProbeable> {
    let elf = ElfFile64::<Endianness>::parse(data)
        .map_err(|e| NotProbeable::Unreadable(format!("not a 64-bit ELF file: {e}")))?;
    if elf.architecture() != object::Architecture::X86_64 {
        return Err(NotProbeable::Unreadable(format!(
            "MariaDB servers are probed on x86-64 only (this binary is {:?})",
            elf.architecture()
        )));
    }
    let exported = |wanted: &dyn Fn(&str) -> bool| {
        elf.dynamic_symbols()
            .chain(elf.symbols())
            .find(|s| s.address() != 0 && s.name().is_ok_and(wanted))
    };
    let symbol_name = |label: &'static str, wanted: &dyn Fn(&str) -> bool| {
        exported(wanted)
            .and_then(|s| s.name().ok().map(str::to_owned))
            .ok_or(NotProbeable::MissingSymbol(label))
    };
    let dispatch = symbol_name("dispatch_command", &|n| n.starts_with(DISPATCH_PREFIX))?;
    let login = symbol_name("prepare_new_connection_state", &|n| n == LOGIN)?;
    let end = symbol_name("end_connection", &|n| n == END)?;
    let code = |name: &'static str| -> Result<(u64, &[u8]), NotProbeable> {
        let symbol = exported(&|n| n == name).ok_or(NotProbeable::MissingSymbol(name))?;
        let address = symbol.address();
        let section = elf
            .sections()
            .find(|s| s.address() <= address && address < s.address() + s.size())
            .ok_or_else(|| NotProbeable::Unreadable(format!("{name} is in no section")))?;
        let bytes = section
            .data()
            .map_err(|e| NotProbeable::Unreadable(format!("reading {name}: {e}")))?;
        let start = (address - section.address()) as usize;
        let end = (start + 64).min(bytes.len());
        Ok((address, &bytes[start..end]))
    };
    let loads = |name: &'static str| -> Result<Vec<Load>, NotProbeable> {
        let (address, bytes) = code(name)?;
        accessor_loads(name, address, bytes)
    };
    let thread_id = single(&loads("thd_get_thread_id")?, "thd_get_thread_id")?;
    let db = single(&loads("thd_current_db")?, "thd_current_db")?;
    let (ctx_user, user) = through_context(&loads("thd_user_name")?, "thd_user_name")?;
    let (ctx_host, host) = through_context(&loads("thd_client_host")?, "thd_client_host")?;
    let (ctx_ip, ip) = through_context(&loads("thd_client_ip")?, "thd_client_ip")?;
    if ctx_user != ctx_host || ctx_user != ctx_ip {
        return Err(NotProbeable::UnexpectedCode {
            accessor: "thd_client_host",
            detail: format!(
                "the user, host and IP accessors disagree on the security context ({ctx_user:#x}, {ctx_host:#x}, {ctx_ip:#x})"
            ),
        });
    }
    Ok(MariadbBinary {
        dispatch,
        login,
        end,
        layout: MysqlLayout {
            thread_id,
            security_ctx: ctx_user,
            user,
            host,
            ip,
            db,
        },
    })
}

/// One memory access of an accessor: `dest = [base + offset]` (or `lea`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Load {
    dest: Register,
    base: Register,
    offset: u32,
}

/// The loads (and `lea`s) an accessor makes before its first `ret`; anything but moves,
/// tests, conditional jumps within it, and `ret` is refused.
fn accessor_loads(
    name: &'static str,
    address: u64,
    bytes: &[u8],
) -> Result<Vec<Load>, NotProbeable> {
    let unexpected = |detail: String| NotProbeable::UnexpectedCode {
        accessor: name,
        detail,
    };
    let mut decoder = Decoder::with_ip(64, bytes, address, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut loads = Vec::new();
    for _ in 0..ACCESSOR_LIMIT {
        if !decoder.can_decode() {
            break;
        }
        decoder.decode_out(&mut instruction);
        match instruction.flow_control() {
            FlowControl::Return => return Ok(loads),
            FlowControl::ConditionalBranch | FlowControl::Next => {}
            other => return Err(unexpected(format!("{other:?} at {:#x}", instruction.ip()))),
        }
        let memory = (0..instruction.op_count()).any(|i| instruction.op_kind(i) == OpKind::Memory);
        if !memory {
            continue;
        }
        let is_load = matches!(
            instruction.code(),
            Code::Mov_r64_rm64 | Code::Lea_r64_m | Code::Mov_r32_rm32
        );
        if !is_load
            || instruction.memory_index() != Register::None
            || instruction.memory_displacement64() > u64::from(u32::MAX)
        {
            return Err(unexpected(format!(
                "unexpected memory access ({:?}) at {:#x}",
                instruction.code(),
                instruction.ip()
            )));
        }
        loads.push(Load {
            dest: instruction.op0_register(),
            base: instruction.memory_base(),
            offset: instruction.memory_displacement64() as u32,
        });
    }
    Err(unexpected("no return within its first instructions".into()))
}

/// The offset of an accessor that reads one field of its `THD *` argument (`rdi`).
fn single(loads: &[Load], name: &'static str) -> Result<u32, NotProbeable> {
    match loads {
        [load] if load.base == Register::RDI => Ok(load.offset),
        _ => Err(NotProbeable::UnexpectedCode {
            accessor: name,
            detail: format!("expected one load from the THD, found {loads:?}"),
        }),
    }
}

/// (security context offset in the `THD`, field offset in the context) of an accessor that
/// reads `thd->security_ctx->field`.
fn through_context(loads: &[Load], name: &'static str) -> Result<(u32, u32), NotProbeable> {
    match loads {
        [context, field] if context.base == Register::RDI && field.base == context.dest => {
            Ok((context.offset, field.offset))
        }
        _ => Err(NotProbeable::UnexpectedCode {
            accessor: name,
            detail: format!(
                "expected a load of the security context, then of its field, found {loads:?}"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_MARIADBD: &str = "/usr/sbin/mariadbd";

    #[test]
    fn finds_the_probes_and_thd_layout_of_debians_mariadb() {
        // .ci/run installs mariadb-server; a missing binary is a setup error, not a skip.
        let found = inspect(Path::new(DEBIAN_MARIADBD))
            .unwrap_or_else(|e| panic!("{DEBIAN_MARIADBD}: {e} (install mariadb-server)"));
        assert!(found.dispatch.starts_with(DISPATCH_PREFIX));
        assert_eq!(found.login, LOGIN);
        assert_eq!(found.end, END);
        let layout = found.layout;
        // The user, host and IP are distinct pointers of one Security_context; the
        // connection id and the database are distinct THD members.
        assert_ne!(layout.security_ctx, 0);
        let mut fields = [layout.user, layout.host, layout.ip];
        fields.sort_unstable();
        assert!(fields.windows(2).all(|w| w[1] >= w[0] + 8), "{layout:?}");
        assert!(layout.thread_id != layout.db && layout.thread_id != layout.security_ctx);
    }

    /// `mov rax, [rdi + 0x25f8]; test rax, rax; je ret; mov rax, [rax + 8]; ret`, as GCC
    /// compiles `thd_user_name`.
    const USER_NAME: &[u8] = &[
        0x48, 0x8b, 0x87, 0xf8, 0x25, 0x00, 0x00, 0x48, 0x85, 0xc0, 0x74, 0x04, 0x48, 0x8b, 0x40,
        0x08, 0xc3,
    ];
    /// `mov rax, [rdi + 0x3f18]; ret`.
    const THREAD_ID: &[u8] = &[0x48, 0x8b, 0x87, 0x18, 0x3f, 0x00, 0x00, 0xc3];

    #[test]
    fn an_accessor_through_the_security_context_gives_both_offsets() {
        let loads = accessor_loads("thd_user_name", 0x1000, USER_NAME).unwrap();
        assert_eq!(through_context(&loads, "thd_user_name"), Ok((0x25f8, 8)));
        assert!(single(&loads, "thd_user_name").is_err());
        let loads = accessor_loads("thd_get_thread_id", 0x1000, THREAD_ID).unwrap();
        assert_eq!(single(&loads, "thd_get_thread_id"), Ok(0x3f18));
        assert!(through_context(&loads, "thd_get_thread_id").is_err());
    }

    #[test]
    fn calls_indexed_loads_and_missing_returns_are_refused() {
        // call rel32; ret
        let call = [0xe8, 0x00, 0x00, 0x00, 0x00, 0xc3];
        // mov rax, [rdi + rsi * 8 + 0x10]; ret
        let indexed = [0x48, 0x8b, 0x44, 0xf7, 0x10, 0xc3];
        // the load without its ret, twelve times
        let no_ret: Vec<u8> = THREAD_ID[..7].repeat(12);
        for code in [&call[..], &indexed, &no_ret] {
            assert!(
                matches!(
                    accessor_loads("thd_get_thread_id", 0x1000, code),
                    Err(NotProbeable::UnexpectedCode { .. })
                ),
                "{code:02x?}"
            );
        }
    }

    #[test]
    fn a_binary_without_mariadb_symbols_is_refused_by_name() {
        assert_eq!(
            inspect(Path::new("/bin/true")),
            Err(NotProbeable::MissingSymbol("dispatch_command"))
        );
    }
}
