//! Wasm verdict rules inside generated policy programs, in the kernel (needs root): a policy
//! attaches three modules (the issue's example `examples/wasm/verdict/ssh-syn.wat`, and
//! `tests/verdict/*.wat`) to an endpoint's ingress; the compiled
//! `to_ep` runs crafted frames through `BPF_PROG_TEST_RUN`, and every answer (allow or drop,
//! stage, deciding rule) must be the reference evaluator's, with each module's answer taken
//! from wasmtime (`VerdictRunner`) on the same packet. Covers allow, deny, pass-through to the
//! table, and a trap with each `on-trap`, in both codegen modes; and that a flow a module
//! allowed is recorded by conntrack (its next packet passes as established) while a denied
//! one is not.

use sluice_compiler::bundle::abi::Stage;
use sluice_compiler::compile::{self, CompileOptions};
use sluice_compiler::datapath::{CodegenOptions, Mode, ProgramArtifact};
use sluice_compiler::eval::{self, Flow, FlowEnd, Reason};
use sluice_compiler::ir::{Ir, L4, L4Match, VerdictId};
use sluice_compiler::resolve::{Inventory, InventoryFiles};
use sluice_compiler::source::{SourceMap, dsl};
use sluice_compiler::wasm_verdict::{VerdictModule, VerdictOutcome};
use sluice_loader::load::{LoadOptions, LoadedObject};
use sluice_loader::trace::run_recorded;
use sluice_runtime::VerdictRunner;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

const INV: &str = "
endpoints:
- {name: client, namespace: shop, labels: {app: client}, ips: [10.0.0.1]}
- {name: server, namespace: shop, labels: {app: server}, ips: [10.0.0.2]}
";
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const MODULES: [&str; 3] = ["ssh-guard", "allow-80", "trap-81"];

/// A directory for the test's files and one under bpffs for its conntrack pin; both removed
/// on drop, even when the test fails.
struct Dirs {
    files: PathBuf,
    pins: PathBuf,
}

impl Dirs {
    fn new(tag: &str) -> Dirs {
        let name = format!("sluice-verdict-policy-{tag}-{}", std::process::id());
        let d = Dirs {
            files: std::env::temp_dir().join(&name),
            pins: PathBuf::from("/sys/fs/bpf").join(name),
        };
        std::fs::create_dir_all(&d.files).unwrap();
        std::fs::create_dir_all(&d.pins).unwrap();
        d
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.files);
        // bpffs: unlink the pins, then the directory.
        if let Ok(entries) = std::fs::read_dir(&self.pins) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir(&self.pins);
    }
}

/// Writes each module's binary next to the policy and returns name → sha256 hex.
fn write_modules(dir: &Path) -> HashMap<&'static str, (String, Vec<u8>)> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    MODULES
        .iter()
        .map(|m| {
            let src = match *m {
                "ssh-guard" => here.join("../../examples/wasm/verdict/ssh-syn.wat"),
                _ => here.join(format!("tests/verdict/{m}.wat")),
            };
            let bytes = wat::parse_file(src).unwrap();
            std::fs::write(dir.join(format!("{m}.wasm")), &bytes).unwrap();
            let sha = VerdictModule::parse(&bytes)
                .unwrap()
                .digest()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            (*m, (sha, bytes))
        })
        .collect()
}

fn policy(sha: &HashMap<&str, (String, Vec<u8>)>, on_trap: &str) -> String {
    format!(
        r#"policy "guard" {{
  tier admin priority 5
  select app = server
  rule "ssh" ingress verdict "ssh-guard.wasm" sha256 "{}"
  rule "web" ingress verdict "allow-80.wasm" sha256 "{}"
  rule "trap" ingress verdict "trap-81.wasm" sha256 "{}" on-trap {on_trap}
}}

policy "np" in namespace shop {{
  select app = server
  ingress allow from cidr 10.0.0.0/8 ports 22/tcp, 81/tcp, 82/tcp
}}
"#,
        sha["ssh-guard"].0, sha["allow-80"].0, sha["trap-81"].0
    )
}

/// Compiles the policy file as `sluice compile` does; the IR and the server's `to_ep`.
fn build(dir: &Path, text: &str, mode: Mode) -> (Ir, Inventory, ProgramArtifact) {
    let path = dir.join("policy.sluice");
    std::fs::write(&path, text).unwrap();
    let mut sources = SourceMap::new();
    let id = sources.load(&path).unwrap();
    let doc = dsl::parse(id, text).expect("parses");
    let inv = Inventory::parse("inv", INV).unwrap();
    let checked = compile::check_documents_in(&[doc], Some(&inv), Some(&sources));
    assert!(!checked.diags.has_errors(), "{:?}", checked.diags);
    let opts = CompileOptions {
        codegen: CodegenOptions {
            mode,
            trace: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let compiled =
        compile::compile(&checked.ir, &inv, &sources, &[], &opts, &mut |_| {}).expect("compile");
    let server = compiled
        .endpoints
        .iter()
        .find(|e| e.endpoint.name == "server")
        .unwrap();
    let to_ep = server.programs.to_ep.clone();
    (checked.ir, inv, to_ep)
}

/// Ethernet + IPv4 + TCP with `flags`, to the server.
fn frame(src: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&SERVER.octets());
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// The evaluator's verdict for a frame, each module answering through wasmtime.
fn reference(
    ir: &Ir,
    inv: &Inventory,
    runners: &HashMap<String, VerdictRunner>,
    frame: &[u8],
    src: Ipv4Addr,
    dport: u16,
) -> eval::DirectionVerdict {
    let flow = Flow {
        src: FlowEnd::Ip(IpAddr::V4(src)),
        dst: FlowEnd::Endpoint(1),
        l4: L4Match::Port {
            proto: L4::Tcp,
            port: dport,
        },
    };
    let mut module = |v: VerdictId| runners[&ir.verdicts[v].path].run(&frame[14..]);
    eval::evaluate_with(ir, inv, &flow, &mut module)
        .unwrap()
        .ingress
        .unwrap()
}

fn needs_root() {
    if !Path::new("/sys/fs/bpf").exists() || !nix::unistd::geteuid().is_root() {
        panic!("this test needs root and bpffs (kernel tests are not skipped)");
    }
}

#[test]
fn embedded_verdicts_decide_as_the_evaluator_with_wasmtime_says() {
    needs_root();
    let dirs = Dirs::new("grid");
    let modules = write_modules(&dirs.files);
    let runners: HashMap<String, VerdictRunner> = modules
        .iter()
        .map(|(m, (_, bytes))| (format!("{m}.wasm"), VerdictRunner::new(bytes).unwrap()))
        .collect();
    let sources = [
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 9, 9, 9),
        Ipv4Addr::new(172, 16, 0, 9),
    ];
    let mut seen_stages = std::collections::BTreeSet::new();
    let mut cases = 0;
    for on_trap in ["deny", "allow", "pass"] {
        for mode in [Mode::Specialized, Mode::Generic] {
            let (ir, inv, art) = build(&dirs.files, &policy(&modules, on_trap), mode);
            let obj = LoadedObject::load_with(
                &art.elf,
                &LoadOptions {
                    pin_dir: Some(dirs.pins.clone()),
                    map_pins: Vec::new(),
                },
            )
            .unwrap_or_else(|e| panic!("on-trap {on_trap} {mode:?}: {e:?}"));
            obj.fill(&art.maps).unwrap();
            let fd = obj.program_fd(&art.name).unwrap();
            for src in sources {
                for (dport, flags) in [
                    (22, SYN),
                    (22, ACK),
                    (80, SYN),
                    (81, SYN),
                    (82, SYN),
                    (443, SYN),
                ] {
                    let f = frame(src, dport, flags);
                    let want = reference(&ir, &inv, &runners, &f, src, dport);
                    // A probe: decided like any packet, but no conntrack insert, so every
                    // row is a new flow.
                    let (retval, got) = run_recorded(fd, &f, true).unwrap();
                    let got = got.expect("recorded");
                    let what =
                        format!("on-trap {on_trap} {mode:?} {src} -> {dport} flags {flags:#x}");
                    assert_eq!(retval == 0, want.allow, "{what}: {want:?}");
                    assert_eq!(got.allow, want.allow, "{what}");
                    let (stage, rule) = match (want.reason, want.verdict) {
                        (Reason::Verdict, Some((v, answer))) => (
                            if matches!(answer, VerdictOutcome::Trap(_)) {
                                Stage::WasmTrap
                            } else {
                                Stage::WasmVerdict
                            },
                            ir.verdict_rule_number(v),
                        ),
                        _ => (
                            Stage::Policy,
                            want.deciding.first().map_or(0, |r| {
                                use cranelift_entity::EntityRef;
                                r.index() as u32 + 1
                            }),
                        ),
                    };
                    assert_eq!(
                        (got.stage, got.rule),
                        (Some(stage), rule),
                        "{what}: {want:?}"
                    );
                    seen_stages.insert(format!("{stage:?}/{}", want.allow));
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 3 * 2 * 3 * 6);
    // Every kind of outcome was exercised: module allow and deny, a trap both ways, and
    // pass-through to the table both ways.
    for s in [
        "WasmVerdict/true",
        "WasmVerdict/false",
        "WasmTrap/true",
        "WasmTrap/false",
        "Policy/true",
        "Policy/false",
    ] {
        assert!(seen_stages.contains(s), "{s} never seen: {seen_stages:?}");
    }
}

/// A flow a module allowed goes into conntrack like any allowed flow: its next packet passes
/// as established without running the module. A flow a module denied does not.
#[test]
fn a_flow_a_module_allowed_is_established_afterwards() {
    needs_root();
    let dirs = Dirs::new("ct");
    let modules = write_modules(&dirs.files);
    let (_, _, art) = build(&dirs.files, &policy(&modules, "deny"), Mode::Specialized);
    let obj = LoadedObject::load_with(
        &art.elf,
        &LoadOptions {
            pin_dir: Some(dirs.pins.clone()),
            map_pins: Vec::new(),
        },
    )
    .unwrap();
    obj.fill(&art.maps).unwrap();
    let fd = obj.program_fd(&art.name).unwrap();
    let outsider = Ipv4Addr::new(172, 16, 0, 9);
    let stage = |f: &[u8]| {
        let (retval, d) = run_recorded(fd, f, false).unwrap();
        let d = d.expect("recorded");
        (retval, d.stage.unwrap())
    };
    // Port 80: allowed by `allow-80`, then established.
    let web = frame(outsider, 80, SYN);
    assert_eq!(stage(&web), (0, Stage::WasmVerdict));
    assert_eq!(stage(&web), (0, Stage::Established));
    // Port 22 from outside 10/8: denied by `ssh-guard` every time.
    let ssh = frame(outsider, 22, SYN);
    assert_eq!(stage(&ssh), (2, Stage::WasmVerdict));
    assert_eq!(stage(&ssh), (2, Stage::WasmVerdict));
}

/// A module that always decides leaves nothing after it: the program carries no decision
/// table (the verifier refuses unreachable code) and still loads; here on egress (`from_ep`).
#[test]
fn a_module_that_always_decides_replaces_the_table_on_egress() {
    needs_root();
    let dirs = Dirs::new("always");
    let bytes = wat::parse_str(
        r#"(module (func (export "verdict") (param i32) (result i32) (i32.const 1)))"#,
    )
    .unwrap();
    std::fs::write(dirs.files.join("allow-all.wasm"), &bytes).unwrap();
    let sha: String = VerdictModule::parse(&bytes)
        .unwrap()
        .digest()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let text = format!(
        r#"policy "all" {{
  tier admin priority 1
  select app = client
  egress verdict "allow-all.wasm" sha256 "{sha}"
}}

policy "closed" in namespace shop {{
  select app = client
  isolate egress
}}
"#
    );
    let path = dirs.files.join("policy.sluice");
    std::fs::write(&path, &text).unwrap();
    let mut sources = SourceMap::new();
    let id = sources.load(&path).unwrap();
    let doc = dsl::parse(id, &text).unwrap();
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
    let compiled =
        compile::compile(&checked.ir, &inv, &sources, &[], &opts, &mut |_| {}).expect("compile");
    let art = &compiled.endpoints[0].programs.from_ep;
    let text = sluice_compiler::datapath::emit_asm(art).unwrap();
    assert!(!text.contains("sluice_ipcache"), "no table lookup: {text}");
    let obj = LoadedObject::load_with(
        &art.elf,
        &LoadOptions {
            pin_dir: Some(dirs.pins.clone()),
            map_pins: Vec::new(),
        },
    )
    .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    obj.fill(&art.maps).unwrap();
    let fd = obj.program_fd(&art.name).unwrap();
    // client -> server: egress is isolated and allows nothing, yet the module allows it.
    let f = frame(Ipv4Addr::new(10, 0, 0, 1), 443, SYN);
    let (retval, d) = run_recorded(fd, &f, true).unwrap();
    let d = d.unwrap();
    assert_eq!((retval, d.stage), (0, Some(Stage::WasmVerdict)));
    assert_eq!(
        d.rule,
        checked.ir.verdict_rule_number(VerdictId::from_u32(0))
    );
}
