//! The bundle: the one contract between the compiler and the loader (`spec/bundle.md`).
//!
//! This crate is that contract, and Cargo enforces it: the compiler writes bundles with it and
//! the kernel library reads them with it, and neither depends on the other. Besides the
//! directory format it holds what the generated programs share with the loader: map
//! definitions ([`map`]), artifacts ([`artifact`]), the verdict code and map names ([`abi`]),
//! and the trace info ([`trace_info`]).
//!
//! A bundle is a directory that holds everything a loader needs to put one policy generation
//! into the kernel, and nothing that depends on when or where it was built:
//!
//! ```text
//! manifest.json          versions, inputs, shared maps, artifacts, attachments (all sorted)
//! programs/<sha256>.o    one ELF object per distinct object file, named by its own sha256
//! maps/<sha256>.map      one binary entry file per distinct map contents
//! trace/<sha256>.json    optional: rule table and endpoint addresses for `sluice trace`
//! ```
//!
//! Files are content-addressed, so identical programs and identical map contents are stored
//! once. An *artifact* is what gets loaded once and attached to hooks: an object, the name of
//! its program, and the contents of its per-program maps. Its id hashes all three, so two
//! endpoints with the same code but different policy-map contents are different artifacts,
//! while endpoints whose artifacts come out identical share one loaded program.
//!
//! The reader checks every file against the sha256 the manifest gives and names the file
//! that does not match.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub mod abi;
pub mod artifact;
pub mod map;
pub mod trace_info;

pub use sluice_policy::Digest;

pub use crate::artifact::{ProgramArtifact, TcxHook};
pub use crate::map::{MapContents, MapDef, MapScope, MapType, Pinning};
pub use crate::trace_info::TraceInfo;

/// Version of the directory layout and manifest schema this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// What goes into the manifest's `generator` field.
pub const GENERATOR: &str = concat!("sluice-compiler ", env!("CARGO_PKG_VERSION"));
/// First 8 bytes of every map entry file.
pub const MAP_FILE_MAGIC: [u8; 8] = *b"SLUICEMP";
/// Version of the map entry file layout.
pub const MAP_FILE_VERSION: u32 = 1;
/// Length of a map entry file's header: magic, version, key size, value size, count.
pub const MAP_HEADER_LEN: usize = 24;

/// An endpoint by Kubernetes namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EndpointRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for EndpointRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Which artifact runs on which hook of which endpoint.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attachment {
    pub endpoint: EndpointRef,
    /// Name of the host-side veth in the node namespace (inventory `interface`).
    pub interface: Option<String>,
    /// The endpoint's network namespace (inventory `netns`): its eth0's peer is the host side.
    pub netns: Option<String>,
    pub hook: TcxHook,
    pub artifact: Digest,
}

/// A map several artifacts refer to by the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedMap {
    pub def: MapDef,
    /// `Generation` (the ipcache) or `Persistent` (conntrack).
    pub scope: MapScope,
    /// Pin file name under the loader's root, for persistent maps (e.g. `ct`).
    pub pin: Option<String>,
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl SharedMap {
    /// A persistent map pinned as `pin` (conntrack): it survives generations.
    pub fn persistent(def: MapDef, pin: &str) -> SharedMap {
        SharedMap {
            def,
            scope: MapScope::Persistent,
            pin: Some(pin.to_owned()),
            entries: Vec::new(),
        }
    }

    /// A generation-scope map with its entries (the ipcache).
    pub fn generation(def: MapDef, entries: Vec<(Vec<u8>, Vec<u8>)>) -> SharedMap {
        SharedMap {
            def,
            scope: MapScope::Generation,
            pin: None,
            entries,
        }
    }
}

/// One policy input (a source file, an inventory) by name and digest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Input {
    pub name: String,
    pub sha256: Digest,
}

/// A loadable unit: an object, the program in it that hooks run, and its map contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// Name of the classifier program inside the object.
    pub program: String,
    /// The hook it is built for.
    pub hook: TcxHook,
    pub elf: Vec<u8>,
    /// Per-program maps to fill, sorted by name, entries sorted by key.
    pub maps: Vec<MapContents>,
}

/// A whole bundle in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub generator: String,
    /// Sorted by name.
    pub inputs: Vec<Input>,
    /// Sorted by map name.
    pub shared_maps: Vec<SharedMap>,
    pub artifacts: BTreeMap<Digest, Artifact>,
    /// Sorted by endpoint, then hook.
    pub attachments: Vec<Attachment>,
    /// What `sluice trace` needs (rule table, endpoint addresses), when the compiler gave it.
    pub trace: Option<TraceInfo>,
}

/// What went wrong building, writing or reading a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a valid manifest: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: bundle format {found}, this sluice reads format {supported}")]
    UnsupportedFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path} was modified: manifest says sha256 {expected}, file has {actual}")]
    Tampered {
        path: PathBuf,
        expected: Digest,
        actual: Digest,
    },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("invalid bundle: {0}")]
    Invalid(String),
    #[error("{path} exists and is not empty; refusing to write a bundle over it")]
    NotEmpty { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_owned(),
        source,
    }
}

// ---- manifest schema -------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: u32,
    generator: String,
    inputs: Vec<Input>,
    shared_maps: Vec<SharedMapRecord>,
    artifacts: Vec<ArtifactRecord>,
    attachments: Vec<Attachment>,
    /// Absent (not `null`) when there is none, so bundles without it keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trace: Option<FileRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRef {
    path: String,
    sha256: Digest,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapDefRecord {
    #[serde(rename = "type")]
    ty: String,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
    /// `none` or `by_name` (the object's `bpf_map_def.pinning`).
    pinning: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedMapRecord {
    name: String,
    def: MapDefRecord,
    /// `generation` or `persistent`.
    scope: String,
    pin: Option<String>,
    entries: Option<FileRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapRecord {
    name: String,
    def: MapDefRecord,
    entries: Option<FileRef>,
}

/// An artifact as the manifest lists it; its id is the sha256 of the record without the id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArtifactRecord {
    id: Digest,
    object: FileRef,
    program: String,
    hook: TcxHook,
    maps: Vec<MapRecord>,
}

/// The part of an artifact record its id is computed over.
#[derive(Serialize)]
struct ArtifactIdentity<'a> {
    object: &'a Digest,
    program: &'a str,
    hook: TcxHook,
    maps: &'a [MapRecord],
}

fn artifact_id(object: &Digest, program: &str, hook: TcxHook, maps: &[MapRecord]) -> Digest {
    let bytes = serde_json::to_vec(&ArtifactIdentity {
        object,
        program,
        hook,
        maps,
    })
    .expect("plain data serializes");
    let mut h = Sha256::new();
    h.update(b"sluice-artifact-v1\0");
    h.update(&bytes);
    Digest(h.finalize().into())
}

const MAP_TYPES: &[(MapType, &str)] = &[
    (MapType::Hash, "hash"),
    (MapType::Array, "array"),
    (MapType::ProgArray, "prog_array"),
    (MapType::PerfEventArray, "perf_event_array"),
    (MapType::PercpuHash, "percpu_hash"),
    (MapType::PercpuArray, "percpu_array"),
    (MapType::LruHash, "lru_hash"),
    (MapType::LruPercpuHash, "lru_percpu_hash"),
    (MapType::LpmTrie, "lpm_trie"),
    (MapType::RingBuf, "ringbuf"),
];

/// The manifest's name for a map type.
pub fn map_type_name(ty: MapType) -> &'static str {
    MAP_TYPES
        .iter()
        .find(|(t, _)| *t == ty)
        .map(|(_, n)| *n)
        .expect("every MapType has a name")
}

fn def_record(def: &MapDef) -> MapDefRecord {
    MapDefRecord {
        ty: map_type_name(def.ty).to_owned(),
        key_size: def.key_size,
        value_size: def.value_size,
        max_entries: def.max_entries,
        flags: def.flags,
        pinning: match def.pinning {
            Pinning::None => "none",
            Pinning::ByName => "by_name",
        }
        .to_owned(),
    }
}

fn scope_name(s: MapScope) -> &'static str {
    match s {
        MapScope::Program => "program",
        MapScope::Generation => "generation",
        MapScope::Persistent => "persistent",
        MapScope::Node => "node",
    }
}

fn scope_from_name(s: &str) -> Option<MapScope> {
    match s {
        "generation" => Some(MapScope::Generation),
        "persistent" => Some(MapScope::Persistent),
        "node" => Some(MapScope::Node),
        _ => None,
    }
}

fn def_from_record(name: &str, r: &MapDefRecord) -> Result<MapDef, String> {
    let ty = MAP_TYPES
        .iter()
        .find(|(_, n)| *n == r.ty)
        .map(|(t, _)| *t)
        .ok_or_else(|| format!("map `{name}` has unknown type {:?}", r.ty))?;
    let pinning = match r.pinning.as_str() {
        "none" => Pinning::None,
        "by_name" => Pinning::ByName,
        other => return Err(format!("map `{name}` has unknown pinning {other:?}")),
    };
    Ok(MapDef {
        pinning,
        name: name.to_owned(),
        ty,
        key_size: r.key_size,
        value_size: r.value_size,
        max_entries: r.max_entries,
        flags: r.flags,
    })
}

// ---- map entry files -------------------------------------------------------------------

/// Encodes entries (already sorted) as a map entry file (layout in `spec/bundle.md`).
pub fn encode_map_file(key_size: u32, value_size: u32, entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let rec = (key_size + value_size) as usize;
    let mut out = Vec::with_capacity(MAP_HEADER_LEN + rec * entries.len());
    out.extend_from_slice(&MAP_FILE_MAGIC);
    out.extend_from_slice(&MAP_FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&key_size.to_le_bytes());
    out.extend_from_slice(&value_size.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (k, v) in entries {
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    out
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Decodes a map entry file: `(key size, value size, entries)`.
pub fn decode_map_file(bytes: &[u8]) -> Result<(u32, u32, Entries), String> {
    if bytes.len() < MAP_HEADER_LEN {
        return Err(format!(
            "{} bytes, shorter than the {MAP_HEADER_LEN}-byte header",
            bytes.len()
        ));
    }
    if bytes[..8] != MAP_FILE_MAGIC {
        return Err("does not start with the map file magic SLUICEMP".into());
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let (version, key_size, value_size, count) = (u32_at(8), u32_at(12), u32_at(16), u32_at(20));
    if version != MAP_FILE_VERSION {
        return Err(format!(
            "map file version {version}, expected {MAP_FILE_VERSION}"
        ));
    }
    let rec = key_size as usize + value_size as usize;
    let body = &bytes[MAP_HEADER_LEN..];
    if rec == 0 || body.len() != rec * count as usize {
        return Err(format!(
            "{count} records of {key_size}+{value_size} bytes do not fill {} bytes",
            body.len()
        ));
    }
    let entries = body
        .chunks_exact(rec)
        .map(|r| {
            (
                r[..key_size as usize].to_vec(),
                r[key_size as usize..].to_vec(),
            )
        })
        .collect();
    Ok((key_size, value_size, entries))
}

/// Sorts entries by key and checks sizes and uniqueness.
fn canonical_entries(
    map: &str,
    def: &MapDef,
    mut entries: Entries,
) -> Result<Entries, BundleError> {
    for (k, v) in &entries {
        if k.len() != def.key_size as usize || v.len() != def.value_size as usize {
            return Err(BundleError::Invalid(format!(
                "map `{map}`: entry of {}+{} bytes, the map takes {}+{}",
                k.len(),
                v.len(),
                def.key_size,
                def.value_size
            )));
        }
    }
    entries.sort();
    if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(BundleError::Invalid(format!(
            "map `{map}`: key {:02x?} appears twice",
            w[0].0
        )));
    }
    Ok(entries)
}

// ---- building --------------------------------------------------------------------------

/// Collects inputs, shared maps, artifacts and attachments into a canonical [`Bundle`].
#[derive(Debug, Default)]
pub struct BundleBuilder {
    generator: Option<String>,
    inputs: BTreeMap<String, Digest>,
    shared: BTreeMap<String, SharedMap>,
    artifacts: BTreeMap<Digest, Artifact>,
    attachments: BTreeMap<(EndpointRef, TcxHook), Attachment>,
    trace: Option<TraceInfo>,
}

impl BundleBuilder {
    pub fn new() -> BundleBuilder {
        BundleBuilder::default()
    }

    /// Overrides the generator string (tests; defaults to [`GENERATOR`]).
    pub fn generator(&mut self, g: &str) -> &mut Self {
        self.generator = Some(g.to_owned());
        self
    }

    /// Records an input by name and the sha256 of its bytes.
    pub fn input(&mut self, name: &str, bytes: &[u8]) -> Result<&mut Self, BundleError> {
        if self
            .inputs
            .insert(name.to_owned(), Digest::of(bytes))
            .is_some()
        {
            return Err(BundleError::Invalid(format!("input `{name}` given twice")));
        }
        Ok(self)
    }

    pub fn shared_map(&mut self, map: SharedMap) -> Result<&mut Self, BundleError> {
        let name = map.def.name.clone();
        match (map.scope, &map.pin) {
            (MapScope::Program, _) => {
                return Err(BundleError::Invalid(format!(
                    "map `{name}` is private to a program, not shared"
                )));
            }
            (MapScope::Persistent, None) => {
                return Err(BundleError::Invalid(format!(
                    "persistent map `{name}` needs a pin name"
                )));
            }
            (MapScope::Persistent, Some(_)) if !map.entries.is_empty() => {
                return Err(BundleError::Invalid(format!(
                    "persistent map `{name}` outlives generations and cannot carry entries"
                )));
            }
            (MapScope::Generation | MapScope::Node, Some(_)) => {
                return Err(BundleError::Invalid(format!(
                    "generation-scope map `{name}` is not pinned by name"
                )));
            }
            _ => {}
        }
        if let Some(pin) = &map.pin
            && !valid_pin(pin)
        {
            return Err(BundleError::Invalid(format!(
                "pin name {pin:?} of `{name}` must be one path component of [A-Za-z0-9_-]"
            )));
        }
        let entries = canonical_entries(&name, &map.def, map.entries)?;
        let map = SharedMap { entries, ..map };
        match self.shared.get(&name) {
            // Every artifact of a generation carries the same shared map: keep one.
            Some(old) if *old == map => {}
            Some(_) => {
                return Err(BundleError::Invalid(format!(
                    "shared map `{name}` is given twice with different definitions or entries"
                )));
            }
            None => {
                self.shared.insert(name, map);
            }
        }
        Ok(self)
    }

    /// Adds a generated program; returns its artifact id (the same id for an identical
    /// artifact added again, which is then stored once). Its generation-scope and
    /// persistent maps become shared maps (a persistent `sluice_x` is pinned as `x`).
    pub fn program(&mut self, artifact: ProgramArtifact) -> Result<Digest, BundleError> {
        let mut maps = Vec::with_capacity(artifact.maps.len());
        let mut names = BTreeSet::new();
        for m in artifact.maps {
            match m.scope {
                MapScope::Program => {}
                MapScope::Generation | MapScope::Node => {
                    let mut shared = SharedMap::generation(m.def, m.entries);
                    shared.scope = m.scope;
                    self.shared_map(shared)?;
                    continue;
                }
                MapScope::Persistent => {
                    let pin = m.name.strip_prefix("sluice_").unwrap_or(&m.name).to_owned();
                    let mut shared = SharedMap::persistent(m.def, &pin);
                    shared.entries = m.entries;
                    self.shared_map(shared)?;
                    continue;
                }
            }
            if self.shared.contains_key(&m.name) {
                return Err(BundleError::Invalid(format!(
                    "per-program map `{}` has the name of a shared map",
                    m.name
                )));
            }
            if !names.insert(m.name.clone()) {
                return Err(BundleError::Invalid(format!(
                    "map `{}` appears twice in one artifact",
                    m.name
                )));
            }
            let entries = canonical_entries(&m.name, &m.def, m.entries)?;
            maps.push(MapContents { entries, ..m });
        }
        maps.sort_by(|a, b| a.name.cmp(&b.name));
        let artifact = Artifact {
            program: artifact.name,
            hook: artifact.hook,
            elf: artifact.elf,
            maps,
        };
        let (id, _) = artifact_record(&artifact);
        self.artifacts.entry(id).or_insert(artifact);
        Ok(id)
    }

    /// Sets the trace info (rule table, endpoint addresses) the bundle carries.
    pub fn trace_info(&mut self, info: TraceInfo) -> &mut Self {
        self.trace = Some(info);
        self
    }

    /// Puts `artifact` on `hook` of an endpoint (one artifact per endpoint and hook).
    pub fn attach(&mut self, a: Attachment) -> Result<&mut Self, BundleError> {
        let Some(art) = self.artifacts.get(&a.artifact) else {
            return Err(BundleError::Invalid(format!(
                "attachment of {} {} names unknown artifact {}",
                a.endpoint,
                a.hook.as_str(),
                a.artifact
            )));
        };
        if art.hook != a.hook {
            return Err(BundleError::Invalid(format!(
                "{} {}: artifact {} is built for {}",
                a.endpoint,
                a.hook.as_str(),
                a.artifact,
                art.hook.as_str()
            )));
        }
        if a.interface.is_none() && a.netns.is_none() {
            return Err(BundleError::Invalid(format!(
                "endpoint {} has neither an interface nor a netns to attach to",
                a.endpoint
            )));
        }
        let key = (a.endpoint.clone(), a.hook);
        if self.attachments.insert(key, a.clone()).is_some() {
            return Err(BundleError::Invalid(format!(
                "endpoint {} has two programs on {}",
                a.endpoint,
                a.hook.as_str()
            )));
        }
        Ok(self)
    }

    pub fn finish(self) -> Bundle {
        Bundle {
            generator: self.generator.unwrap_or_else(|| GENERATOR.to_owned()),
            inputs: self
                .inputs
                .into_iter()
                .map(|(name, sha256)| Input { name, sha256 })
                .collect(),
            shared_maps: self.shared.into_values().collect(),
            artifacts: self.artifacts,
            attachments: self.attachments.into_values().collect(),
            trace: self.trace,
        }
    }
}

/// bpffs refuses names with dots, so pin names are `[A-Za-z0-9_-]+`.
fn valid_pin(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

fn object_path(d: &Digest) -> String {
    format!("programs/{d}.o")
}

fn map_path(d: &Digest) -> String {
    format!("maps/{d}.map")
}

fn trace_path(d: &Digest) -> String {
    format!("trace/{d}.json")
}

/// The file an entry list is stored in, if it has any entries: (reference, bytes).
fn entries_file(def: &MapDef, entries: &[(Vec<u8>, Vec<u8>)]) -> Option<(FileRef, Vec<u8>)> {
    if entries.is_empty() {
        return None;
    }
    let bytes = encode_map_file(def.key_size, def.value_size, entries);
    let sha256 = Digest::of(&bytes);
    Some((
        FileRef {
            path: map_path(&sha256),
            sha256,
        },
        bytes,
    ))
}

/// Bundle-relative paths and their bytes.
type Files = Vec<(String, Vec<u8>)>;

/// An artifact's manifest record, its id, and the files it needs.
fn artifact_record(a: &Artifact) -> (Digest, (ArtifactRecord, Files)) {
    let mut files = Vec::new();
    let obj_sha = Digest::of(&a.elf);
    files.push((object_path(&obj_sha), a.elf.clone()));
    let maps: Vec<MapRecord> = a
        .maps
        .iter()
        .map(|m| {
            let entries = entries_file(&m.def, &m.entries).map(|(r, bytes)| {
                files.push((r.path.clone(), bytes));
                r
            });
            MapRecord {
                name: m.name.clone(),
                def: def_record(&m.def),
                entries,
            }
        })
        .collect();
    let id = artifact_id(&obj_sha, &a.program, a.hook, &maps);
    let record = ArtifactRecord {
        id,
        object: FileRef {
            path: object_path(&obj_sha),
            sha256: obj_sha,
        },
        program: a.program.clone(),
        hook: a.hook,
        maps,
    };
    (id, (record, files))
}

impl Bundle {
    /// The manifest and every file it references, in a canonical order (files deduplicated).
    fn render(&self) -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
        let mut files = BTreeMap::new();
        let shared_maps = self
            .shared_maps
            .iter()
            .map(|m| SharedMapRecord {
                name: m.def.name.clone(),
                def: def_record(&m.def),
                scope: scope_name(m.scope).to_owned(),
                pin: m.pin.clone(),
                entries: entries_file(&m.def, &m.entries).map(|(r, bytes)| {
                    files.insert(r.path.clone(), bytes);
                    r
                }),
            })
            .collect();
        let artifacts = self
            .artifacts
            .values()
            .map(|a| {
                let (_, (record, fs)) = artifact_record(a);
                files.extend(fs);
                record
            })
            .collect();
        let trace = self.trace.as_ref().map(|t| {
            let bytes = t.to_bytes();
            let sha256 = Digest::of(&bytes);
            let r = FileRef {
                path: trace_path(&sha256),
                sha256,
            };
            files.insert(r.path.clone(), bytes);
            r
        });
        let manifest = Manifest {
            format: FORMAT_VERSION,
            generator: self.generator.clone(),
            inputs: self.inputs.clone(),
            shared_maps,
            artifacts,
            attachments: self.attachments.clone(),
            trace,
        };
        let mut json = serde_json::to_vec_pretty(&manifest).expect("plain data serializes");
        json.push(b'\n');
        (json, files)
    }

    /// The manifest's bytes as [`Bundle::write`] writes them.
    pub fn manifest_bytes(&self) -> Vec<u8> {
        self.render().0
    }

    /// The bundle's identity: the sha256 of its manifest (which pins every file's sha256).
    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest_bytes())
    }

    /// Writes the bundle into `dir`, which must not exist or be empty.
    pub fn write(&self, dir: &Path) -> Result<(), BundleError> {
        match std::fs::read_dir(dir) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(BundleError::NotEmpty {
                        path: dir.to_owned(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(BundleError::Io {
                    path: dir.to_owned(),
                    source,
                });
            }
        }
        let (manifest, files) = self.render();
        for sub in ["programs", "maps"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        if self.trace.is_some() {
            let d = dir.join("trace");
            std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        for (rel, bytes) in &files {
            let p = dir.join(rel);
            std::fs::write(&p, bytes).map_err(io_err(&p))?;
        }
        // Last, so that a half-written directory has no manifest and is not a bundle.
        let p = dir.join("manifest.json");
        std::fs::write(&p, manifest).map_err(io_err(&p))?;
        Ok(())
    }

    /// Reads and verifies a bundle: every file against its sha256, every artifact id
    /// against its contents, every map file against its definition.
    pub fn read(dir: &Path) -> Result<Bundle, BundleError> {
        let mpath = dir.join("manifest.json");
        let bytes = std::fs::read(&mpath).map_err(io_err(&mpath))?;
        // Check the format before the schema, so an old loader says what is wrong.
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        let v: Version =
            serde_json::from_slice(&bytes).map_err(|source| BundleError::Manifest {
                path: mpath.clone(),
                source,
            })?;
        if v.format != FORMAT_VERSION {
            return Err(BundleError::UnsupportedFormat {
                path: mpath,
                found: v.format,
                supported: FORMAT_VERSION,
            });
        }
        let m: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| BundleError::Manifest {
                path: mpath.clone(),
                source,
            })?;
        let corrupt = |reason: String| BundleError::Corrupt {
            path: mpath.clone(),
            reason,
        };

        let load = |r: &FileRef, expect_path: String| -> Result<Vec<u8>, BundleError> {
            // Paths are derived from digests, so a manifest cannot point outside the bundle.
            if r.path != expect_path {
                return Err(BundleError::Corrupt {
                    path: mpath.clone(),
                    reason: format!("file reference {:?} should be {expect_path:?}", r.path),
                });
            }
            let p = dir.join(&r.path);
            let data = std::fs::read(&p).map_err(io_err(&p))?;
            let actual = Digest::of(&data);
            if actual != r.sha256 {
                return Err(BundleError::Tampered {
                    path: p,
                    expected: r.sha256,
                    actual,
                });
            }
            Ok(data)
        };
        let load_entries = |r: &Option<FileRef>, def: &MapDef| -> Result<Entries, BundleError> {
            let Some(r) = r else { return Ok(Vec::new()) };
            let data = load(r, map_path(&r.sha256))?;
            let p = dir.join(&r.path);
            let (k, v, entries) =
                decode_map_file(&data).map_err(|reason| BundleError::Corrupt {
                    path: p.clone(),
                    reason,
                })?;
            if (k, v) != (def.key_size, def.value_size) {
                return Err(BundleError::Corrupt {
                    path: p,
                    reason: format!(
                        "records are {k}+{v} bytes but map `{}` takes {}+{}",
                        def.name, def.key_size, def.value_size
                    ),
                });
            }
            Ok(entries)
        };

        let mut shared_maps = Vec::new();
        for r in &m.shared_maps {
            let def = def_from_record(&r.name, &r.def).map_err(corrupt)?;
            let scope = scope_from_name(&r.scope).ok_or_else(|| {
                corrupt(format!(
                    "shared map `{}` has unknown scope {:?}",
                    r.name, r.scope
                ))
            })?;
            let entries = load_entries(&r.entries, &def)?;
            shared_maps.push(SharedMap {
                def,
                scope,
                pin: r.pin.clone(),
                entries,
            });
        }
        let mut artifacts = BTreeMap::new();
        for r in &m.artifacts {
            let computed = artifact_id(&r.object.sha256, &r.program, r.hook, &r.maps);
            if computed != r.id {
                return Err(corrupt(format!(
                    "artifact {} does not match its contents (they hash to {computed})",
                    r.id
                )));
            }
            let elf = load(&r.object, object_path(&r.object.sha256))?;
            let mut maps = Vec::new();
            for mr in &r.maps {
                let def = def_from_record(&mr.name, &mr.def).map_err(corrupt)?;
                let entries = load_entries(&mr.entries, &def)?;
                maps.push(MapContents {
                    name: mr.name.clone(),
                    def,
                    scope: MapScope::Program,
                    entries,
                });
            }
            artifacts.insert(
                r.id,
                Artifact {
                    program: r.program.clone(),
                    hook: r.hook,
                    elf,
                    maps,
                },
            );
        }
        for a in &m.attachments {
            if artifacts
                .get(&a.artifact)
                .is_none_or(|art: &Artifact| art.hook != a.hook)
            {
                return Err(corrupt(format!(
                    "attachment of {} {} names unknown artifact {}",
                    a.endpoint,
                    a.hook.as_str(),
                    a.artifact
                )));
            }
        }
        let trace = match &m.trace {
            None => None,
            Some(r) => {
                let bytes = load(r, trace_path(&r.sha256))?;
                let info =
                    TraceInfo::from_bytes(&bytes).map_err(|reason| BundleError::Corrupt {
                        path: dir.join(&r.path),
                        reason,
                    })?;
                Some(info)
            }
        };
        let bundle = Bundle {
            generator: m.generator,
            inputs: m.inputs,
            shared_maps,
            artifacts,
            attachments: m.attachments,
            trace,
        };
        // A hand-edited manifest that still hashes right but is not canonical (unsorted,
        // reformatted) would give a different bundle digest than its content: refuse it.
        if bundle.manifest_bytes() != bytes {
            return Err(corrupt(
                "manifest is not in canonical form (edited by hand?)".into(),
            ));
        }
        Ok(bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Object bytes: the bundle hashes objects and never parses them (the loader does).
    fn elf(ret: i32) -> Vec<u8> {
        format!("\x7fELF: a program returning {ret}").into_bytes()
    }

    fn policy(elf: Vec<u8>, ports: &[u32]) -> ProgramArtifact {
        ProgramArtifact {
            name: "policy".into(),
            hook: TcxHook::Egress,
            elf,
            maps: vec![MapContents {
                name: "deny".into(),
                def: MapDef::new("deny", MapType::Hash, 4, 4, 16),
                scope: MapScope::Program,
                // Deliberately unsorted: the bundle sorts.
                entries: ports
                    .iter()
                    .rev()
                    .map(|p| (p.to_le_bytes().to_vec(), 1u32.to_le_bytes().to_vec()))
                    .collect(),
            }],
        }
    }

    fn ep(name: &str) -> EndpointRef {
        EndpointRef {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn sample() -> Bundle {
        let mut b = BundleBuilder::new();
        b.input("policy.sluice", b"allow all").unwrap();
        b.input("inventory.yaml", b"endpoints: []").unwrap();
        b.shared_map(SharedMap::persistent(
            MapDef::new("sluice_ct", MapType::LruHash, 16, 8, 1024),
            "ct",
        ))
        .unwrap();
        b.shared_map(SharedMap::generation(
            MapDef::new("sluice_ipcache", MapType::LpmTrie, 8, 4, 64),
            vec![(vec![32, 0, 0, 0, 10, 0, 0, 1], vec![7, 0, 0, 0])],
        ))
        .unwrap();
        let a = b.program(policy(elf(0), &[80, 81])).unwrap();
        let same = b.program(policy(elf(0), &[81, 80])).unwrap();
        let other_maps = b.program(policy(elf(0), &[22])).unwrap();
        assert_eq!(a, same, "identical artifacts share an id");
        assert_ne!(a, other_maps, "map contents are part of the identity");
        let mut from = policy(elf(0), &[]);
        from.hook = TcxHook::Ingress;
        let open = b.program(from).unwrap();
        for (name, id) in [("x", a), ("y", same), ("z", other_maps)] {
            for (hook, id) in [(TcxHook::Egress, id), (TcxHook::Ingress, open)] {
                b.attach(Attachment {
                    endpoint: ep(name),
                    interface: Some(format!("veth{name}")),
                    netns: None,
                    hook,
                    artifact: id,
                })
                .unwrap();
            }
        }
        b.finish()
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "sluice-bundle-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        for sub in ["", "programs", "maps"] {
            for e in std::fs::read_dir(dir.join(sub)).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_file() {
                    let rel = Path::new(sub).join(e.file_name());
                    out.insert(
                        rel.to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    );
                }
            }
        }
        out
    }

    #[test]
    fn identical_inputs_give_identical_bytes_and_dedup() {
        let (d1, d2) = (tmpdir("a"), tmpdir("b"));
        sample().write(&d1).unwrap();
        sample().write(&d2).unwrap();
        let (f1, f2) = (files(&d1), files(&d2));
        assert_eq!(f1, f2, "every file, every byte");
        // One object (three artifacts share it), two policy-map files, one ipcache file.
        let objects = f1.keys().filter(|k| k.starts_with("programs/")).count();
        let maps = f1.keys().filter(|k| k.starts_with("maps/")).count();
        assert_eq!((objects, maps), (1, 3), "{:?}", f1.keys());
        let back = Bundle::read(&d1).unwrap();
        assert_eq!(back, sample());
        assert_eq!(
            back.artifacts.len(),
            3,
            "to_ep x2 (by map contents), from_ep x1"
        );
        assert_eq!(back.digest(), sample().digest());
        let text = String::from_utf8(f1["manifest.json"].clone()).unwrap();
        assert!(text.contains("\"scope\": \"persistent\""), "{text}");
        assert!(!text.contains("time"), "no timestamps: {text}");
        for d in [d1, d2] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn trace_info_is_a_hashed_file_and_optional() {
        use crate::trace_info::{EndpointEntry, RuleEntry, RuleTable, SourceLocation};
        let plain = sample();
        let text = String::from_utf8(plain.manifest_bytes()).unwrap();
        assert!(!text.contains("\"trace\""), "absent, not null: {text}");
        let mut traced = sample();
        traced.trace = Some(TraceInfo {
            format: crate::trace_info::TRACE_INFO_FORMAT,
            rule_recording: true,
            rules: RuleTable(vec![RuleEntry {
                id: 1,
                policy: "web".into(),
                name: None,
                index: 1,
                direction: "ingress".into(),
                action: "allow".into(),
                tier: "default".into(),
                location: Some(SourceLocation {
                    file: "web.sluice".into(),
                    line: 3,
                    column: 3,
                }),
                verdict: None,
            }]),
            endpoints: vec![EndpointEntry {
                namespace: "default".into(),
                name: "x".into(),
                ips: vec!["10.0.0.1".into()],
            }],
        });
        assert_ne!(traced.digest(), plain.digest(), "the manifest pins it");
        let d = tmpdir("trace");
        traced.write(&d).unwrap();
        assert_eq!(Bundle::read(&d).unwrap(), traced);
        let f = std::fs::read_dir(d.join("trace"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&f).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&f, &bytes).unwrap();
        let err = Bundle::read(&d).unwrap_err();
        assert!(matches!(err, BundleError::Tampered { .. }), "{err}");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn tampered_files_are_named() {
        let d = tmpdir("t");
        sample().write(&d).unwrap();
        let map = files(&d)
            .into_keys()
            .find(|k| k.starts_with("maps/"))
            .unwrap();
        let p = d.join(&map);
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let err = Bundle::read(&d).unwrap_err();
        assert!(matches!(err, BundleError::Tampered { .. }), "{err}");
        assert!(err.to_string().contains(&map), "{err}");

        // A reformatted manifest is refused even though no referenced file changed.
        let d2 = tmpdir("t2");
        sample().write(&d2).unwrap();
        let mp = d2.join("manifest.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&mp).unwrap()).unwrap();
        std::fs::write(&mp, serde_json::to_vec(&v).unwrap()).unwrap();
        let err = Bundle::read(&d2).unwrap_err();
        assert!(err.to_string().contains("canonical"), "{err}");
        // Writing over a bundle is refused.
        assert!(matches!(
            sample().write(&d2),
            Err(BundleError::NotEmpty { .. })
        ));
        for d in [d, d2] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn future_formats_and_bad_map_files_are_clear_errors() {
        let d = tmpdir("f");
        sample().write(&d).unwrap();
        let mp = d.join("manifest.json");
        let text = std::fs::read_to_string(&mp).unwrap();
        std::fs::write(&mp, text.replace("\"format\": 1", "\"format\": 9")).unwrap();
        let err = Bundle::read(&d).unwrap_err();
        assert!(
            matches!(err, BundleError::UnsupportedFormat { found: 9, .. }),
            "{err}"
        );
        std::fs::remove_dir_all(&d).unwrap();

        assert!(decode_map_file(b"short").is_err());
        let good = encode_map_file(4, 4, &[(vec![1; 4], vec![2; 4])]);
        assert_eq!(good.len(), MAP_HEADER_LEN + 8);
        assert_eq!(decode_map_file(&good).unwrap().2.len(), 1);
        assert!(decode_map_file(&good[..good.len() - 1]).is_err());
    }

    #[test]
    fn builder_rejects_inconsistent_contents() {
        let mut b = BundleBuilder::new();
        let mut bad = policy(elf(0), &[]);
        bad.maps[0].entries = vec![(vec![1, 2], vec![0; 4])];
        assert!(b.program(bad).is_err());
        let dup = policy(elf(0), &[80, 80]);
        assert!(b.program(dup).unwrap_err().to_string().contains("twice"));
        let ct = MapDef::new("sluice_ct", MapType::LruHash, 16, 8, 8);
        let mut filled = SharedMap::persistent(ct, "ct");
        filled.entries.push((vec![0; 16], vec![0; 8]));
        assert!(b.shared_map(filled).is_err());
        let id = b.program(policy(elf(0), &[1])).unwrap();
        let at = Attachment {
            endpoint: ep("a"),
            interface: Some("v".into()),
            netns: None,
            hook: TcxHook::Egress,
            artifact: id,
        };
        let wrong_hook = Attachment {
            hook: TcxHook::Ingress,
            ..at.clone()
        };
        let err = b.attach(wrong_hook).unwrap_err();
        assert!(err.to_string().contains("built for"), "{err}");
        b.attach(at.clone()).unwrap();
        assert!(b.attach(at.clone()).is_err(), "two programs on one hook");
        let nowhere = Attachment {
            endpoint: ep("b"),
            interface: None,
            ..at
        };
        assert!(b.attach(nowhere).is_err());
    }
}
