//! Builds the kernel programs (`agent-ebpf`) for the BPF target and leaves the object in
//! `OUT_DIR`, where `capture::loader` embeds it.
//!
//! Uses the running (stable) toolchain with `RUSTC_BOOTSTRAP=1` for `-Z build-std=core`;
//! `bpf-linker` must be on PATH (`cargo xtask setup` installs it).

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("agent crate has no parent directory"))?;
    let ebpf_dir = root.join("agent-ebpf");
    let common_dir = root.join("agent-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| "stable".to_owned());
    // SAFETY: build scripts are single-threaded; the child cargo inherits this.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    if which::which("bpf-linker").is_err() {
        return Err(anyhow!(
            "bpf-linker not found on PATH: run `cargo xtask setup` (it builds bpf-linker against the toolchain's own LLVM)"
        ));
    }
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("agent-ebpf path is not UTF-8"))?;
    aya_build::build_ebpf(
        [Package {
            name: "agent-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        Toolchain::Custom(&toolchain),
    )
}
