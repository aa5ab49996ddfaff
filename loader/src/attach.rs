//! Attaching loaded tc programs to interfaces with tcx links, and swapping them in place.
//!
//! A tcx link is the kernel object that keeps a program on a hook; closing its last fd (and
//! having no pin) detaches it. [`TcxLink`] owns one link. Interface names and indexes are
//! per network namespace, and aya resolves them in the calling thread's namespace, so
//! attaching and querying run on a thread that entered the target namespace.
//!
//! [`TcxLink::replace`] is the swap primitive: one BPF_LINK_UPDATE with `BPF_F_REPLACE`, so
//! the hook goes from the old program to the new one with no packet in between, the link
//! keeps its id, and a failed update leaves the old program running (see `sys::bpf` for why
//! this does not go through aya's `attach_to_link`).

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, LinkError, LinkType, PinnedLink};
use aya::programs::tc::{SchedClassifier, TcAttachOptions, TcAttachType};
use aya::programs::{LinkOrder, ProgramError};

use crate::sys::{bpf as sysbpf, netns::Netns};

pub use sluice_bundle::TcxHook;

fn aya_attach_type(hook: TcxHook) -> TcAttachType {
    match hook {
        TcxHook::Ingress => TcAttachType::Ingress,
        TcxHook::Egress => TcAttachType::Egress,
    }
}

/// A hook: an interface (in a named network namespace, or the caller's) and its tcx hook.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcxTarget {
    /// Namespace under /run/netns; None means the calling thread's own.
    pub netns: Option<String>,
    pub iface: String,
    pub hook: TcxHook,
}

impl TcxTarget {
    pub fn new(netns: Option<&str>, iface: &str, hook: TcxHook) -> Self {
        Self {
            netns: netns.map(str::to_owned),
            iface: iface.to_owned(),
            hook,
        }
    }

    /// Runs `f` in the target's namespace (on a helper thread when it names one).
    fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, AttachError> {
        match &self.netns {
            None => Ok(f()),
            Some(name) => {
                let err = |source| AttachError::Netns {
                    netns: name.clone(),
                    source,
                };
                Netns::open(name).map_err(err)?.run(f).map_err(err)
            }
        }
    }
}

impl std::fmt::Display for TcxTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.netns {
            Some(ns) => write!(f, "{}:{} {}", ns, self.iface, self.hook.as_str()),
            None => write!(f, "{} {}", self.iface, self.hook.as_str()),
        }
    }
}

/// What went wrong attaching, swapping, pinning or querying.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("netns {netns}: {source}")]
    Netns {
        netns: String,
        #[source]
        source: io::Error,
    },
    #[error("attaching to {target}: {source}")]
    Attach {
        target: TcxTarget,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("link on {target}: {source}")]
    Link {
        target: TcxTarget,
        #[source]
        source: LinkError,
    },
    #[error("link {link_id} on {target}: {what}: {source}")]
    Update {
        link_id: u32,
        target: TcxTarget,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the new program is not loaded: {0}")]
    NotLoaded(#[source] Box<ProgramError>),
    #[error("querying tcx on {target}: {source}")]
    Query {
        target: TcxTarget,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("pinning link {link_id} at {path}: {source}")]
    Pin {
        link_id: u32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pinned link {path}: {source}")]
    PinnedLink {
        path: PathBuf,
        #[source]
        source: LinkError,
    },
    #[error("{path} is a {kind:?} link, not a tcx link")]
    NotTcx { path: PathBuf, kind: LinkType },
    #[error("unpinning {path}: {source}")]
    Unpin {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One tcx link: a program on a hook. Dropping it detaches the program unless it is pinned.
#[derive(Debug)]
pub struct TcxLink {
    target: TcxTarget,
    link_id: u32,
    link: FdLink,
    pinned: Option<PathBuf>,
}

/// Attaches a loaded program at the end of `target`'s tcx chain.
pub fn attach(prog: &mut SchedClassifier, target: &TcxTarget) -> Result<TcxLink, AttachError> {
    target.run_in(|| attach_here(prog, target))?
}

/// [`attach`] from the calling thread, which is already in `target`'s namespace (so that
/// attaching many hooks needs one visit to it, not a thread each).
pub fn attach_here(prog: &mut SchedClassifier, target: &TcxTarget) -> Result<TcxLink, AttachError> {
    let attach_err = |source| AttachError::Attach {
        target: target.clone(),
        source: Box::new(source),
    };
    let link = prog
        .attach_with_options(
            &target.iface,
            aya_attach_type(target.hook),
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        // The program would detach its links when dropped; the TcxLink owns this one.
        .and_then(|id| prog.take_link(id));
    let link = FdLink::try_from(link.map_err(attach_err)?).map_err(|source| AttachError::Link {
        target: target.clone(),
        source,
    })?;
    let link_id = link
        .info()
        .map_err(|source| AttachError::Link {
            target: target.clone(),
            source,
        })?
        .id();
    tracing::debug!(%target, link_id, "tcx attached");
    Ok(TcxLink {
        target: target.clone(),
        link_id,
        link,
        pinned: None,
    })
}

impl TcxLink {
    /// The kernel's link id (stable across [`TcxLink::replace`]).
    pub fn id(&self) -> u32 {
        self.link_id
    }

    pub fn target(&self) -> &TcxTarget {
        &self.target
    }

    /// Where the link is pinned, if it is.
    pub fn pin_path(&self) -> Option<&Path> {
        self.pinned.as_deref()
    }

    fn link_err(&self) -> impl FnOnce(LinkError) -> AttachError + '_ {
        |source| AttachError::Link {
            target: self.target.clone(),
            source,
        }
    }

    /// The id of the program the link runs now, asked from the kernel.
    pub fn program_id(&self) -> Result<u32, AttachError> {
        Ok(self.link.info().map_err(self.link_err())?.program_id())
    }

    /// Swaps in `new` atomically, provided the link still runs the program it ran when last
    /// looked at (compare-and-swap on the program id). Same link, same id.
    pub fn replace(&mut self, new: &SchedClassifier) -> Result<(), AttachError> {
        let current = self.program_id()?;
        self.replace_if(new, current)
    }

    /// Swaps in `new` only if the link runs program `expected_old` (EPERM otherwise); on any
    /// error the link and its program are unchanged.
    pub fn replace_if(
        &mut self,
        new: &SchedClassifier,
        expected_old: u32,
    ) -> Result<(), AttachError> {
        let update_err = |what, source| AttachError::Update {
            link_id: self.link_id,
            target: self.target.clone(),
            what,
            source,
        };
        let new_fd = new.fd().map_err(|e| AttachError::NotLoaded(Box::new(e)))?;
        let old_fd = sysbpf::prog_fd_by_id(expected_old)
            .map_err(|e| update_err("opening the expected old program", e))?;
        // Our own fd on the same link: aya keeps its fd private.
        let link_fd =
            sysbpf::link_fd_by_id(self.link_id).map_err(|e| update_err("opening the link", e))?;
        sysbpf::link_update(link_fd.as_fd(), new_fd.as_fd(), Some(old_fd.as_fd()))
            .map_err(|e| update_err("BPF_LINK_UPDATE", e))?;
        tracing::debug!(target = %self.target, link_id = self.link_id, expected_old, "tcx program replaced");
        Ok(())
    }

    /// Pins the link at `path` (on bpffs, parent directory existing): it then stays
    /// attached after this process exits, until the pin is removed.
    pub fn pin(&mut self, path: &Path) -> Result<(), AttachError> {
        // Not FdLink::pin: it consumes the link and drops (detaches) it on failure.
        let pin_err = |source| AttachError::Pin {
            link_id: self.link_id,
            path: path.to_owned(),
            source,
        };
        let fd = sysbpf::link_fd_by_id(self.link_id).map_err(pin_err)?;
        sysbpf::obj_pin(fd.as_fd(), path).map_err(pin_err)?;
        self.pinned = Some(path.to_owned());
        Ok(())
    }

    /// Opens a pinned tcx link (for example after an agent restart).
    pub fn from_pin(path: &Path, target: TcxTarget) -> Result<Self, AttachError> {
        let pinned = PinnedLink::from_pin(path).map_err(|source| AttachError::PinnedLink {
            path: path.to_owned(),
            source,
        })?;
        let link = FdLink::from(pinned);
        let info = link.info().map_err(|source| AttachError::PinnedLink {
            path: path.to_owned(),
            source,
        })?;
        match info.link_type() {
            Ok(LinkType::Tcx) => {}
            Ok(kind) => {
                return Err(AttachError::NotTcx {
                    path: path.to_owned(),
                    kind,
                });
            }
            Err(source) => {
                return Err(AttachError::PinnedLink {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        Ok(TcxLink {
            target,
            link_id: info.id(),
            link,
            pinned: Some(path.to_owned()),
        })
    }

    /// Removes the pin (if any) and detaches the program.
    pub fn detach(mut self) -> Result<(), AttachError> {
        if let Ok(fd) = sysbpf::link_fd_by_id(self.link_id) {
            // Now, not when the kernel's workqueue drops the last reference.
            let _ = sysbpf::link_detach(fd.as_fd());
        }
        if let Some(path) = self.pinned.take() {
            std::fs::remove_file(&path).map_err(|source| AttachError::Unpin { path, source })?;
        }
        tracing::debug!(target = %self.target, link_id = self.link_id, "tcx detached");
        Ok(()) // dropping the last fd detaches
    }

    /// Lets go of the handle but leaves the program attached through its pin.
    pub fn forget_pinned(self) -> Option<PathBuf> {
        self.pinned.clone()
    }
}

/// A tcx hook's state as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcxQuery {
    /// Bumped by the kernel on every attach, detach and replace.
    pub revision: u64,
    /// Attached programs in run order.
    pub program_ids: Vec<u32>,
}

/// Asks the kernel which programs run on `target`.
pub fn query_tcx(target: &TcxTarget) -> Result<TcxQuery, AttachError> {
    let (revision, progs) = target
        .run_in(|| SchedClassifier::query_tcx(&target.iface, aya_attach_type(target.hook)))?
        .map_err(|source| AttachError::Query {
            target: target.clone(),
            source: Box::new(source),
        })?;
    Ok(TcxQuery {
        revision,
        program_ids: progs.iter().map(|p| p.id()).collect(),
    })
}
