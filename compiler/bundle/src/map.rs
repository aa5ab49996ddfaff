//! Map definitions and contents: what an object's legacy `maps` section declares and what the
//! loader writes into each map before any program that uses it is attached.

/// Map types (`enum bpf_map_type`) the datapath uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapType {
    Hash,
    Array,
    ProgArray,
    PerfEventArray,
    PercpuHash,
    PercpuArray,
    LruHash,
    LruPercpuHash,
    LpmTrie,
    RingBuf,
}

impl MapType {
    pub fn id(self) -> u32 {
        match self {
            MapType::Hash => 1,
            MapType::Array => 2,
            MapType::ProgArray => 3,
            MapType::PerfEventArray => 4,
            MapType::PercpuHash => 5,
            MapType::PercpuArray => 6,
            MapType::LruHash => 9,
            MapType::LruPercpuHash => 10,
            MapType::LpmTrie => 11,
            MapType::RingBuf => 27,
        }
    }
}

/// `BPF_F_NO_PREALLOC`: required by LPM tries.
pub const BPF_F_NO_PREALLOC: u32 = 1;

/// How the loader shares a map (`bpf_map_def.pinning`, the 7th u32, as aya and libbpf read
/// it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Pinning {
    /// A fresh map per load.
    #[default]
    None,
    /// Reuse the map pinned under the loader's pin directory by the map's name, or create
    /// and pin it there: every object that names it shares one map.
    ByName,
}

impl Pinning {
    pub fn id(self) -> u32 {
        match self {
            Pinning::None => 0,
            Pinning::ByName => 1,
        }
    }
}

/// A map definition as written to the legacy `maps` section.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MapDef {
    pub name: String,
    pub ty: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    pub pinning: Pinning,
}

impl MapDef {
    pub fn new(
        name: impl Into<String>,
        ty: MapType,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> MapDef {
        let flags = match ty {
            MapType::LpmTrie => BPF_F_NO_PREALLOC,
            _ => 0,
        };
        MapDef {
            name: name.into(),
            ty,
            key_size,
            value_size,
            max_entries,
            flags,
            pinning: Pinning::None,
        }
    }

    /// The same map, shared by name (see [`Pinning::ByName`]).
    pub fn pinned_by_name(mut self) -> MapDef {
        self.pinning = Pinning::ByName;
        self
    }

    /// A ring buffer of `size` bytes (a power of two, a multiple of the page size).
    pub fn ringbuf(name: impl Into<String>, size: u32) -> MapDef {
        MapDef::new(name, MapType::RingBuf, 0, 0, size)
    }

    /// A tail-call table with `slots` entries.
    pub fn prog_array(name: impl Into<String>, slots: u32) -> MapDef {
        MapDef::new(name, MapType::ProgArray, 4, 4, slots)
    }

    /// The 28-byte `struct bpf_map_def` record.
    pub fn encode(&self) -> [u8; 28] {
        let mut b = [0u8; 28];
        let fields = [
            self.ty.id(),
            self.key_size,
            self.value_size,
            self.max_entries,
            self.flags,
            0,
            self.pinning.id(),
        ];
        for (i, f) in fields.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&f.to_le_bytes());
        }
        b
    }
}

/// Who fills a map and who shares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapScope {
    /// Private to this program: the loader creates it with the object and writes `entries`.
    Program,
    /// One map per policy generation, shared by every program of that generation that names
    /// it (the ipcache). `entries` are the same in every artifact of a generation; the loader
    /// creates and fills it once and hands it to each load (aya's `map_pin_path`).
    Generation,
    /// Shared across generations and never written by the loader (conntrack). The object
    /// marks it [`Pinning::ByName`], so even a plain load shares it by name;
    /// the loader pins it at `/sys/fs/bpf/sluice/ct` (aya's `map_pin_path`). `entries` is
    /// empty.
    Persistent,
    /// One map per generation like [`MapScope::Generation`], but some fields of each entry
    /// are only known on the node when it loads (interface indexes, MAC addresses): the
    /// bundle carries them zeroed and the loader completes them from the interfaces it
    /// resolved, before filling ([`crate::abi::node`] names the fields). The local
    /// endpoints and the node's own configuration.
    Node,
}

impl MapScope {
    /// One kernel map per generation, shared by its programs and filled once.
    pub fn per_generation(self) -> bool {
        matches!(self, MapScope::Generation | MapScope::Node)
    }
}

/// One map of an artifact and what to put in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapContents {
    /// The map's name in the object (always `def.name`).
    pub name: String,
    pub def: MapDef,
    pub scope: MapScope,
    /// Key and value bytes, exactly as `bpf_map_update_elem` takes them, in a deterministic
    /// order.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}
