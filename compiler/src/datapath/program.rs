//! The per-endpoint programs, composed from the emitters, and their artifacts.
//!
//! `from_ep` (tcx ingress of the host-side veth: packets from the pod) enforces the
//! endpoint's egress policy against the destination address; `to_ep` (tcx egress: packets to
//! the pod) enforces its ingress policy against the source address. Each is
//!
//! ```text
//! parse → not IPv4: pass → conntrack lookups → decision → tail (trace, conntrack insert, verdict)
//! ```
//!
//! with every part left out that the endpoint does not need: no conntrack when neither
//! direction can deny, no decision when this direction cannot deny (unless rules are
//! recorded), no trace code without rule recording. A program that needs none of it is
//! `return TC_ACT_OK`.

use super::cost::{self, Limits};
use super::decide::{self, CODE};
use super::keys::{self, Stage};
use super::parse::{self, L3_PROTO};
use super::verdict::{self, TC_ACT_OK};
use super::{Attach, DatapathError, Hook, MapContents, ProgramArtifact, Side, ct};
use crate::bpf::{Asm, Cond, ObjectBuilder, ProgKind};
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
    /// Rule recording: write the deciding rule and verdict to `sluice_trace`.
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
    let conntrack = needs_conntrack(ingress, egress);
    Ok(EndpointArtifacts {
        from_ep: compile_program(Side::FromEp, egress, classes, opts, conntrack)?,
        to_ep: compile_program(Side::ToEp, ingress, classes, opts, conntrack)?,
    })
}

/// Compiles one program. `table` is the policy of the direction `side` enforces.
pub fn compile_program(
    side: Side,
    table: Option<&DecisionTable>,
    classes: &Classes,
    opts: &CodegenOptions,
    conntrack: bool,
) -> Result<ProgramArtifact, DatapathError> {
    let name = side.program_name();
    let deny = can_deny(table);
    let mut a = Asm::new();
    let mut ct_map = None;
    let mut ipcache = None;
    let mut decision_maps = Vec::new();

    if !deny && !conntrack && !opts.trace {
        a.ret(TC_ACT_OK);
    } else {
        let tail = a.label();
        let malformed = a.label();
        let fail = a.label();
        parse::emit_parse(&mut a, Hook::Tc, malformed);
        let ipv4 = a.label();
        a.jmp(Cond::Eq, L3_PROTO, parse::ETH_P_IP, ipv4)
            .mov64(CODE, keys::stage_code(true, Stage::NotIpv4) as i32)
            .ja(tail)
            .bind(ipv4);
        if conntrack {
            ct::emit_lookup(&mut a, side, deny, tail);
            ct_map = Some(ct::map());
        }
        match (table, opts.mode) {
            (Some(t), Mode::Generic) => {
                decision_maps = decide::emit_generic(&mut a, side, t, tail, fail);
                ipcache = Some(decide::ipcache_contents(classes));
            }
            (Some(t), Mode::Specialized) if deny || opts.trace => {
                let plan = cost::plan(t, classes, &opts.limits);
                tracing::debug!(program = name, ?plan.peer, insns = plan.insns, "decision plan");
                decision_maps = decide::emit_specialized(&mut a, side, t, &plan, tail, fail);
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
        // A cut-short header: dropped where this direction can deny.
        a.bind(malformed)
            .mov64(CODE, keys::stage_code(!deny, Stage::Malformed) as i32)
            .ja(tail);
        // A lookup that cannot miss did: fail closed.
        if a.is_targeted(fail) {
            a.bind(fail)
                .mov64(CODE, keys::stage_code(false, Stage::Policy) as i32);
        }
        a.bind(tail);
        verdict::emit_tail(&mut a, opts.trace, conntrack);
    }

    let prog = a.finish().map_err(|source| DatapathError::Asm {
        program: name.to_string(),
        source,
    })?;
    let mut maps: Vec<MapContents> = ct_map.into_iter().chain(ipcache).collect();
    maps.extend(decision_maps);
    if opts.trace {
        maps.push(verdict::trace_map());
    }
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
        side,
        attach: match side {
            Side::FromEp => Attach::TcxIngress,
            Side::ToEp => Attach::TcxEgress,
        },
        elf,
        maps,
    })
}
