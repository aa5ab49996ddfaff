//! The programs on the node's own devices: `from_overlay` on the VXLAN device and
//! `from_netdev` on the uplink (tcx ingress both). Each delivers packets for local pods,
//! after the destination's ingress policy ([`super::deliver`]); what is not for a local pod
//! goes to the host stack.
//!
//! - `from_overlay`: the source's class comes from the VNI (`bpf_skb_get_tunnel_key`) and
//!   the source address, through `sluice_wire` ([`super::wire`]); no row drops the packet.
//!   Frames other than IPv4 and ARP, and malformed ones, are dropped: the overlay carries
//!   pod IPv4 only.
//! - `from_netdev` (native routing, and VXLAN with masquerade): first the reverse NAT of
//!   replies to masqueraded flows ([`super::nat::emit_reverse`]); then the class is the
//!   ipcache's for the source address, as `to_ep` would compute it; everything that is not
//!   IPv4 for a local pod is the host's.

use super::super::frame::Var;
use super::super::parse;
use super::super::verdict::{self, TC_ACT_OK, TC_ACT_SHOT};
use super::super::{CtxLayout, DatapathError, MapContents, ProgramArtifact, TcxHook, ct};
use super::{NodeMaps, deliver, forward};
use crate::bpf::{Asm, Cond, Helper, MapRef, ObjectBuilder, ProgKind, Reg, Size};
use sluice_bundle::abi::node::*;

/// Which device a program is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The VXLAN device: `from_overlay`.
    Overlay,
    /// The uplink under native routing: `from_netdev`.
    Uplink,
}

impl Device {
    pub fn program_name(self) -> &'static str {
        match self {
            Device::Overlay => "from_overlay",
            Device::Uplink => "from_netdev",
        }
    }
}

/// Builds the program of `device`.
pub fn compile(device: Device, maps: &NodeMaps) -> Result<ProgramArtifact, DatapathError> {
    use Reg::*;
    let name = device.program_name();
    let mut a = Asm::new();
    let malformed = a.label();
    let ipv4 = a.label();
    let drop = a.label();
    let stack = a.label();
    verdict::emit_save_ctx(&mut a, true);
    deliver::emit_save_probe(&mut a, false);
    parse::emit_parse(&mut a, CtxLayout::Tc, malformed);
    a.jmp(
        Cond::Eq,
        super::super::frame::L3_PROTO,
        parse::ETH_P_IP,
        ipv4,
    );
    match device {
        Device::Overlay => a
            .jmp(
                Cond::Eq,
                super::super::frame::L3_PROTO,
                parse::ETH_P_ARP,
                stack,
            )
            .ja(drop),
        Device::Uplink => a.ja(stack),
    };
    a.bind(ipv4);
    if device == Device::Overlay {
        let t = Var::TunnelKey.off();
        a.ldx(Size::DW, R1, R10, Var::Ctx.off())
            .mov64(R2, R10)
            .add64(R2, i32::from(t))
            .mov64(R3, 24)
            .mov64(R4, 0)
            .call(Helper::SkbGetTunnelKey)
            .jmp(Cond::Ne, R0, 0, drop);
    }
    if device == Device::Uplink && maps.masq.enabled {
        super::nat::emit_reverse(&mut a, drop);
    }
    // For a local pod?
    a.map_lookup_stack(MapRef::new(ENDPOINTS), Var::Daddr.off())
        .jmp(Cond::Eq, R0, 0, stack)
        .stx(Size::DW, R10, Var::EpPtr.off(), R0);
    forward::emit_class_of(&mut a, Var::Saddr.off(), drop);
    if device == Device::Overlay {
        // (VNI identity, address class) → class; no row: dropped.
        let k = Var::NodeKey.off();
        a.ldx(Size::W, R1, R10, Var::TunnelKey.off())
            .stx(Size::W, R10, k, R1)
            .ldx(Size::W, R1, R10, Var::Class.off())
            .stx(Size::W, R10, k + 4, R1)
            .map_lookup_stack(MapRef::new(WIRE), k)
            .jmp(Cond::Eq, R0, 0, drop)
            .ldx(Size::W, R1, R0, 0)
            .stx(Size::W, R10, Var::Class.off(), R1);
    }
    deliver::emit(&mut a);
    let malformed_verdict = match device {
        Device::Overlay => TC_ACT_SHOT,
        Device::Uplink => TC_ACT_OK,
    };
    a.bind(malformed).ret(malformed_verdict);
    a.bind(drop).ret(TC_ACT_SHOT);
    a.bind(stack).ret(TC_ACT_OK);

    let mut used = vec![ct::map(), maps.ipcache.clone(), maps.endpoints.clone()];
    used.push(maps.ingress.clone());
    if device == Device::Overlay {
        used.push(maps.wire.clone());
    } else {
        used.extend(maps.persistent());
    }
    artifact(name, a, used)
}

/// The artifact of a node program: its object with `maps` defined in order.
pub fn artifact(
    name: &str,
    a: Asm,
    maps: Vec<MapContents>,
) -> Result<ProgramArtifact, DatapathError> {
    let err = |source| DatapathError::Asm {
        program: name.to_string(),
        source,
    };
    let prog = a.finish().map_err(err)?;
    let mut obj = ObjectBuilder::new();
    for m in &maps {
        obj.map(m.def.clone()).map_err(err)?;
    }
    obj.program(name, ProgKind::Classifier, prog).map_err(err)?;
    Ok(ProgramArtifact {
        name: name.to_string(),
        hook: TcxHook::Ingress,
        elf: obj.write().map_err(err)?,
        maps,
    })
}
