//! Where in a PostgreSQL server binary the kernel reads each statement.
//!
//! PostgreSQL reports every statement it runs with `pgstat_report_activity(STATE_RUNNING,
//! text)`, but it also reports a `Parse`, a `Bind` and the return to idle through the same
//! function, so a probe on its entry fires three to five times per statement and needs a
//! second probe (`pq_getbyte`'s return) to know which message is being served. A uprobe hit
//! costs a trap into the kernel each time (≈ 0.6 µs on a VM, more for a return probe), so
//! those extra hits cost more than everything else the kernel side does.
//!
//! *Direct* points put the probe on the `call pgstat_report_activity` instruction of the
//! callers that run statements instead: the one in `exec_simple_query` (found through
//! the `postgresql:query__start` USDT note, which sits right after it) and the one in
//! `exec_execute_message` (the only other call followed closely by a `GetCommandTagName`
//! call, as `set_ps_display(GetCommandTagName(portal->commandTag))` follows it), plus the one in
//! the exported `exec_replication_command`. The text is the call's second argument, so the
//! program reads it exactly as an entry probe would, one hit per statement. A relative
//! `call` is emulated by the kernel's uprobe code (no single-step), so the hit is as cheap
//! as a probe on a function entry.
//!
//! `.text` is decoded in one linear sweep, checked to start an instruction at every
//! exported function (≈ 9,500 in PostgreSQL 15), so a probe never lands inside an
//! instruction. A binary without the USDT note (built without `--enable-dtrace`), whose
//! sweep goes out of step, or whose machine code does not show exactly one such site for
//! each kind gets the *classic* probes, and the reason is logged.

use std::path::Path;

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic};
use object::read::elf::{ElfFile64, FileHeader as _, SectionHeader as _};
use object::{Endianness, Object as _, ObjectSection as _, ObjectSymbol as _};

/// The statement-reporting call a direct point sits on; passed to the kernel program as the
/// attach cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum SiteKind {
    /// `exec_simple_query`: a `Query` message, before it is parsed.
    Query = agent_common::SITE_QUERY,
    /// `exec_execute_message`: an `Execute` message, before its portal runs.
    Execute = agent_common::SITE_EXECUTE,
    /// `exec_replication_command`: a replication command (`BASE_BACKUP`, …), already
    /// parsed: recorded, never held.
    Replication = agent_common::SITE_REPLICATION,
}

/// One direct point: a `call pgstat_report_activity` instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    /// Which caller it is in.
    pub kind: SiteKind,
    /// The instruction's virtual address in the binary.
    pub address: u64,
    /// Its offset in the file (where the uprobe goes).
    pub file_offset: u64,
}

/// Why a binary gets the classic probes.
#[derive(Debug, thiserror::Error)]
pub enum NoDirectPoints {
    /// The binary could not be read or is not a 64-bit x86 ELF executable.
    #[error("{0}")]
    Unreadable(String),
    /// A symbol the analysis needs is not exported.
    #[error("it does not export {0}")]
    MissingSymbol(&'static str),
    /// No `postgresql:query__start` USDT note (PostgreSQL built without `--enable-dtrace`).
    #[error("it has no postgresql:query__start USDT probe (built without --enable-dtrace)")]
    NoUsdt,
    /// The instruction sweep of `.text` did not start an instruction at an exported
    /// function's address: the decoding is out of step with the code, so no site found in it
    /// can be trusted (a probe off an instruction boundary would corrupt the server's code).
    #[error("decoding .text went out of step with the code at the function at {0:#x}")]
    OutOfStep(u64),
    /// The machine code did not show exactly one site of a kind.
    #[error("found {found} candidate {kind:?} sites instead of exactly one")]
    Ambiguous {
        /// The kind looked for.
        kind: SiteKind,
        /// How many were found.
        found: usize,
    },
}

/// How far after a `call pgstat_report_activity` its `GetCommandTagName` call may be (in
/// between, PostgreSQL 14 and later report the portal's query id).
const EXECUTE_WINDOW: u64 = 160;

/// The direct points of `binary`: one [`Site`] of each [`SiteKind`].
pub fn find(binary: &Path) -> Result<Vec<Site>, NoDirectPoints> {
    let data = std::fs::read(binary)
        .map_err(|e| NoDirectPoints::Unreadable(format!("reading {}: {e}", binary.display())))?;
    find_in(&data)
}

/// [`find`] on the binary's bytes.
pub fn find_in(data: &[u8]) -> Result<Vec<Site>, NoDirectPoints> {
    let elf = ElfFile64::<Endianness>::parse(data)
        .map_err(|e| NoDirectPoints::Unreadable(format!("not a 64-bit ELF file: {e}")))?;
    if elf.architecture() != object::Architecture::X86_64 {
        return Err(NoDirectPoints::Unreadable(format!(
            "direct points are found on x86-64 only (this binary is {:?})",
            elf.architecture()
        )));
    }
    let symbol = |name: &'static str| {
        elf.dynamic_symbols()
            .find(|s| s.name() == Ok(name) && s.address() != 0)
            .map(|s| (s.address(), s.size()))
            .ok_or(NoDirectPoints::MissingSymbol(name))
    };
    let (report, _) = symbol("pgstat_report_activity")?;
    let (replication, replication_size) = symbol("exec_replication_command")?;
    let command_tag: Vec<u64> = ["GetCommandTagName", "GetCommandTagNameAndLen"]
        .into_iter()
        .filter_map(|name| symbol(name).ok().map(|(address, _)| address))
        .collect();
    if command_tag.is_empty() {
        return Err(NoDirectPoints::MissingSymbol("GetCommandTagName"));
    }
    let query_start = usdt_locations(&elf, "postgresql", "query__start");
    if query_start.is_empty() {
        return Err(NoDirectPoints::NoUsdt);
    }
    let text = elf
        .section_by_name(".text")
        .ok_or_else(|| NoDirectPoints::Unreadable("no .text section".into()))?;
    let code = text
        .data()
        .map_err(|e| NoDirectPoints::Unreadable(format!("reading .text: {e}")))?;
    let (text_address, text_offset) = (
        text.address(),
        text.file_range()
            .ok_or_else(|| NoDirectPoints::Unreadable(".text has no file range".into()))?
            .0,
    );

    let mut functions: Vec<u64> = elf
        .dynamic_symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.address() >= text_address)
        .map(|s| s.address())
        .filter(|&a| a < text_address + code.len() as u64)
        .collect();
    functions.sort_unstable();
    functions.dedup();
    let calls = calls_in(code, text_address, &functions)?;
    let mut query = Vec::new();
    let mut execute = Vec::new();
    let mut repl = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        if call.target != Some(report) {
            continue;
        }
        if (replication..replication + replication_size).contains(&call.address) {
            repl.push(call.address);
        }
        if query_start.contains(&call.next) {
            query.push(call.address);
            continue;
        }
        let mut following = calls[i + 1..]
            .iter()
            .take_while(|c| c.address - call.address <= EXECUTE_WINDOW)
            .take_while(|c| c.target != Some(report));
        if following.any(|c| c.target.is_some_and(|t| command_tag.contains(&t))) {
            execute.push(call.address);
        }
    }
    let one = |kind: SiteKind, found: Vec<u64>| match found.as_slice() {
        [address] => Ok(Site {
            kind,
            address: *address,
            file_offset: address - text_address + text_offset,
        }),
        _ => Err(NoDirectPoints::Ambiguous {
            kind,
            found: found.len(),
        }),
    };
    Ok(vec![
        one(SiteKind::Query, query)?,
        one(SiteKind::Execute, execute)?,
        one(SiteKind::Replication, repl)?,
    ])
}

/// A direct `call` instruction in `.text`.
#[derive(Debug, Clone, Copy)]
struct Call {
    address: u64,
    /// The address of the next instruction.
    next: u64,
    /// The callee of a `call rel32` (`None` for indirect calls).
    target: Option<u64>,
}

/// Every call instruction of `code` (loaded at `address`), in address order. GCC and
/// Clang put no data in `.text` on x86-64 (jump tables live in `.rodata`), so a linear
/// sweep decodes the same instructions the CPU runs; that every address in `functions`
/// (sorted) starts an instruction is checked on the way.
fn calls_in(code: &[u8], address: u64, functions: &[u64]) -> Result<Vec<Call>, NoDirectPoints> {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut calls = Vec::new();
    let mut functions = functions.iter().copied().peekable();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        while let Some(&function) = functions.peek() {
            if function > instruction.ip() {
                break;
            }
            if function < instruction.ip() {
                return Err(NoDirectPoints::OutOfStep(function));
            }
            functions.next();
        }
        if matches!(
            instruction.flow_control(),
            FlowControl::Call | FlowControl::IndirectCall
        ) && instruction.mnemonic() == Mnemonic::Call
        {
            calls.push(Call {
                address: instruction.ip(),
                next: instruction.next_ip(),
                target: (instruction.flow_control() == FlowControl::Call)
                    .then(|| instruction.near_branch_target()),
            });
        }
    }
    Ok(calls)
}

/// Addresses of the `provider:name` USDT probes (SystemTap `.note.stapsdt` notes), adjusted
/// for a binary whose `.stapsdt.base` moved after linking (prelink).
fn usdt_locations(elf: &ElfFile64<Endianness>, provider: &str, name: &str) -> Vec<u64> {
    let endian = elf.endian();
    let base_now = elf.section_by_name(".stapsdt.base").map(|s| s.address());
    let mut found = Vec::new();
    let Ok(sections) = elf.elf_header().sections(endian, elf.data()) else {
        return found;
    };
    for section in sections.iter() {
        let Ok(Some(mut notes)) = section.notes(endian, elf.data()) else {
            continue;
        };
        while let Ok(Some(note)) = notes.next() {
            if note.name() != b"stapsdt" || note.n_type(endian) != 3 {
                continue;
            }
            let desc = note.desc();
            if desc.len() < 24 {
                continue;
            }
            let word = |i: usize| {
                let bytes: [u8; 8] = desc[i * 8..i * 8 + 8].try_into().expect("8 bytes");
                if elf.is_little_endian() {
                    u64::from_le_bytes(bytes)
                } else {
                    u64::from_be_bytes(bytes)
                }
            };
            let (pc, base) = (word(0), word(1));
            let mut strings = desc[24..].split(|&b| b == 0);
            if strings.next() != Some(provider.as_bytes())
                || strings.next() != Some(name.as_bytes())
            {
                continue;
            }
            let pc = match base_now {
                Some(now) if base != 0 => pc.wrapping_add(now).wrapping_sub(base),
                _ => pc,
            };
            found.push(pc);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's PostgreSQL 15, which the test suite installs.
    const PG15: &str = "/usr/lib/postgresql/15/bin/postgres";

    #[test]
    fn finds_one_site_of_each_kind_in_debians_postgres_15() {
        let data = std::fs::read(PG15).expect("PostgreSQL 15 is installed (cargo xtask setup)");
        let sites = find_in(&data).expect("direct points");
        let elf = ElfFile64::<Endianness>::parse(data.as_slice()).expect("elf");
        let report = elf
            .dynamic_symbols()
            .find(|s| s.name() == Ok("pgstat_report_activity"))
            .expect("symbol")
            .address();
        let kinds: Vec<SiteKind> = sites.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [SiteKind::Query, SiteKind::Execute, SiteKind::Replication]
        );
        for site in &sites {
            // Each site is a 5-byte `call rel32` to pgstat_report_activity.
            let at = site.file_offset as usize;
            assert_eq!(data[at], 0xe8, "{site:?} is not a call rel32");
            let rel = i32::from_le_bytes(data[at + 1..at + 5].try_into().unwrap());
            assert_eq!(
                (site.address as i64 + 5 + rel as i64) as u64,
                report,
                "{site:?} does not call pgstat_report_activity"
            );
        }
        // The query site is followed by the USDT probe's nop.
        let query = sites[0];
        assert_eq!(data[query.file_offset as usize + 5], 0x90);
        assert_eq!(
            usdt_locations(&elf, "postgresql", "query__start"),
            [query.address + 5]
        );
    }

    #[test]
    fn a_binary_without_the_usdt_probe_or_symbols_gets_the_classic_probes() {
        let data = std::fs::read("/bin/true").expect("/bin/true");
        let err = find_in(&data).unwrap_err();
        assert!(
            matches!(err, NoDirectPoints::MissingSymbol("pgstat_report_activity")),
            "{err}"
        );
        let err = find_in(b"not an ELF file").unwrap_err();
        assert!(err.to_string().contains("not a 64-bit ELF file"), "{err}");
    }

    #[test]
    fn the_call_scan_sees_direct_and_indirect_calls() {
        // call +0 (to the next instruction); call *%rax; ret
        let code = [0xe8, 0, 0, 0, 0, 0xff, 0xd0, 0xc3];
        let calls = calls_in(&code, 0x1000, &[0x1000, 0x1005]).expect("in step");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].target, Some(0x1005));
        assert_eq!(calls[0].next, 0x1005);
        assert_eq!(calls[1].target, None);
        assert_eq!(calls[1].address, 0x1005);
    }

    #[test]
    fn a_function_inside_an_instruction_means_the_sweep_is_out_of_step() {
        // call +0 spans 0x1000..0x1005: a function said to start at 0x1002 cannot.
        let code = [0xe8, 0, 0, 0, 0, 0xc3];
        let err = calls_in(&code, 0x1000, &[0x1000, 0x1002]).unwrap_err();
        assert!(matches!(err, NoDirectPoints::OutOfStep(0x1002)), "{err}");
    }
}
