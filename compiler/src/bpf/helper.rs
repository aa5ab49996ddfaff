//! Kernel helper functions that generated programs call, by their stable ids.
//!
//! The ids are `enum bpf_func_id` from the kernel UAPI (a test checks every id and name
//! against aya-obj's bindings of that header). They never change once released, so a typed
//! enum is safer than bare numbers in codegen.

/// A helper that generated code may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Helper {
    MapLookupElem,
    MapUpdateElem,
    MapDeleteElem,
    KtimeGetNs,
    TracePrintk,
    GetPrandomU32,
    GetSmpProcessorId,
    SkbStoreBytes,
    L3CsumReplace,
    L4CsumReplace,
    TailCall,
    CloneRedirect,
    SkbGetTunnelKey,
    SkbSetTunnelKey,
    Redirect,
    PerfEventOutput,
    SkbLoadBytes,
    CsumDiff,
    SkbChangeProto,
    GetHashRecalc,
    CsumUpdate,
    SkbChangeHead,
    XdpAdjustHead,
    GetSocketCookie,
    SkbAdjustRoom,
    RedirectMap,
    FibLookup,
    SkbCgroupId,
    KtimeGetBootNs,
    RingbufOutput,
    RingbufReserve,
    RingbufSubmit,
    RingbufDiscard,
    CsumLevel,
    RedirectNeigh,
    RedirectPeer,
    CheckMtu,
}

impl Helper {
    pub const ALL: [Helper; 37] = {
        use Helper::*;
        [
            MapLookupElem,
            MapUpdateElem,
            MapDeleteElem,
            KtimeGetNs,
            TracePrintk,
            GetPrandomU32,
            GetSmpProcessorId,
            SkbStoreBytes,
            L3CsumReplace,
            L4CsumReplace,
            TailCall,
            CloneRedirect,
            SkbGetTunnelKey,
            SkbSetTunnelKey,
            Redirect,
            PerfEventOutput,
            SkbLoadBytes,
            CsumDiff,
            SkbChangeProto,
            GetHashRecalc,
            CsumUpdate,
            SkbChangeHead,
            XdpAdjustHead,
            GetSocketCookie,
            SkbAdjustRoom,
            RedirectMap,
            FibLookup,
            SkbCgroupId,
            KtimeGetBootNs,
            RingbufOutput,
            RingbufReserve,
            RingbufSubmit,
            RingbufDiscard,
            CsumLevel,
            RedirectNeigh,
            RedirectPeer,
            CheckMtu,
        ]
    };

    /// The helper's `BPF_FUNC_*` id.
    pub fn id(self) -> i32 {
        use Helper::*;
        match self {
            MapLookupElem => 1,
            MapUpdateElem => 2,
            MapDeleteElem => 3,
            KtimeGetNs => 5,
            TracePrintk => 6,
            GetPrandomU32 => 7,
            GetSmpProcessorId => 8,
            SkbStoreBytes => 9,
            L3CsumReplace => 10,
            L4CsumReplace => 11,
            TailCall => 12,
            CloneRedirect => 13,
            SkbGetTunnelKey => 20,
            SkbSetTunnelKey => 21,
            Redirect => 23,
            PerfEventOutput => 25,
            SkbLoadBytes => 26,
            CsumDiff => 28,
            SkbChangeProto => 31,
            GetHashRecalc => 34,
            CsumUpdate => 40,
            SkbChangeHead => 43,
            XdpAdjustHead => 44,
            GetSocketCookie => 46,
            SkbAdjustRoom => 50,
            RedirectMap => 51,
            FibLookup => 69,
            SkbCgroupId => 79,
            KtimeGetBootNs => 125,
            RingbufOutput => 130,
            RingbufReserve => 131,
            RingbufSubmit => 132,
            RingbufDiscard => 133,
            CsumLevel => 135,
            RedirectNeigh => 152,
            RedirectPeer => 155,
            CheckMtu => 163,
        }
    }

    /// The helper's kernel name without the `bpf_` prefix, as in `BPF_FUNC_<name>`.
    pub fn name(self) -> &'static str {
        use Helper::*;
        match self {
            MapLookupElem => "map_lookup_elem",
            MapUpdateElem => "map_update_elem",
            MapDeleteElem => "map_delete_elem",
            KtimeGetNs => "ktime_get_ns",
            TracePrintk => "trace_printk",
            GetPrandomU32 => "get_prandom_u32",
            GetSmpProcessorId => "get_smp_processor_id",
            SkbStoreBytes => "skb_store_bytes",
            L3CsumReplace => "l3_csum_replace",
            L4CsumReplace => "l4_csum_replace",
            TailCall => "tail_call",
            CloneRedirect => "clone_redirect",
            SkbGetTunnelKey => "skb_get_tunnel_key",
            SkbSetTunnelKey => "skb_set_tunnel_key",
            Redirect => "redirect",
            PerfEventOutput => "perf_event_output",
            SkbLoadBytes => "skb_load_bytes",
            CsumDiff => "csum_diff",
            SkbChangeProto => "skb_change_proto",
            GetHashRecalc => "get_hash_recalc",
            CsumUpdate => "csum_update",
            SkbChangeHead => "skb_change_head",
            XdpAdjustHead => "xdp_adjust_head",
            GetSocketCookie => "get_socket_cookie",
            SkbAdjustRoom => "skb_adjust_room",
            RedirectMap => "redirect_map",
            FibLookup => "fib_lookup",
            SkbCgroupId => "skb_cgroup_id",
            KtimeGetBootNs => "ktime_get_boot_ns",
            RingbufOutput => "ringbuf_output",
            RingbufReserve => "ringbuf_reserve",
            RingbufSubmit => "ringbuf_submit",
            RingbufDiscard => "ringbuf_discard",
            CsumLevel => "csum_level",
            RedirectNeigh => "redirect_neigh",
            RedirectPeer => "redirect_peer",
            CheckMtu => "check_mtu",
        }
    }

    pub fn from_id(id: i32) -> Option<Helper> {
        Helper::ALL.into_iter().find(|h| h.id() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_and_names_are_unique_and_round_trip() {
        let ids: HashSet<_> = Helper::ALL.iter().map(|h| h.id()).collect();
        let names: HashSet<_> = Helper::ALL.iter().map(|h| h.name()).collect();
        assert_eq!(ids.len(), Helper::ALL.len());
        assert_eq!(names.len(), Helper::ALL.len());
        for h in Helper::ALL {
            assert_eq!(Helper::from_id(h.id()), Some(h));
        }
        assert_eq!(Helper::from_id(4), None);
    }

    /// The kernel's own `enum bpf_func_id` (aya-obj's bindings of the uapi header) for each
    /// helper, by the kernel's name for it.
    fn kernel_id(h: Helper) -> aya_obj::generated::bpf_func_id {
        use Helper::*;
        use aya_obj::generated::bpf_func_id::*;
        match h {
            MapLookupElem => BPF_FUNC_map_lookup_elem,
            MapUpdateElem => BPF_FUNC_map_update_elem,
            MapDeleteElem => BPF_FUNC_map_delete_elem,
            KtimeGetNs => BPF_FUNC_ktime_get_ns,
            TracePrintk => BPF_FUNC_trace_printk,
            GetPrandomU32 => BPF_FUNC_get_prandom_u32,
            GetSmpProcessorId => BPF_FUNC_get_smp_processor_id,
            SkbStoreBytes => BPF_FUNC_skb_store_bytes,
            L3CsumReplace => BPF_FUNC_l3_csum_replace,
            L4CsumReplace => BPF_FUNC_l4_csum_replace,
            TailCall => BPF_FUNC_tail_call,
            CloneRedirect => BPF_FUNC_clone_redirect,
            SkbGetTunnelKey => BPF_FUNC_skb_get_tunnel_key,
            SkbSetTunnelKey => BPF_FUNC_skb_set_tunnel_key,
            Redirect => BPF_FUNC_redirect,
            PerfEventOutput => BPF_FUNC_perf_event_output,
            SkbLoadBytes => BPF_FUNC_skb_load_bytes,
            CsumDiff => BPF_FUNC_csum_diff,
            SkbChangeProto => BPF_FUNC_skb_change_proto,
            GetHashRecalc => BPF_FUNC_get_hash_recalc,
            CsumUpdate => BPF_FUNC_csum_update,
            SkbChangeHead => BPF_FUNC_skb_change_head,
            XdpAdjustHead => BPF_FUNC_xdp_adjust_head,
            GetSocketCookie => BPF_FUNC_get_socket_cookie,
            SkbAdjustRoom => BPF_FUNC_skb_adjust_room,
            RedirectMap => BPF_FUNC_redirect_map,
            FibLookup => BPF_FUNC_fib_lookup,
            SkbCgroupId => BPF_FUNC_skb_cgroup_id,
            KtimeGetBootNs => BPF_FUNC_ktime_get_boot_ns,
            RingbufOutput => BPF_FUNC_ringbuf_output,
            RingbufReserve => BPF_FUNC_ringbuf_reserve,
            RingbufSubmit => BPF_FUNC_ringbuf_submit,
            RingbufDiscard => BPF_FUNC_ringbuf_discard,
            CsumLevel => BPF_FUNC_csum_level,
            RedirectNeigh => BPF_FUNC_redirect_neigh,
            RedirectPeer => BPF_FUNC_redirect_peer,
            CheckMtu => BPF_FUNC_check_mtu,
        }
    }

    #[test]
    fn ids_and_names_are_the_kernels() {
        for h in Helper::ALL {
            let k = kernel_id(h);
            assert_eq!(h.id(), k as i32, "{h:?}: id");
            assert_eq!(
                format!("BPF_FUNC_{}", h.name()),
                format!("{k:?}"),
                "{h:?}: name"
            );
        }
    }
}
