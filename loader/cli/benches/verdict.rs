//! The cost of a Wasm verdict function in the datapath (issue 13, item 5): ns/packet of the
//! issue's example (`examples/wasm/verdict/ssh-syn.wat`, "drop SYNs to port 22 unless the
//! source is in 10.0.0.0/8") translated and embedded in a policy program, against the same
//! decision written in the DSL, the floor (the same program with a decision that allows
//! everything: parse, conntrack lookups, tail) and the empty program, in one run; plus the
//! standalone translated program. Each row also gives the instructions the kernel holds and
//! the verifier's "instructions processed".
//!
//! The packet is a TCP SYN to port 22 from outside 10.0.0.0/8, denied by every policy row
//! (so conntrack never inserts it and every run takes the same path). Figures, not a test:
//! `cargo bench -p sluice-cli --bench verdict` as root prints a markdown table.

use sluice_cli::topology::unique_prefix;
use sluice_compiler::bpf::{Asm, ObjectBuilder, ProgKind, Reg};
use sluice_compiler::compile::{self, CompileOptions};
use sluice_compiler::datapath::{CodegenOptions, ProgramArtifact};
use sluice_compiler::resolve::{Inventory, InventoryFiles};
use sluice_compiler::source::{SourceMap, dsl};
use sluice_compiler::wasm_verdict::{OnTrap, VerdictModule, standalone_program};
use sluice_loader::load::{LoadOptions, LoadedObject};
use std::path::{Path, PathBuf};

const INV: &str = "
endpoints:
- {name: server, namespace: shop, labels: {app: server}, ips: [10.0.0.2]}
";
/// Runs per figure; the best and worst are dropped and the rest averaged.
const RUNS: usize = 7;
const REPEAT: u32 = 1_000_000;

/// Files and bpffs pins of the run; removed on drop.
struct Dirs {
    files: PathBuf,
    pins: PathBuf,
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.files);
        if let Ok(entries) = std::fs::read_dir(&self.pins) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir(&self.pins);
    }
}

fn to_ep(dirs: &Dirs, policy: &str) -> ProgramArtifact {
    let path = dirs.files.join("policy.sluice");
    std::fs::write(&path, policy).unwrap();
    let mut sources = SourceMap::new();
    let id = sources.load(&path).unwrap();
    let doc = dsl::parse(id, policy).expect("parses");
    let inv = Inventory::parse("inv", INV).unwrap();
    let checked = compile::check_documents_in(&[doc], Some(&inv), Some(&sources));
    assert!(!checked.diags.has_errors(), "{:?}", checked.diags);
    let opts = CompileOptions {
        codegen: CodegenOptions {
            trace: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let c = compile::compile(&checked.ir, &inv, &sources, &[], &opts, &mut |_| {}).unwrap();
    c.endpoints[0].programs.to_ep.clone()
}

struct Row {
    program: &'static str,
    insns: u32,
    verified: u32,
    ns: f64,
    retval: u32,
}

fn measure(program: &'static str, art: &ProgramArtifact, pins: &Path, pkt: &[u8]) -> Row {
    let mut obj = LoadedObject::load_with(
        &art.elf,
        &LoadOptions {
            pin_dir: Some(pins.to_path_buf()),
            map_pins: Vec::new(),
        },
    )
    .unwrap_or_else(|e| panic!("{program}: {e:?}"));
    obj.fill(&art.maps).unwrap();
    let info = obj.ebpf_mut().program(&art.name).unwrap().info().unwrap();
    let insns = info.size_translated().unwrap_or(0) / 8;
    let verified = info.verified_instruction_count().unwrap_or(0);
    let mut runs = Vec::with_capacity(RUNS);
    let mut retval = 0;
    for _ in 0..RUNS {
        let r = obj.test_run(&art.name, pkt, REPEAT).unwrap();
        retval = r.retval;
        runs.push(r.duration.as_nanos() as f64);
    }
    runs.sort_by(f64::total_cmp);
    let kept = &runs[1..RUNS - 1];
    Row {
        program,
        insns,
        verified,
        ns: kept.iter().sum::<f64>() / kept.len() as f64,
        retval,
    }
}

fn empty() -> ProgramArtifact {
    let mut a = Asm::new();
    a.mov64(Reg::R0, 0).exit();
    let mut obj = ObjectBuilder::new();
    obj.program("empty", ProgKind::Classifier, a.finish().unwrap())
        .unwrap();
    ProgramArtifact {
        name: "empty".into(),
        hook: sluice_compiler::datapath::TcxHook::Egress,
        elf: obj.write().unwrap(),
        maps: Vec::new(),
    }
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the verdict benchmark loads programs: run it as root");
        std::process::exit(1);
    }
    let name = format!("{}-verdict-bench", unique_prefix());
    let dirs = Dirs {
        files: std::env::temp_dir().join(&name),
        pins: PathBuf::from("/sys/fs/bpf").join(&name),
    };
    std::fs::create_dir_all(&dirs.files).unwrap();
    std::fs::create_dir_all(&dirs.pins).unwrap();
    let wat = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/wasm/verdict/ssh-syn.wat");
    let wasm = wat::parse_file(&wat).unwrap();
    std::fs::write(dirs.files.join("ssh-syn.wasm"), &wasm).unwrap();
    let module = VerdictModule::parse(&wasm).unwrap();
    let sha: String = module.digest().iter().map(|b| format!("{b:02x}")).collect();

    let head = "policy \"ssh\" {\n  tier admin priority 5\n  select app = server\n";
    let wasm_policy = format!("{head}  ingress verdict \"ssh-syn.wasm\" sha256 \"{sha}\"\n}}\n");
    let dsl_policy =
        format!("{head}  ingress deny from cidr 0.0.0.0/0 except 10.0.0.0/8 ports 22/tcp\n}}\n");
    // The skeleton both share (conntrack, recording), with a decision that allows all.
    let floor_policy =
        format!("{head}  ingress allow\n  ingress deny from cidr 192.0.2.0/32\n}}\n");

    // A SYN to port 22 from 172.16.0.9: denied by both policies.
    let mut pkt = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    pkt.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    pkt.extend_from_slice(&[172, 16, 0, 9, 10, 0, 0, 2]);
    pkt.extend_from_slice(&[
        0xc3, 0x50, 0, 22, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff,
    ]);
    pkt.extend_from_slice(&[0, 0, 0, 0]);

    let rows = [
        measure("empty program", &empty(), &dirs.pins, &pkt),
        measure(
            "floor (to_ep allowing all)",
            &to_ep(&dirs, &floor_policy),
            &dirs.pins,
            &pkt,
        ),
        measure(
            "DSL: deny 22/tcp except from 10/8",
            &to_ep(&dirs, &dsl_policy),
            &dirs.pins,
            &pkt,
        ),
        measure(
            "Wasm ssh-syn in to_ep",
            &to_ep(&dirs, &wasm_policy),
            &dirs.pins,
            &pkt,
        ),
        measure(
            "Wasm ssh-syn standalone",
            &standalone_program(&module, OnTrap::Deny).unwrap(),
            &dirs.pins,
            &pkt,
        ),
    ];
    println!("\n## Wasm verdict functions (issue 13)\n");
    println!(
        "A TCP SYN to port 22 from 172.16.0.9, `BPF_PROG_TEST_RUN` repeat {REPEAT}, mean of the middle {} of {RUNS} runs.\n",
        RUNS - 2
    );
    println!(
        "| program | insns | verifier: insns processed | tc code | ns/packet | above empty | above floor |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let (empty_ns, floor_ns) = (rows[0].ns, rows[1].ns);
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.1} | {:+.1} | {:+.1} |",
            r.program,
            r.insns,
            r.verified,
            r.retval,
            r.ns,
            r.ns - empty_ns,
            r.ns - floor_ns
        );
    }
}
