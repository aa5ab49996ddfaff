//! Running iproute2 (`ip`), alone or in `-batch` mode, with errors that carry the command.
//!
//! Building a topology is a few dozen netlink requests; `ip -batch` sends a namespace's worth
//! in one process, so a nine-pod cluster costs about a dozen short-lived `ip` processes.

use std::io::Write;
use std::process::{Child, Command, Stdio};

use super::TopologyError;

/// One `ip` invocation: optional `-n NETNS`, then either plain arguments or a batch script.
#[derive(Debug, Clone)]
pub(crate) struct Ip {
    netns: Option<String>,
    force: bool,
    script: Vec<String>,
}

impl Ip {
    /// A batch run in `netns` (None: the caller's namespace).
    pub(crate) fn batch(netns: Option<&str>) -> Self {
        Self {
            netns: netns.map(str::to_owned),
            force: false,
            script: Vec::new(),
        }
    }

    /// Keep going past failing lines (teardown wants every deletion attempted).
    pub(crate) fn force(mut self) -> Self {
        self.force = true;
        self
    }

    pub(crate) fn line(&mut self, line: impl Into<String>) -> &mut Self {
        self.script.push(line.into());
        self
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.script.is_empty()
    }

    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(ns) = &self.netns {
            args.push("-n".to_owned());
            args.push(ns.clone());
        }
        if self.force {
            args.push("-force".to_owned());
        }
        args.push("-batch".to_owned());
        args.push("-".to_owned());
        args
    }

    /// The command as a person would type it, with the script as a here-document.
    pub(crate) fn describe(&self) -> String {
        format!(
            "ip {} <<EOF\n{}\nEOF",
            self.args().join(" "),
            self.script.join("\n")
        )
    }

    /// Starts `ip` and feeds it the script; finish with [`Running::wait`].
    pub(crate) fn spawn(&self) -> Result<Running, TopologyError> {
        tracing::debug!(command = %self.describe(), "ip");
        let mut child = Command::new("ip")
            .args(self.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| TopologyError::Spawn {
                command: self.describe(),
                source,
            })?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut text = self.script.join("\n");
        text.push('\n');
        // A write error means ip exited early; its status and stderr say why.
        let _ = stdin.write_all(text.as_bytes());
        drop(stdin);
        Ok(Running {
            child,
            command: self.describe(),
        })
    }

    pub(crate) fn run(&self) -> Result<String, TopologyError> {
        self.spawn()?.wait()
    }
}

/// An `ip` process that was started and not yet waited for.
pub(crate) struct Running {
    child: Child,
    command: String,
}

impl Running {
    /// Waits and returns stdout, or the failure with ip's stderr.
    pub(crate) fn wait(self) -> Result<String, TopologyError> {
        let out = self
            .child
            .wait_with_output()
            .map_err(|source| TopologyError::Spawn {
                command: self.command.clone(),
                source,
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(TopologyError::Command {
                command: self.command,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }
}

/// Runs several batches at once (they touch different namespaces) and returns the first error.
pub(crate) fn run_all(batches: &[Ip]) -> Result<(), TopologyError> {
    let mut running = Vec::new();
    let mut first_err = None;
    for b in batches.iter().filter(|b| !b.is_empty()) {
        match b.spawn() {
            Ok(r) => running.push(r),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    for r in running {
        if let Err(e) = r.wait() {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Plain `ip ARGS...` (no batch), returning stdout.
pub(crate) fn ip(args: &[&str]) -> Result<String, TopologyError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| TopologyError::Spawn {
            command: command.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(TopologyError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_batch_names_the_command_and_carries_stderr() {
        let mut b = Ip::batch(Some("sluice-no-such-netns"));
        b.line("link show");
        let err = b.run().unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("ip -n sluice-no-such-netns -batch -"),
            "{text}"
        );
        assert!(text.contains("link show"), "{text}");
        match err {
            TopologyError::Command { stderr, .. } => {
                assert!(stderr.contains("sluice-no-such-netns"), "{stderr}")
            }
            other => panic!("expected a command error, got {other:?}"),
        }
    }

    #[test]
    fn a_failing_plain_command_names_it() {
        let err = ip(&["link", "show", "dev", "sluice-no-such-if"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("ip link show dev sluice-no-such-if"),
            "{err}"
        );
    }
}
