//! Kernel tests of `sluice trace`: a policy with known rules compiled (with rule recording)
//! and applied as a generation to a cluster in a box, then traced for allowed, denied and
//! external flows. Each trace must agree with the reference evaluator on every hook's
//! verdict and deciding rule, report that rule at its `file:line:col`, and leave every map
//! the attached programs use (conntrack included) exactly as it was. Needs root.
//!
//! Each test gets its own topology, pin root and state directory, and a guard that unloads
//! and removes them even when the test panics.

use sluice_compiler::resolve::InventoryFiles;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use cranelift_entity::EntityRef;
use sluice_cli::topology::{Topology, TopologySpec};
use sluice_compiler::bundle::{Bundle, TcxHook};
use sluice_compiler::compile::{self, CompileOptions};
use sluice_compiler::datapath::{CodegenOptions, Mode};
use sluice_compiler::eval::{self, Flow, FlowEnd};
use sluice_compiler::ir::{Ir, L4 as IrL4, L4Match, RuleId};
use sluice_compiler::resolve::Inventory;
use sluice_compiler::source::{SourceMap, dsl};
use sluice_loader::generation::{self, LoadOptions};
use sluice_loader::trace::{self, L4, Target, TraceError, TraceOptions, TraceReport, TraceRequest};

const POLICY_FILE: &str = "policies/trace-test.sluice";

/// Line 3: `http`, line 4: deny db; lines 10 and 11: client-out's two rules.
const POLICY: &str = r#"# Rules at known lines and columns.
policy "web" in namespace x { select app = web
  rule "http" ingress allow from pods { app = client } ports 80/tcp
  ingress deny from pods { app = db }
}

policy "client-out" in namespace x {
  select app = client
  isolate egress
  egress allow to pods { app = web } ports 80/tcp
    egress allow to cidr 198.51.100.0/24 ports 443/tcp
}
"#;

struct Box_ {
    topo: Topology,
    opts: LoadOptions,
    dirs: Vec<PathBuf>,
}

impl Drop for Box_ {
    fn drop(&mut self) {
        let _ = generation::unload(&self.opts);
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn boxed(third_octet: u8) -> Box_ {
    sluice_loader::pin::ensure_bpffs().expect("bpffs");
    let topo = Topology::build(
        &TopologySpec::new()
            .pod("x", "client", Ipv4Addr::new(10, 221, third_octet, 1))
            .pod("x", "web", Ipv4Addr::new(10, 221, third_octet, 2))
            .pod("x", "db", Ipv4Addr::new(10, 221, third_octet, 3)),
    )
    .expect("build topology");
    let opts = LoadOptions {
        root: PathBuf::from(format!("/sys/fs/bpf/{}-sluice", topo.prefix())),
        state_dir: PathBuf::from(format!("/run/{}-sluice", topo.prefix())),
        node_netns: Some(topo.node_netns().to_owned()),
    };
    Box_ {
        topo,
        opts,
        dirs: Vec::new(),
    }
}

/// The compiled world: IR, sources and inventory, as the compile driver would have them.
struct Compiled {
    ir: Ir,
    sources: SourceMap,
    inv: Inventory,
}

fn compiled(bx: &Box_) -> Compiled {
    let text = POLICY;
    let mut sources = SourceMap::new();
    let id = sources.add(POLICY_FILE, text);
    let doc = dsl::parse(id, text).unwrap_or_else(|d| panic!("parse: {d:?}"));
    let (ir, diags) = sluice_compiler::ir::lower(&[doc]);
    assert!(!diags.has_errors(), "{diags:?}");
    let mut inv = String::from("endpoints:\n");
    for p in bx.topo.pods() {
        inv.push_str(&format!(
            "- {{name: {}, namespace: {}, labels: {{app: {}}}, ips: [{}], interface: {}}}\n",
            p.name, p.namespace, p.name, p.ip, p.host_if
        ));
    }
    let inv = Inventory::parse("inventory.yaml", &inv).expect("inventory");
    Compiled { ir, sources, inv }
}

/// IR + inventory → bundle through the compile driver (what `sluice compile` does), with
/// or without rule recording; `info: false` drops the trace info it adds.
fn bundle(c: &Compiled, record: bool, info: bool) -> Bundle {
    let opts = CompileOptions {
        codegen: CodegenOptions {
            mode: Mode::Specialized,
            trace: record,
            ..Default::default()
        },
        node: None,
        ..CompileOptions::default()
    };
    let inputs = vec![(POLICY_FILE.to_string(), POLICY.as_bytes().to_vec())];
    let mut b = compile::compile(&c.ir, &c.inv, &c.sources, &inputs, &opts, &mut |_| {})
        .expect("compile")
        .bundle;
    let carried = b.trace.as_ref().expect("the driver adds trace info");
    assert_eq!(carried.rule_recording, record);
    if !info {
        b.trace = None;
    }
    b
}

/// A map's entries, sorted by key.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every map every attached program uses, by id, with all its entries.
fn maps_snapshot(opts: &LoadOptions) -> BTreeMap<u32, Entries> {
    let state = generation::read_state(&opts.state_dir).unwrap().unwrap();
    let mut out = BTreeMap::new();
    for h in &state.hooks {
        let prog = generation::pinned_link_info(&h.pin).unwrap().prog_id;
        for id in generation::program_map_ids(prog).unwrap() {
            out.insert(id, generation::map_entries(id).unwrap());
        }
    }
    out
}

fn ep_index(c: &Compiled, name: &str) -> usize {
    c.inv.endpoints.iter().position(|e| e.name == name).unwrap()
}

fn ir_l4(l4: L4) -> L4Match {
    match l4 {
        L4::Port { proto, port } => L4Match::Port {
            proto: match proto {
                6 => IrL4::Tcp,
                17 => IrL4::Udp,
                132 => IrL4::Sctp,
                p => panic!("proto {p}"),
            },
            port,
        },
        L4::Icmp { r#type, code } => L4Match::Icmp {
            icmp_type: r#type,
            code,
        },
        L4::Proto { .. } => panic!("the evaluator has no port-less protocols"),
    }
}

/// Checks a report against the reference evaluator: each hook's verdict, its rule (one of
/// the evaluator's deciding rules, or none when it has none) and the rule's location.
fn agrees_with_evaluator(c: &Compiled, from: &str, to: &Target, l4: L4, r: &TraceReport) {
    let src = FlowEnd::Endpoint(ep_index(c, from));
    let dst = match to {
        Target::Pod(p) => FlowEnd::Endpoint(ep_index(c, p.rsplit('/').next().unwrap())),
        Target::Ip(ip) => FlowEnd::Ip(*ip),
    };
    let v = eval::evaluate(
        &c.ir,
        &c.inv,
        &Flow {
            src,
            dst,
            l4: ir_l4(l4),
        },
    )
    .unwrap();
    let dirs: Vec<_> = [v.egress.clone(), v.ingress.clone()]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        r.hooks.len(),
        dirs.len(),
        "one hook per managed end: {r:#?}"
    );
    for (h, d) in r.hooks.iter().zip(&dirs) {
        let ctx = format!(
            "{from} -> {to:?} {l4:?}, {} {}",
            h.endpoint, h.policy_direction
        );
        assert_eq!(h.allow, d.allow, "{ctx}: verdict");
        assert_eq!(h.audited, d.audited, "{ctx}: audited");
        assert_eq!(h.retval, if d.allow { 0 } else { 2 }, "{ctx}: retval");
        assert_eq!(h.decision.stage, "policy", "{ctx}");
        let want: Vec<u32> = d.deciding.iter().map(|r| r.index() as u32 + 1).collect();
        if want.is_empty() {
            assert_eq!(h.decision.rule_id, 0, "{ctx}: implicit verdict");
            assert!(
                h.decision.rule.is_none() && h.decision.reason.is_some(),
                "{ctx}"
            );
        } else {
            assert!(want.contains(&h.decision.rule_id), "{ctx}: {want:?}");
            let rule = h.decision.rule.as_ref().expect("rule entry");
            let id = RuleId::new(h.decision.rule_id as usize - 1);
            let loc = c.sources.location(c.ir.rule_span(id)).unwrap();
            let got = rule.location.as_ref().unwrap();
            assert_eq!(
                (got.file.as_str(), got.line as usize, got.column as usize),
                (loc.file.as_str(), loc.line, loc.column),
                "{ctx}"
            );
            assert_eq!(rule.describe(), c.ir.describe_rule(id), "{ctx}");
        }
    }
    assert_eq!(r.allow, v.allow, "combined verdict");
}

fn loc_of(h: &trace::HookTrace) -> String {
    h.decision
        .rule
        .as_ref()
        .and_then(|r| r.location.as_ref())
        .map(|l| l.to_string())
        .unwrap_or_default()
}

#[test]
fn traces_match_the_evaluator_name_the_rule_and_change_no_map() {
    let bx = boxed(1);
    let c = compiled(&bx);
    generation::apply_bundle(&bundle(&c, true, true), &bx.opts).expect("apply");
    let topts = TraceOptions {
        load: bx.opts.clone(),
        bundle: None,
    };
    let before = maps_snapshot(&bx.opts);
    let ct = aya::maps::MapInfo::from_pin(bx.opts.root.join("ct"))
        .expect("conntrack pin")
        .id();
    assert_eq!(before.get(&ct), Some(&Vec::new()), "conntrack is watched");
    let tcp = |port| L4::Port { proto: 6, port };
    let ext = |s: &str| Target::Ip(s.parse::<IpAddr>().unwrap());
    let cases: Vec<(&str, Target, L4)> = vec![
        ("x/client", Target::Pod("x/web".into()), tcp(80)),
        ("db", Target::Pod("web".into()), tcp(80)),
        ("client", Target::Pod("x/web".into()), tcp(81)),
        ("client", ext("198.51.100.7"), tcp(443)),
        ("client", ext("203.0.113.9"), tcp(80)),
        (
            "client",
            Target::Pod("web".into()),
            L4::Icmp { r#type: 8, code: 0 },
        ),
        (
            "db",
            ext("198.51.100.7"),
            L4::Port {
                proto: 17,
                port: 53,
            },
        ),
        (
            "db",
            ext("10.221.1.2"),
            L4::Port {
                proto: 132,
                port: 80,
            },
        ),
    ];
    let mut reports = Vec::new();
    for (from, to, l4) in &cases {
        let req = TraceRequest {
            from: from.to_string(),
            to: to.clone(),
            l4: *l4,
            sport: None,
        };
        let r = trace::trace(&req, &topts).unwrap_or_else(|e| panic!("{from} {to:?}: {e}"));
        println!("{}", trace::render_text(&r));
        agrees_with_evaluator(&c, from.rsplit('/').next().unwrap(), to, *l4, &r);
        assert_eq!(r.generation, 1);
        reports.push(r);
    }
    // The exact places, by hand: client → web:80 is allowed by line 10 (egress) and the
    // `http` rule at line 3 (ingress); db → web is denied by line 4; 443 to the payments
    // range by line 11; anything else client sends is denied by isolation, with no rule.
    let r = &reports[0];
    assert!(r.allow);
    assert_eq!(loc_of(&r.hooks[0]), format!("{POLICY_FILE}:10:3"));
    assert_eq!(loc_of(&r.hooks[1]), format!("{POLICY_FILE}:3:3"));
    assert_eq!(
        r.hooks[1].decision.rule.as_ref().unwrap().describe(),
        "rule `http` of policy `web`"
    );
    assert_eq!(
        (r.hooks[0].hook, r.hooks[1].hook),
        (TcxHook::Ingress, TcxHook::Egress)
    );
    let r = &reports[1];
    assert!(!r.allow && r.denied_by == Some(1));
    assert!(r.hooks[0].allow && r.hooks[0].decision.rule.is_none());
    assert_eq!(loc_of(&r.hooks[1]), format!("{POLICY_FILE}:4:3"));
    let r = &reports[2];
    assert!(!r.allow && r.denied_by == Some(0) && !r.hooks[1].reached);
    let r = &reports[3];
    assert!(
        r.allow && r.hooks.len() == 1,
        "an external peer has one hook"
    );
    assert_eq!(loc_of(&r.hooks[0]), format!("{POLICY_FILE}:11:5"));
    let r = &reports[4];
    assert!(!r.allow && r.hooks[0].decision.rule_id == 0);
    // An address that is a pod's is that pod.
    assert_eq!(
        reports[7]
            .packet
            .dst
            .endpoint
            .as_ref()
            .map(|e| e.name.as_str()),
        Some("web")
    );
    // Two traces of one flow use different source ports.
    assert_ne!(reports[0].packet.sport, 0);

    // Nothing changed: not conntrack (allowed flows were traced), not any policy map.
    assert_eq!(maps_snapshot(&bx.opts), before, "maps after tracing");

    // JSON and text through the binary, as a user runs it.
    let pins = [
        "--root".to_string(),
        bx.opts.root.display().to_string(),
        "--state-dir".to_string(),
        bx.opts.state_dir.display().to_string(),
    ];
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("trace")
            .args(args)
            .args(&pins)
            .output()
            .expect("run sluice");
        // miette wraps long messages; compare errors without layout.
        let flat: String = String::from_utf8_lossy(&out.stderr)
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '|')
            .collect();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            flat,
        )
    };
    let (ok, out, err) = run(&[
        "--from", "x/db", "--to", "x/web", "--port", "80/tcp", "--output", "json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["allow"], false);
    assert_eq!(v["generation"], 1);
    assert_eq!(v["hooks"][1]["decision"]["rule"]["location"]["line"], 4);
    assert_eq!(v["hooks"][1]["decision"]["rule"]["policy"], "web");
    assert_eq!(v["hooks"][1]["hook"], "egress");
    let (ok, out, err) = run(&["--from", "client", "--to", "web", "--port", "80"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("{POLICY_FILE}:3:3 rule `http` of policy `web`")),
        "{out}"
    );
    assert!(out.contains("verdict: ALLOW"), "{out}");
    let (ok, _, err) = run(&["--from", "x/nope", "--to", "web", "--port", "80"]);
    assert!(!ok);
    assert!(
        err.contains("`x/nope`isnotintheinventoryofgeneration1") && err.contains("x/db,x/web"),
        "{err}"
    );
    let (ok, _, err) = run(&["--from", "client", "--to", "web", "--proto", "udp"]);
    assert!(!ok && err.contains("needsadestinationport"), "{err}");
    assert_eq!(maps_snapshot(&bx.opts), before, "maps after the CLI traces");

    // The watch would see it: the same packet run as a real one (no trace flag) inserts.
    let state = generation::read_state(&bx.opts.state_dir).unwrap().unwrap();
    let h = state
        .hooks
        .iter()
        .find(|h| h.endpoint.name == "client" && h.hook == TcxHook::Ingress)
        .unwrap();
    let prog = generation::pinned_link_info(&h.pin).unwrap().prog_id;
    let fd = sluice_loader::sys::bpf::prog_fd_by_id(prog).unwrap();
    let pkt = trace::build_packet(
        reports[0].packet.src.addr,
        reports[0].packet.dst.addr,
        tcp(80),
        reports[0].packet.sport,
    );
    let (ret, rec) = trace::run_recorded(std::os::fd::AsFd::as_fd(&fd), &pkt, false).unwrap();
    assert_eq!((ret, rec.map(|d| d.allow)), (0, Some(true)));
    assert_eq!(
        maps_snapshot(&bx.opts)[&ct].len(),
        1,
        "a real packet inserts"
    );
}

#[test]
fn missing_pieces_are_named() {
    let mut bx = boxed(2);
    let c = compiled(&bx);
    let topts = TraceOptions {
        load: bx.opts.clone(),
        bundle: None,
    };
    let req = TraceRequest {
        from: "client".into(),
        to: Target::Pod("web".into()),
        l4: L4::Port { proto: 6, port: 80 },
        sport: None,
    };
    let err = |r: Result<TraceReport, TraceError>| r.unwrap_err().to_string();

    let e = err(trace::trace(&req, &topts));
    assert!(e.contains("no sluice generation is loaded"), "{e}");

    // A bundle without trace info: trace says so, and takes it from --bundle instead.
    let plain = bundle(&c, true, false);
    generation::apply_bundle(&plain, &bx.opts).expect("apply");
    let e = err(trace::trace(&req, &topts));
    assert!(e.contains("has no trace info"), "{e}");
    let with_info = bundle(&c, true, true);
    let dir = std::env::temp_dir().join(format!("{}-bundle", bx.topo.prefix()));
    bx.dirs.push(dir.clone());
    with_info.write(&dir).unwrap();
    let e = err(trace::trace(
        &req,
        &TraceOptions {
            bundle: Some(dir.clone()),
            ..topts.clone()
        },
    ));
    assert!(e.contains("but generation 1 runs bundle"), "{e}");

    // Loaded with trace info: an unattached hook is named.
    generation::apply_bundle(&with_info, &bx.opts).expect("apply");
    let ok = trace::trace(&req, &topts).expect("trace");
    assert!(ok.allow);
    let r = trace::trace(
        &req,
        &TraceOptions {
            bundle: Some(dir),
            ..topts.clone()
        },
    )
    .expect("--bundle of the generation in force");
    assert_eq!(r.hooks.len(), 2);
    let state = generation::read_state(&bx.opts.state_dir).unwrap().unwrap();
    let info = trace::in_force(&topts).unwrap().info;
    let mut cut = state.clone();
    cut.hooks
        .retain(|h| !(h.endpoint.name == "web" && h.hook == TcxHook::Egress));
    let e = err(trace::trace_in(&req, &cut, &info));
    assert!(
        e.contains("pod x/web has no sluice program attached to its egress hook in generation 2"),
        "{e}"
    );

    // Compiled without rule recording: refused before any packet runs.
    generation::apply_bundle(&bundle(&c, false, true), &bx.opts).expect("apply");
    let e = err(trace::trace(&req, &topts));
    assert!(e.contains("compiled without rule recording"), "{e}");

    // IPv6 and self-traffic are refused with the reason.
    let v6 = TraceRequest {
        to: Target::Ip("fd00::1".parse().unwrap()),
        ..req.clone()
    };
    let e = err(trace::trace_in(&v6, &state, &info));
    assert!(e.contains("not IPv4"), "{e}");
    let own = TraceRequest {
        to: Target::Pod("client".into()),
        ..req
    };
    let e = err(trace::trace_in(&own, &state, &info));
    assert!(e.contains("to itself"), "{e}");
}
