//! `sluice module`: look inside a WebAssembly policy module and run it by hand.
//!
//! `inspect` shows what identifies a module (sha256, declared name and version) and whether it
//! speaks the host's ABI; `run` runs it on an inventory and prints the policy document, which
//! is how a module author debugs a generator before `sluice compile` uses it; `translate` turns
//! a per-packet verdict function into eBPF and, with `--verify`, proves it equal to wasmtime
//! on generated packets (`crate::verdict_verify`). [`LimitArgs`] is the set of sandbox-limit
//! flags, shared with every command that runs modules.

use crate::verdict_verify::{Verifier, packets};
use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, WrapErr, miette};
use sluice_compiler::resolve::Inventory;
use sluice_compiler::resolve::InventoryFiles;
use sluice_compiler::wasm_verdict::{OnTrap, VerdictModule, standalone_program};
use sluice_runtime::{Input, Limits, Runtime, abi};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ModuleArgs {
    #[command(subcommand)]
    pub command: ModuleCommand,
}

#[derive(Subcommand, Debug)]
pub enum ModuleCommand {
    /// Print a module's sha256, declared name and version, ABI version, imports and exports.
    Inspect {
        /// The module (.wasm, or .wat text).
        file: PathBuf,
    },
    /// Run a module on an inventory and print the policy document it returns (canonical JSON).
    Run {
        /// The module (.wasm, or .wat text).
        file: PathBuf,
        /// The inventory (YAML or JSON, spec/inventory.md).
        #[arg(long)]
        inventory: PathBuf,
        /// Parameters for the module (JSON); `{}` when absent.
        #[arg(long)]
        params: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Translate a Wasm verdict function (spec/wasm-verdict.md) into a standalone tcx program
    /// and print it, or the located diagnostic; `--verify N` runs N generated packets through
    /// wasmtime and the kernel and reports every mismatch.
    Translate {
        /// The verdict module (.wasm, or .wat text).
        file: PathBuf,
        /// What to print.
        #[arg(long, value_enum, default_value_t = Emit::Asm)]
        emit: Emit,
        /// What a trap turns into: deny (fail closed), allow or pass.
        #[arg(long, value_enum, default_value_t = OnTrapArg::Deny)]
        on_trap: OnTrapArg,
        /// Run N generated packets through wasmtime and BPF_PROG_TEST_RUN (needs root) and
        /// compare; ends with `N passed, M failed`.
        #[arg(long, value_name = "N")]
        verify: Option<usize>,
        /// Seed of the generated packets.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// Output forms of `module translate`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// The eBPF program in bpftool's syntax.
    Asm,
}

/// `--on-trap`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTrapArg {
    Deny,
    Allow,
    Pass,
}

impl From<OnTrapArg> for OnTrap {
    fn from(a: OnTrapArg) -> OnTrap {
        match a {
            OnTrapArg::Deny => OnTrap::Deny,
            OnTrapArg::Allow => OnTrap::Allow,
            OnTrapArg::Pass => OnTrap::Pass,
        }
    }
}

/// Sandbox limits for Wasm modules (spec/wasm-abi.md, "Limits and determinism").
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Fuel per run (about one unit per Wasm instruction).
    #[arg(long, value_name = "UNITS", default_value_t = Limits::DEFAULT_FUEL)]
    pub wasm_fuel: u64,
    /// Linear memory per module, e.g. 256MiB, 1GiB or a byte count (MB = 10^6 bytes,
    /// MiB = 2^20 bytes).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub wasm_memory: usize,
    /// Wall-clock time per run, e.g. 1s or 500ms.
    #[arg(long, value_name = "TIME", default_value = "1s", value_parser = parse_duration)]
    pub wasm_timeout: Duration,
    /// Largest policy document a module may return, e.g. 16MiB or 500KB (MB = 10^6 bytes,
    /// MiB = 2^20 bytes).
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub wasm_output: usize,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            fuel: self.wasm_fuel,
            memory_bytes: self.wasm_memory,
            timeout: self.wasm_timeout,
            output_bytes: self.wasm_output,
            ..Limits::default()
        }
    }
}

/// A byte count with an optional unit: K/KB, M/MB, G/GB are powers of 10 (1 MB = 10^6
/// bytes), KiB, MiB, GiB powers of 2 (1 MiB = 2^20 bytes).
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    let n = ::parse_size::parse_size(s).map_err(|e| format!("`{s}` is not a size ({e})"))?;
    usize::try_from(n).map_err(|_| format!("`{s}` is too large"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        _ => Err(format!("`{s}`: unknown unit `{unit}` (use s or ms)")),
    }
}

pub fn run(args: ModuleArgs) -> miette::Result<ExitCode> {
    match args.command {
        ModuleCommand::Inspect { file } => inspect(&file),
        ModuleCommand::Run {
            file,
            inventory,
            params,
            limits,
        } => run_module(&file, &inventory, params.as_deref(), &limits.limits()),
        ModuleCommand::Translate {
            file,
            emit: Emit::Asm,
            on_trap,
            verify,
            seed,
        } => translate(&file, on_trap.into(), verify, seed),
    }
}

fn translate(
    path: &Path,
    on_trap: OnTrap,
    verify: Option<usize>,
    seed: u64,
) -> miette::Result<ExitCode> {
    let (bytes, name) = read_module(path)?;
    let module = VerdictModule::parse(&bytes)
        .map_err(|e| miette::Report::new(e).wrap_err(format!("{name}: not translated")))?;
    let digest = sluice_compiler::digest::Digest(module.digest());
    let Some(n) = verify else {
        let art = standalone_program(&module, on_trap)?;
        println!(
            "; module {name} sha256 {digest}, function {}",
            module.function_index()
        );
        print!(
            "{}",
            sluice_compiler::datapath::emit_asm(&art).into_diagnostic()?
        );
        return Ok(ExitCode::SUCCESS);
    };
    let verifier = Verifier::new(&bytes, on_trap).into_diagnostic()?;
    if let Some(n) = verifier.kernel().verified_insns().into_diagnostic()? {
        println!("; {name}: loaded; the verifier processed {n} instructions");
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for p in packets(&module, n, seed) {
        match verifier.check(&p).into_diagnostic()? {
            None => passed += 1,
            Some(m) => {
                println!("{m}");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reads a module file; `.wat` text is assembled first, so examples run without a toolchain.
pub fn read_module(path: &Path) -> miette::Result<(Vec<u8>, String)> {
    let bytes = std::fs::read(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    if path.extension().is_some_and(|e| e == "wat") {
        let wasm = wat::parse_bytes(&bytes)
            .map_err(|e| miette!("{}: {e}", path.display()))?
            .into_owned();
        return Ok((wasm, name));
    }
    Ok((bytes, name))
}

fn inspect(path: &Path) -> miette::Result<ExitCode> {
    let (bytes, name) = read_module(path)?;
    let rt = Runtime::new();
    let info = rt.inspect(&bytes, &name)?;
    let field = |k: &str, v: &str| println!("{k:<9} {v}");
    field("module", &name);
    field("sha256", &info.id.digest.hex());
    field("size", &format!("{} bytes", info.size));
    field("name", info.name.as_deref().unwrap_or("(not declared)"));
    field(
        "version",
        info.version.as_deref().unwrap_or("(not declared)"),
    );
    match &info.abi_version {
        Ok(v) if *v == abi::ABI_VERSION => field("abi", &format!("{v} (supported)")),
        Ok(v) => field(
            "abi",
            &format!("{v} (unsupported: this host speaks {})", abi::ABI_VERSION),
        ),
        Err(e) => field("abi", &format!("unknown ({})", e.kind)),
    }
    let list = |k: &str, items: &[sluice_runtime::ExportInfo]| {
        if items.is_empty() {
            field(k, "(none)");
        }
        for (i, e) in items.iter().enumerate() {
            field(if i == 0 { k } else { "" }, &format!("{} {}", e.name, e.ty));
        }
    };
    list("imports", &info.imports);
    list("exports", &info.exports);
    match info.abi_version {
        Ok(v) if v == abi::ABI_VERSION => Ok(ExitCode::SUCCESS),
        Ok(v) => Err(sluice_runtime::RuntimeError::new(
            &info.id,
            sluice_runtime::ErrorKind::AbiVersion {
                found: v,
                supported: abi::ABI_VERSION,
            },
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

fn run_module(
    path: &Path,
    inventory: &Path,
    params: Option<&Path>,
    limits: &Limits,
) -> miette::Result<ExitCode> {
    let (bytes, name) = read_module(path)?;
    // The module sees the inventory as sluice validated and completed it.
    let inv = Inventory::load(inventory).into_diagnostic()?;
    let params = match params {
        Some(p) => {
            let text = std::fs::read(p)
                .into_diagnostic()
                .wrap_err_with(|| format!("reading {}", p.display()))?;
            serde_json::from_slice(&text)
                .into_diagnostic()
                .wrap_err_with(|| format!("{}: not JSON", p.display()))?
        }
        None => serde_json::json!({}),
    };
    let rt = Runtime::new();
    let input = Input::from_inventory(&inv, params).into_diagnostic()?;
    let out = rt.generate(&bytes, &name, &input, limits)?;
    tracing::info!(module = %out.module, fuel_used = out.fuel_used, "module ran");
    let pretty = serde_json::to_string_pretty(&out.document).into_diagnostic()?;
    println!("{pretty}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("256MB"), Ok(256_000_000));
        assert_eq!(parse_size("256M"), Ok(256_000_000), "M is the SI prefix");
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("1 GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("64kb"), Ok(64_000));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("100EiB").is_err(), "more than 2^64 bytes");
        // The defaults keep the limits they always had.
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            limits: LimitArgs,
        }
        let limits = <Cli as clap::Parser>::parse_from(["x"]).limits.limits();
        assert_eq!(limits.memory_bytes, 256 << 20);
        assert_eq!(limits.output_bytes, 16 << 20);
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("2h").is_err());
    }
}
