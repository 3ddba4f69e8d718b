//! `cargo xtask setup`: Debian packages, the rust-src component, bpf-linker built against the
//! toolchain's own LLVM, kernel filesystems, and the client libraries the tests drive.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{root, run};

/// Debian packages the build, the tests and the benchmarks need.
const PACKAGES: &[&str] = &[
    "postgresql",
    "postgresql-contrib",
    "postgresql-15-pgaudit",
    "pgbouncer",
    "mariadb-server",
    "mariadb-client",
    "openssl",
    "iproute2",
    "systemd",
    "chromium",
    "chromium-driver",
];

/// bpf-linker release that builds with the toolchain's LLVM.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Runs every step; each is skipped when already done.
pub fn run_all() -> anyhow::Result<()> {
    mount_kernel_filesystems();
    debian_packages()?;
    run(Command::new("rustup").args(["component", "add", "rust-src"]))?;
    bpf_linker()?;
    client_libraries()?;
    eprintln!("xtask: setup complete");
    Ok(())
}

fn mount_kernel_filesystems() {
    for (fstype, target) in [
        ("tracefs", "/sys/kernel/tracing"),
        ("bpf", "/sys/fs/bpf"),
        ("securityfs", "/sys/kernel/security"),
    ] {
        let mounted = std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(target));
        if !mounted {
            let _ = Command::new("mount")
                .args(["-t", fstype, fstype, target])
                .status();
        }
    }
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    // Debian starts the packaged servers and pgbouncer; the tests start their own.
    for service in ["postgresql", "pgbouncer", "mariadb"] {
        let _ = Command::new("systemctl").args(["stop", service]).status();
        let _ = Command::new("service").args([service, "stop"]).status();
    }
    Ok(())
}

fn bpf_linker_ok() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
}

/// The toolchain's own shared libLLVM (the ELF file, not the linker script beside it).
fn toolchain_libllvm() -> anyhow::Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("rustc --print sysroot")?;
    let sysroot = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    let lib = sysroot.join("lib");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM") && n.contains(".so"))
        })
        .filter(|p| is_elf(p))
        .collect();
    candidates.sort();
    candidates.pop().with_context(|| {
        format!(
            "no shared libLLVM in {}: the toolchain must ship its LLVM (rustup's stable does)",
            lib.display()
        )
    })
}

fn is_elf(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x7fELF"))
}

fn bpf_linker() -> anyhow::Result<()> {
    if bpf_linker_ok() {
        return Ok(());
    }
    let libllvm = toolchain_libllvm()?;
    let prefix = root().join("target/llvm-prefix");
    let libdir = prefix.join("lib");
    std::fs::create_dir_all(&libdir)?;
    let link = libdir.join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("symlink {} -> {}", link.display(), libllvm.display()))?;
    let llvm_major = libllvm
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split(['-', '.']).find_map(|p| p.parse::<u32>().ok()))
        .context("cannot read the LLVM major version from the libLLVM file name")?;
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{llvm_major}"))
        .env("LLVM_PREFIX", &prefix))?;
    if !bpf_linker_ok() {
        bail!(
            "bpf-linker {BPF_LINKER_VERSION} was installed but `bpf-linker --version` does not report it: is ~/.cargo/bin on PATH?"
        );
    }
    Ok(())
}

fn client_libraries() -> anyhow::Result<()> {
    let clients = root().join("tests/clients");
    let requirements = clients.join("requirements.txt");
    if requirements.exists() {
        run(Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements))?;
    }
    if clients.join("package.json").exists() && !clients.join("node_modules").exists() {
        if which::which("npm").is_err() {
            bail!("npm is not on PATH: the node-postgres client tests need Node.js and npm");
        }
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&clients))?;
    }
    Ok(())
}
