//! The per-endpoint programs, composed from the emitters, and their artifacts.
//!
//! `from_ep` (tcx ingress of the host-hook veth: packets from the pod) enforces the
//! endpoint's egress policy against the destination address; `to_ep` (tcx egress: packets to
//! the pod) enforces its ingress policy against the source address. Each is
//!
//! ```text
//! parse → ARP: pass; not IPv4: drop if enforced → conntrack lookups → [Wasm verdict modules] → decision → tail (trace, conntrack insert, verdict)
//! ```
//!
//! The verdict modules are the direction's verdict rules, inlined by [`super::wasm`]; a
//! direction with one is enforced and its endpoint tracks connections.
//!
//! A direction is *enforced* when the endpoint is isolated in it or some rule in it can deny.
//! An enforced direction drops what its table cannot judge: frames that are neither IPv4 nor
//! ARP (IPv6 among them) and malformed headers; a direction that is not enforced passes them.
//! Every part the endpoint does not need is left out: no conntrack when neither direction
//! can deny, no decision when this direction cannot deny (unless rules are recorded), no
//! trace code without rule recording. A program that needs none of it is `return
//! TC_ACT_OK` (with rule recording and no policy in its direction, after writing "allowed,
//! no rule" to `cb[0]`).

use super::cost::{self, Limits};
use super::decide;
use super::frame::{CODE, L3_PROTO};
use super::keys::{self, Stage};
use super::parse;
use super::verdict::{self, TC_ACT_OK};
use super::wasm::{self, InlineVerdict};
use super::{CtxLayout, DatapathError, MapContents, ProgramArtifact, TcxHook, ct};
use crate::bpf::{Asm, Cond, ObjectBuilder, ProgKind, Reg, Size};
use crate::plan::{Classes, DecisionTable, Verdict};

/// Which shape the decision takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The cheapest shape per table, chosen by [`cost::plan`].
    #[default]
    Specialized,
    /// Map-only, the Cilium shape: ipcache, then one LPM lookup.
    Generic,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodegenOptions {
    pub mode: Mode,
    /// Rule recording: write the verdict code (deciding rule, stage) to `skb->cb[0]` for
    /// `sluice trace` (see [`verdict`]).
    pub trace: bool,
    pub limits: Limits,
}

/// Both programs of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointArtifacts {
    pub from_ep: ProgramArtifact,
    pub to_ep: ProgramArtifact,
}

/// True when some packet can be denied. `None` (no policy in this direction) cannot.
pub fn can_deny(table: Option<&DecisionTable>) -> bool {
    table.is_some_and(|t| {
        t.profiles
            .iter()
            .any(|p| !p.other.allow || p.ports.iter().flatten().any(|s| !s.verdict.allow))
    })
}

/// True when a direction judges its packets, so that what the table cannot judge (frames
/// neither IPv4 nor ARP, malformed headers) is dropped: the endpoint is isolated in it, or
/// some packet can be denied.
pub fn enforced(table: Option<&DecisionTable>) -> bool {
    table.is_some_and(|t| t.isolated) || can_deny(table)
}

/// Whether an endpoint with these tables needs conntrack: when either direction can deny,
/// replies of what the other direction allowed must get through it.
pub fn needs_conntrack(ingress: Option<&DecisionTable>, egress: Option<&DecisionTable>) -> bool {
    can_deny(ingress) || can_deny(egress)
}

/// Compiles both programs of an endpoint from its ingress and egress tables (`None`: no
/// policy in that direction).
pub fn compile_endpoint(
    ingress: Option<&DecisionTable>,
    egress: Option<&DecisionTable>,
    classes: &Classes,
    opts: &CodegenOptions,
) -> Result<EndpointArtifacts, DatapathError> {
    compile_endpoint_with(ingress, egress, [&[], &[]], classes, opts)
}

/// [`compile_endpoint`] with the verdict rules of each direction (`[ingress, egress]`), in
/// the order they run. A direction with verdict rules can deny, so it is enforced and the
/// endpoint tracks connections.
pub fn compile_endpoint_with(
    ingress: Option<&DecisionTable>,
    egress: Option<&DecisionTable>,
    verdicts: [&[InlineVerdict]; 2],
    classes: &Classes,
    opts: &CodegenOptions,
) -> Result<EndpointArtifacts, DatapathError> {
    let [vin, veg] = verdicts;
    let conntrack = needs_conntrack(ingress, egress) || !vin.is_empty() || !veg.is_empty();
    Ok(EndpointArtifacts {
        from_ep: compile_program_with(
            TcxHook::Ingress,
            egress,
            veg,
            classes,
            opts,
            conntrack,
            None,
        )?,
        to_ep: compile_program_with(
            TcxHook::Egress,
            ingress,
            vin,
            classes,
            opts,
            conntrack,
            None,
        )?,
    })
}

/// Compiles one program. `table` is the policy of the direction `hook` enforces.
pub fn compile_program(
    hook: TcxHook,
    table: Option<&DecisionTable>,
    classes: &Classes,
    opts: &CodegenOptions,
    conntrack: bool,
) -> Result<ProgramArtifact, DatapathError> {
    compile_program_with(hook, table, &[], classes, opts, conntrack, None)
}

/// [`compile_program`] with the direction's verdict rules, run before `table`, and with
/// `node` the node datapath's forwarding after an allowed verdict (`super::node::forward`;
/// the from-pod program).
pub fn compile_program_with(
    hook: TcxHook,
    table: Option<&DecisionTable>,
    verdicts: &[InlineVerdict],
    classes: &Classes,
    opts: &CodegenOptions,
    conntrack: bool,
    node: Option<&super::node::NodeMaps>,
) -> Result<ProgramArtifact, DatapathError> {
    let name = hook.program_name();
    let deny = can_deny(table) || !verdicts.is_empty();
    let enforced = enforced(table) || !verdicts.is_empty();
    let mut a = Asm::new();
    let mut ct_map = None;
    let mut ipcache = None;
    let mut decision_maps = Vec::new();
    let mut node_maps = Vec::new();

    // Nothing to decide: pass. With rule recording and no policy at all in this direction,
    // still say so (two instructions, not a parse); a policy that cannot deny still gets
    // its decision code, so a trace can name the allow rule that matched.
    if !enforced && !conntrack && (!opts.trace || table.is_none()) && node.is_none() {
        if opts.trace {
            let unrestricted = Verdict {
                allow: true,
                audited: false,
                rule: None,
            };
            a.mov64(Reg::R2, keys::verdict_code(unrestricted) as i32)
                .stx(Size::W, Reg::R1, verdict::SKB_CB0, Reg::R2);
        }
        a.ret(TC_ACT_OK);
    } else {
        let tail = a.label();
        let malformed = a.label();
        let fail = a.label();
        // Inlined verdict modules read the packet through the saved context.
        verdict::emit_save_ctx(&mut a, opts.trace || node.is_some() || !verdicts.is_empty());
        if node.is_some() {
            super::node::deliver::emit_save_probe(&mut a, opts.trace);
        }
        parse::emit_parse(&mut a, CtxLayout::Tc, malformed);
        // Not IPv4: ARP passes; anything else (IPv6) only where the direction is not enforced.
        // CODE and L3_PROTO share a register: every compare comes before the code is set.
        let ipv4 = a.label();
        a.jmp(Cond::Eq, L3_PROTO, parse::ETH_P_IP, ipv4);
        if enforced {
            let arp = a.label();
            a.jmp(Cond::Eq, L3_PROTO, parse::ETH_P_ARP, arp)
                .mov64(CODE, keys::stage_code(false, Stage::NotIpv4) as i32)
                .ja(tail)
                .bind(arp);
        }
        a.mov64(CODE, keys::stage_code(true, Stage::NotIpv4) as i32)
            .ja(tail)
            .bind(ipv4);
        if conntrack {
            ct::emit_lookup(&mut a, hook, deny, tail);
            ct_map = Some(ct::map());
        }
        let decides = wasm::emit_verdicts(&mut a, name, verdicts, tail)?;
        match (table, opts.mode) {
            // Every module always decides: nothing reaches the table.
            _ if !decides => {}
            (Some(t), Mode::Generic) => {
                decision_maps = decide::emit_generic(&mut a, hook, t, tail, fail);
                ipcache = Some(decide::ipcache_contents(classes));
            }
            (Some(t), Mode::Specialized) if deny || opts.trace => {
                let plan = cost::plan(t, classes, &opts.limits);
                tracing::debug!(program = name, ?plan.peer, insns = plan.insns, "decision plan");
                decision_maps = decide::emit_specialized(&mut a, hook, t, &plan, tail, fail);
                if plan.uses_ipcache() {
                    ipcache = Some(decide::ipcache_contents(classes));
                }
            }
            _ => {
                let unrestricted = Verdict {
                    allow: true,
                    audited: false,
                    rule: None,
                };
                a.mov64(CODE, keys::verdict_code(unrestricted) as i32)
                    .ja(tail);
            }
        }
        // A malformed header: dropped where this direction is enforced.
        a.bind(malformed)
            .mov64(CODE, keys::stage_code(!enforced, Stage::Malformed) as i32)
            .ja(tail);
        // A lookup that cannot miss did: fail closed.
        if a.is_targeted(fail) {
            a.bind(fail)
                .mov64(CODE, keys::stage_code(false, Stage::Policy) as i32);
        }
        a.bind(tail);
        let wasm = !verdicts.is_empty();
        match node {
            None => verdict::emit_tail(&mut a, opts.trace, conntrack, wasm),
            Some(n) => {
                verdict::emit_record(&mut a, opts.trace, conntrack, wasm);
                super::node::forward::emit(&mut a, &n.masq);
                // Delivery tracks for its destination; forwarding reads the node maps.
                ct_map = Some(ct::map());
                let have = ipcache.is_some();
                node_maps = n.all();
                node_maps.retain(|m| !(have && m.name == keys::IPCACHE));
                node_maps.retain(|m| m.name != keys::node::WIRE);
                node_maps.extend(n.persistent());
            }
        }
    }

    let prog = a.finish().map_err(|source| DatapathError::Asm {
        program: name.to_string(),
        source,
    })?;
    let mut maps: Vec<MapContents> = ct_map.into_iter().chain(ipcache).collect();
    maps.extend(decision_maps);
    maps.extend(node_maps);
    let mut obj = ObjectBuilder::new();
    for m in &maps {
        obj.map(m.def.clone())
            .map_err(|source| DatapathError::Asm {
                program: name.to_string(),
                source,
            })?;
    }
    obj.program(name, ProgKind::Classifier, prog)
        .map_err(|source| DatapathError::Asm {
            program: name.to_string(),
            source,
        })?;
    let elf = obj.write().map_err(|source| DatapathError::Asm {
        program: name.to_string(),
        source,
    })?;
    Ok(ProgramArtifact {
        name: name.to_string(),
        hook,
        elf,
        maps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::cost::{PeerPlan, ProfilePlan, address_intervals};
    use crate::resolve::InventoryFiles;
    use crate::resolve::{Inventory, identity, policy_for};
    use crate::source::{SourceMap, dsl};
    use std::net::{IpAddr, Ipv4Addr};

    /// One program with the default options (`conntrack`: whether the generation tracks).
    fn build(
        hook: TcxHook,
        table: Option<&DecisionTable>,
        c: &Classes,
        conntrack: bool,
    ) -> ProgramArtifact {
        compile_program(hook, table, c, &CodegenOptions::default(), conntrack).unwrap()
    }

    const INV: &str = "
endpoints:
- {name: a, namespace: x, labels: {app: a}, ips: [10.0.0.1]}
- {name: b, namespace: x, labels: {app: b}, ips: [10.0.0.2]}
";

    fn tables(policy: &str) -> (Classes, Option<DecisionTable>, Option<DecisionTable>) {
        let mut sm = SourceMap::new();
        let id = sm.add("t.sluice", policy);
        let doc = dsl::parse(id, policy).unwrap();
        let (ir, d) = crate::ir::lower(&[doc]);
        assert!(!d.has_errors(), "{d:?}");
        let inv = Inventory::parse("inv", INV).unwrap();
        let ids = identity::allocate(&inv, &ir);
        let classes = Classes::build(&inv, &ids, None);
        let p = policy_for(&ir, &inv, &ids, 0);
        let ing = p.ingress.map(|d| DecisionTable::build(&d, &classes));
        let egr = p.egress.map(|d| DecisionTable::build(&d, &classes));
        (classes, ing, egr)
    }

    #[test]
    fn output_is_deterministic() {
        let policy = r#"policy "p" in namespace x { select app = a
            ingress allow from pods { app = b } ports 80/tcp, 1000-2000/udp
            ingress deny from cidr 10.9.0.0/16 }"#;
        for mode in [Mode::Specialized, Mode::Generic] {
            let opts = CodegenOptions {
                mode,
                trace: true,
                ..Default::default()
            };
            let (c, i, e) = tables(policy);
            let one = compile_endpoint(i.as_ref(), e.as_ref(), &c, &opts).unwrap();
            let (c, i, e) = tables(policy);
            let two = compile_endpoint(i.as_ref(), e.as_ref(), &c, &opts).unwrap();
            assert_eq!(one, two);
        }
    }

    /// The program's instructions, read back from its object.
    fn insns(art: &ProgramArtifact) -> Vec<crate::bpf::insn::Insn> {
        use object::{Object, ObjectSection};
        let f = object::File::parse(&*art.elf).unwrap();
        let sec = f
            .section_by_name(&format!("classifier/{}", art.name))
            .unwrap();
        crate::bpf::insn::decode_all(sec.data().unwrap()).unwrap()
    }

    /// Rule recording costs nothing when it is off: the untraced program is the traced one
    /// with exactly the trace instructions taken out (1 at entry, 3 in the tail, 1 more with
    /// conntrack), and touches neither `cb` nor the context's stack slot.
    #[test]
    fn without_rule_recording_there_are_no_trace_instructions() {
        use crate::bpf::insn::Insn;
        let policy = r#"policy "p" in namespace x { select app = a
            ingress allow from pods { app = b } ports 80/tcp, 1000-2000/udp
            ingress deny from cidr 10.9.0.0/16
            egress allow to cidr 10.0.0.0/8 }"#;
        let is_trace = |i: &Insn| {
            (i.dst == 10 || i.src == 10) && i.off == verdict::CTX_SLOT
                || i.off == verdict::SKB_CB0
                    && matches!((i.class(), i.src, i.dst), (1, 1, _) | (3, _, 1))
                || i.is_branch() && i.imm == keys::TRACE_REQUEST as i32
        };
        // Jump offsets move when instructions go; everything else must be equal.
        let shape = |v: Vec<Insn>| -> Vec<(u8, u8, u8, i32, Option<i16>)> {
            v.into_iter()
                .map(|i| {
                    (
                        i.code,
                        i.dst,
                        i.src,
                        i.imm,
                        (!i.is_branch()).then_some(i.off),
                    )
                })
                .collect()
        };
        let mut compared = 0;
        for mode in [Mode::Specialized, Mode::Generic] {
            let (c, i, e) = tables(policy);
            let traced = CodegenOptions {
                mode,
                trace: true,
                ..Default::default()
            };
            let plain = CodegenOptions {
                trace: false,
                ..traced
            };
            let t = compile_endpoint(i.as_ref(), e.as_ref(), &c, &traced).unwrap();
            let p = compile_endpoint(i.as_ref(), e.as_ref(), &c, &plain).unwrap();
            for (t, p) in [(&t.from_ep, &p.from_ep), (&t.to_ep, &p.to_ep)] {
                let (ti, pi) = (insns(t), insns(p));
                assert!(!pi.iter().any(is_trace), "{mode:?} {}", t.name);
                let conntrack = t.maps.iter().any(|m| m.name == keys::CT);
                let extra = 4 + usize::from(conntrack);
                assert_eq!(ti.len(), pi.len() + extra, "{mode:?} {}", t.name);
                let stripped: Vec<Insn> = ti.into_iter().filter(|i| !is_trace(i)).collect();
                assert_eq!(shape(stripped), shape(pi), "{mode:?} {}", t.name);
                assert_eq!(t.maps, p.maps, "rule recording needs no map");
                compared += 1;
            }
        }
        assert_eq!(compared, 4);

        // No policy in a direction and nothing to track: `return TC_ACT_OK`, and with
        // recording two instructions that write "allowed, no rule" first.
        let (c, _, _) = tables(policy);
        for (trace, want) in [(false, 2), (true, 4)] {
            let opts = CodegenOptions {
                trace,
                ..Default::default()
            };
            let art = compile_program(TcxHook::Ingress, None, &c, &opts, false).unwrap();
            let i = insns(&art);
            assert_eq!(i.len(), want, "trace {trace}");
            assert_eq!(i.iter().filter(|i| is_trace(i)).count(), usize::from(trace));
        }
    }

    /// Isolated but allowing every IPv4 packet: no conntrack and no decision, yet the
    /// program parses, so that IPv6 and malformed frames are dropped and ARP passes.
    #[test]
    fn an_isolated_direction_that_cannot_deny_still_drops_what_it_cannot_judge() {
        let (c, i, e) = tables(
            r#"policy "p" in namespace x { select app = a
            isolate ingress
            ingress allow from cidr 0.0.0.0/0 }"#,
        );
        let t = i.unwrap();
        assert!(t.isolated && !can_deny(Some(&t)) && enforced(Some(&t)));
        assert!(e.is_none() && !enforced(None));
        let art = build(TcxHook::Egress, Some(&t), &c, false);
        assert!(art.maps.is_empty(), "{:?}", art.maps);
        let text = crate::datapath::emit_asm(&art).unwrap();
        let arp = format!("if r7 == {} goto", parse::ETH_P_ARP);
        assert!(text.contains(&arp) && text.contains("r0 <<= 1"), "{text}");
        // The other direction has no policy and nothing to track: `return TC_ACT_OK`.
        let art = build(TcxHook::Ingress, None, &c, false);
        assert!(
            crate::datapath::emit_asm(&art)
                .unwrap()
                .ends_with("   0: r0 = 0\n   1: exit\n")
        );
    }

    #[test]
    fn uniform_deny_is_a_single_leaf_and_no_lookup() {
        let (c, i, _) = tables(r#"policy "p" in namespace x { select app = a isolate ingress }"#);
        let t = i.unwrap();
        let plan = cost::plan(&t, &c, &Limits::default());
        assert_eq!(plan.peer, PeerPlan::Single(0));
        let art = build(TcxHook::Egress, Some(&t), &c, true);
        let names: Vec<&str> = art.maps.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["sluice_ct"]);
        let text = crate::datapath::emit_asm(&art).unwrap();
        assert!(!text.contains("sluice_ipcache"), "{text}");
    }

    /// The inline address tree gives each address the profile of its class by longest
    /// prefix match.
    #[test]
    fn address_intervals_agree_with_the_ipcache() {
        let (c, i, _) = tables(
            r#"policy "p" in namespace x { select app = a
            ingress allow from cidr 10.0.0.0/8 except 10.0.0.0/24 ports 80/tcp
            ingress allow from cidr 10.0.0.0/30 ports 81/tcp
            ingress allow from pods { app = b } ports 82/tcp }"#,
        );
        let t = i.unwrap();
        let iv = address_intervals(&t, &c);
        assert!(
            iv.windows(2)
                .all(|w| w[0].hi + 1 == w[1].lo && w[0].profile != w[1].profile)
        );
        assert_eq!((iv[0].lo, iv.last().unwrap().hi), (0, u32::MAX));
        let mut x = 0x9e37_79b9u32;
        let mut probes: Vec<u32> = vec![
            0,
            u32::MAX,
            0x0a00_0000,
            0x0a00_0001,
            0x0a00_0002,
            0x0a00_0003,
        ];
        probes.extend([
            0x0a00_0004,
            0x0a00_00ff,
            0x0a00_0100,
            0x0aff_ffff,
            0x0b00_0000,
            0x09ff_ffff,
        ]);
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            probes.push(x);
            probes.push(0x0a00_0000 | (x & 0x3ff));
        }
        for a in probes {
            let class = c.class_of_ip(IpAddr::V4(Ipv4Addr::from(a))).unwrap();
            let want = t.class_profile[class as usize - 1];
            let got = iv[iv.partition_point(|i| i.hi < a)].profile;
            assert_eq!(got, want, "{}", Ipv4Addr::from(a));
        }
    }

    /// A table far beyond what one inline program may hold still assembles: the cost model
    /// moves its long segment lists into the port map.
    #[test]
    fn big_tables_go_to_maps_and_assemble() {
        let ports: Vec<String> = (0..3000).map(|i| format!("{}/tcp", 2 * i + 1)).collect();
        let policy = format!(
            r#"policy "p" in namespace x {{ select app = a
            ingress allow from pods {{ app = b }} ports {}
            ingress allow from cidr 10.7.0.0/16 ports 5/udp }}"#,
            ports.join(", ")
        );
        let (c, i, _) = tables(&policy);
        let t = i.unwrap();
        let plan = cost::plan(&t, &c, &Limits::default());
        assert!(plan.uses_port_map(), "{:?}", plan.profiles);
        assert!(plan.insns <= Limits::default().inline_budget);
        let art = build(TcxHook::Egress, Some(&t), &c, true);
        let ports = art.maps.iter().find(|m| m.name == "sluice_ports").unwrap();
        assert!(ports.entries.len() >= 3000);
        // Without limits the same table would be one inline tree: the limits decided.
        let unlimited = Limits {
            inline_budget: usize::MAX,
            ports_inline_max: usize::MAX,
            ..Limits::default()
        };
        let plan = cost::plan(&t, &c, &unlimited);
        assert!(matches!(plan.profiles, ProfilePlan::Blocks { .. }));
        assert!(!plan.uses_port_map());
    }
}
