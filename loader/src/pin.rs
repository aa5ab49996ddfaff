//! Pins under `/sys/fs/bpf/sluice/<scope>/`: what keeps links and maps alive across loader
//! restarts, and what `sluice unload` removes.
//!
//! A pinned link keeps its program attached after the process that made it exits; a pinned
//! map (conntrack, NAT) keeps its entries across policy generations. Removing the pin files
//! is how they go away again. bpffs is mounted at /sys/fs/bpf when it is not already.

use std::io;
use std::path::{Path, PathBuf};

use aya::maps::Map;

use crate::attach::{AttachError, TcxLink};
use crate::sys::fs;

/// Where bpffs is expected.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Every sluice pin lives below this directory.
pub const SLUICE_ROOT: &str = "/sys/fs/bpf/sluice";

/// What went wrong with bpffs or a pin.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("bpffs at {path}: {source}")]
    Bpffs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not on a bpffs mount")]
    NotBpffs { path: PathBuf },
    #[error("invalid pin name {0:?} (one path component of [A-Za-z0-9_.-])")]
    InvalidName(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pinning map at {path}: {source}")]
    Map {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error(transparent)]
    Link(#[from] AttachError),
}

/// Makes sure a bpffs is mounted at /sys/fs/bpf, mounting one if needed.
pub fn ensure_bpffs() -> Result<(), PinError> {
    let path = Path::new(BPFFS);
    let err = |source| PinError::Bpffs {
        path: path.to_owned(),
        source,
    };
    if fs::is_bpffs(path).map_err(err)? {
        return Ok(());
    }
    tracing::info!("mounting bpffs at {BPFFS}");
    fs::mount_bpffs(path).map_err(err)?;
    if fs::is_bpffs(path).map_err(err)? {
        Ok(())
    } else {
        Err(PinError::NotBpffs {
            path: path.to_owned(),
        })
    }
}

fn check_name(name: &str) -> Result<(), PinError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PinError::InvalidName(name.to_owned()))
    }
}

/// One scope's pin directory: `/sys/fs/bpf/sluice/<scope>/{links,maps}/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinDir {
    root: PathBuf,
}

impl PinDir {
    /// `/sys/fs/bpf/sluice/<scope>`, with bpffs mounted and the directories created.
    pub fn open(scope: &str) -> Result<Self, PinError> {
        check_name(scope)?;
        ensure_bpffs()?;
        Self::at(Path::new(SLUICE_ROOT).join(scope))
    }

    /// A pin directory anywhere on bpffs (created if missing).
    pub fn at(root: PathBuf) -> Result<Self, PinError> {
        for sub in ["links", "maps"] {
            let dir = root.join(sub);
            // Another scope's remove_all may take away an empty SLUICE_ROOT between our
            // creating it and creating our scope in it: try again.
            let mut tries = 0;
            while let Err(source) = std::fs::create_dir_all(&dir) {
                tries += 1;
                if source.kind() != io::ErrorKind::NotFound || tries == 3 {
                    return Err(PinError::Io {
                        path: dir.clone(),
                        source,
                    });
                }
            }
        }
        if !fs::is_bpffs(&root).map_err(|source| PinError::Io {
            path: root.clone(),
            source,
        })? {
            return Err(PinError::NotBpffs { path: root });
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the link pin `name`.
    pub fn link_path(&self, name: &str) -> Result<PathBuf, PinError> {
        check_name(name)?;
        Ok(self.root.join("links").join(name))
    }

    /// Path of the map pin `name`.
    pub fn map_path(&self, name: &str) -> Result<PathBuf, PinError> {
        check_name(name)?;
        Ok(self.root.join("maps").join(name))
    }

    /// Pins `link` as `links/<name>`.
    pub fn pin_link(&self, link: &mut TcxLink, name: &str) -> Result<PathBuf, PinError> {
        let path = self.link_path(name)?;
        link.pin(&path)?;
        Ok(path)
    }

    /// Pins a map of a loaded object as `maps/<name>`.
    pub fn pin_map(&self, map: &Map, name: &str) -> Result<PathBuf, PinError> {
        let path = self.map_path(name)?;
        map.pin(&path).map_err(|source| PinError::Map {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Pins a map through `pin` (e.g. a typed map's consuming `pin`) as `maps/<name>`.
    pub fn pin_map_with(
        &self,
        name: &str,
        pin: impl FnOnce(&Path) -> Result<(), aya::pin::PinError>,
    ) -> Result<PathBuf, PinError> {
        let path = self.map_path(name)?;
        pin(&path).map_err(|source| PinError::Map {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Every pin file in this scope, sorted.
    pub fn list(&self) -> Result<Vec<PathBuf>, PinError> {
        let mut out = Vec::new();
        for sub in ["links", "maps"] {
            let dir = self.root.join(sub);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(PinError::Io { path: dir, source }),
            };
            for e in entries {
                let e = e.map_err(|source| PinError::Io {
                    path: dir.clone(),
                    source,
                })?;
                out.push(e.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes every pin and the scope's directories. Links whose only holder was their pin
    /// detach; maps whose only holder was their pin are freed. Returns what was removed.
    pub fn remove_all(self) -> Result<Vec<PathBuf>, PinError> {
        let pins = self.list()?;
        for p in &pins {
            std::fs::remove_file(p).map_err(|source| PinError::Io {
                path: p.clone(),
                source,
            })?;
        }
        for dir in [
            self.root.join("links"),
            self.root.join("maps"),
            self.root.clone(),
        ] {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(PinError::Io { path: dir, source }),
            }
        }
        // A scope of SLUICE_ROOT was the last one: leave no empty SLUICE_ROOT behind (the
        // generation loader's own root is SLUICE_ROOT itself, never empty while loaded).
        if self.root.parent() == Some(Path::new(SLUICE_ROOT)) {
            let _ = std::fs::remove_dir(SLUICE_ROOT); // fails while other scopes live there
        }
        tracing::info!(root = %self.root.display(), removed = pins.len(), "pins removed");
        Ok(pins)
    }
}
