//! `sluice agent` and the commands that talk to it.
//!
//! The kernel test (root, bpffs) runs an agent for a cluster in a box: a policy put through
//! the API enforces on real connections; a bad policy comes back with its located diagnostic
//! while the running generation keeps enforcing; the agent is killed with SIGKILL and
//! restarted, and adopts the pinned generation (same programs, same links, nothing reloaded)
//! while an established connection keeps flowing; a delete goes through the same path. The
//! other tests need no kernel: the socket's mode, TCP refused without a token and guarded with
//! one, an oversized body, malformed requests, and the CLI's "agent is down" error.
//!
//! Every test has its own socket, state directories, pin root and namespaces (by prefix), and
//! a guard that kills its agent (by pid) and removes them, also when the test panics.

#[path = "support/leftovers.rs"]
mod leftovers;

use sluice_cli::topology::{ProbeOutcome, Proto, Servers, Topology, TopologySpec};
use sluice_loader::generation::{self, LoadOptions};
use sluice_loader::sys::netns::Netns;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_millis(750);

/// One agent process and its files; killed and removed on drop.
struct Agent {
    dir: PathBuf,
    socket: PathBuf,
    child: Option<Child>,
}

impl Agent {
    /// A scratch directory for an agent (socket, state, inventory), unique to this test.
    fn scratch(name: &str) -> Agent {
        let dir = std::env::temp_dir().join(format!("sluice-agent-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Agent {
            socket: dir.join("run/agent.sock"),
            dir,
            child: None,
        }
    }

    /// Starts `sluice agent` with these extra arguments; waits for its socket.
    fn start(&mut self, extra: &[String]) {
        assert!(self.child.is_none());
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("agent")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .args(extra)
            .arg("-v")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("agent.log")).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t = Instant::now();
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the agent exited ({st}):\n{}", self.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "no socket after 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// SIGKILL: no shutdown code runs.
    fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// `sluice ARGS --socket <ours>`.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "sluice {args:?} failed:\n{}\n{}\nagent log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let out = self.cli(&a);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "sluice {a:?}: not JSON ({e}):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// One raw HTTP/1.1 request on the socket; (status, body).
    fn http(&self, request: &[u8]) -> (u16, String) {
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).unwrap();
        http_exchange(&mut s, request)
    }
}

fn http_exchange<S: Read + Write>(s: &mut S, request: &[u8]) -> (u16, String) {
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn need_root() {
    if !Path::new("/sys/fs/bpf").exists() || !nix::unistd::geteuid().is_root() {
        panic!("this test needs root and bpffs (kernel tests are not skipped)");
    }
}

/// The box, its servers, the pins and the agent; everything removed on drop.
struct Rig {
    agent: Agent,
    topo: Option<Topology>,
    servers: Vec<Servers>,
    opts: LoadOptions,
    made: leftovers::Made,
}

impl Rig {
    fn new() -> Rig {
        let spec = TopologySpec::new()
            .pod("shop", "lb", Ipv4Addr::new(10, 224, 0, 1))
            .pod("shop", "web", Ipv4Addr::new(10, 224, 0, 2))
            .pod("shop", "other", Ipv4Addr::new(10, 224, 0, 3));
        let topo = Topology::build(&spec).expect("build topology");
        let agent = Agent::scratch(topo.prefix());
        let opts = LoadOptions {
            root: PathBuf::from(format!("/sys/fs/bpf/{}-sluice", topo.prefix())),
            state_dir: agent.dir.join("loader"),
            node_netns: Some(topo.node_netns().to_owned()),
        };
        let web = topo.pod("shop", "web").unwrap().netns.clone();
        let servers = vec![
            topo.serve(&web, &[(80, Proto::Tcp), (81, Proto::Tcp)])
                .expect("servers"),
        ];
        let mut inv = String::from("endpoints:\n");
        for p in topo.pods() {
            inv.push_str(&format!(
                "- name: {}\n  namespace: shop\n  labels: {{app: {}}}\n  ips: [{}]\n  interface: {}\n",
                p.name, p.name, p.ip, p.host_if
            ));
        }
        std::fs::write(agent.dir.join("inv.yaml"), inv).unwrap();
        let made = leftovers::Made {
            prefix: topo.prefix().to_owned(),
            dirs: vec![opts.root.clone()],
            ..Default::default()
        };
        Rig {
            agent,
            topo: Some(topo),
            servers,
            opts,
            made,
        }
    }

    fn agent_args(&self, inventory: bool) -> Vec<String> {
        let mut a = vec![
            "--netns".into(),
            self.topo().node_netns().into(),
            "--root".into(),
            self.opts.root.display().to_string(),
            "--run-dir".into(),
            self.opts.state_dir.display().to_string(),
            "--max-body".into(),
            "64KiB".into(),
        ];
        if inventory {
            a.push("--inventory".into());
            a.push(self.agent.dir.join("inv.yaml").display().to_string());
        }
        a
    }

    fn topo(&self) -> &Topology {
        self.topo.as_ref().expect("built")
    }

    fn probe(&self, from: &str, to: &str, port: u16) -> ProbeOutcome {
        let t = self.topo();
        let (from, to) = (t.pod("shop", from).unwrap(), t.pod("shop", to).unwrap());
        t.probe(&from.netns, to.ip, port, Proto::Tcp, TIMEOUT)
            .expect("probe")
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.agent.dir.join(name), text).unwrap();
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Stop the agent first so nothing swaps while the generation is unloaded.
        if let Some(mut c) = self.agent.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let unloaded = generation::unload(&self.opts);
        self.servers.clear();
        let torn = self.topo.take().map(Topology::teardown);
        if std::thread::panicking() {
            return;
        }
        unloaded.expect("unload");
        torn.expect("topology").expect("topology teardown");
        leftovers::assert_clean(&self.made);
    }
}

const WEB: &str = "policy \"web\" in namespace shop {\n  select app = web\n  ingress allow from pods { app = lb } ports 80/tcp\n}\n";
/// Line 3 names a port protocol that does not exist.
const BAD: &str = "policy \"bad\" in namespace shop {\n  select app = other\n  ingress allow from pods { app = lb } ports 80/tcpx\n}\n";

/// (link id, program id) of every hook, from `sluice status --output json`.
fn hooks(status: &serde_json::Value) -> Vec<(u64, u64)> {
    status["hooks"]
        .as_array()
        .expect("hooks")
        .iter()
        .map(|h| {
            assert_eq!(h["live"], true, "{h}");
            (
                h["link_id"].as_u64().unwrap(),
                h["program_id"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn agent_enforces_rejects_and_adopts_after_kill9() {
    need_root();
    let mut rig = Rig::new();
    let args = rig.agent_args(true);
    rig.agent.start(&args);

    // The socket: 0600, owned by root.
    let meta = std::fs::metadata(&rig.agent.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));

    assert_eq!(rig.probe("other", "web", 80), ProbeOutcome::Connected);
    rig.write("web.sluice", WEB);
    let out = rig.agent.cli_ok(&["policy", "apply", "web.sluice"]);
    assert!(out.starts_with("generation 1 live"), "{out}");
    assert_eq!(rig.probe("lb", "web", 80), ProbeOutcome::Connected);
    assert_eq!(rig.probe("other", "web", 80), ProbeOutcome::TimedOut);
    let before = rig.agent.json(&["status"]);
    assert_eq!(before["generation"], 1, "{before}");
    let hooks_before = hooks(&before);
    assert_eq!(hooks_before.len(), 6, "{before}");
    rig.made
        .links
        .extend(hooks_before.iter().map(|h| h.0 as u32));
    rig.made
        .programs
        .extend(hooks_before.iter().map(|h| h.1 as u32));

    // A bad policy: the located diagnostic comes back, nothing changes.
    rig.write("bad.sluice", BAD);
    let out = rig.agent.cli(&["policy", "apply", "bad.sluice"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("bad.sluice:3:"), "{stderr}");
    assert!(stderr.contains("tcpx"), "{stderr}");
    let v = rig.agent.json(&["policy", "apply", "bad.sluice"]);
    assert_eq!(v["kind"], "rejected", "{v}");
    let d = &v["diagnostics"][0];
    assert_eq!(d["severity"], "error", "{v}");
    assert_eq!(d["labels"][0]["file"], "bad.sluice", "{v}");
    assert_eq!(d["labels"][0]["line"], 3, "{v}");
    assert!(d["code"].as_str().unwrap().starts_with("sluice::"), "{v}");
    assert_eq!(d["source"]["text"], BAD, "{v}");
    let after_bad = rig.agent.json(&["status"]);
    assert_eq!(after_bad["generation"], 1, "{after_bad}");
    assert_eq!(hooks(&after_bad), hooks_before);
    assert_eq!(rig.probe("other", "web", 80), ProbeOutcome::TimedOut);
    let list = rig.agent.json(&["policy", "get"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    // An established connection, then kill -9 and a restart without --inventory.
    let web = rig.topo().pod("shop", "web").unwrap().ip;
    let lb = rig.topo().pod("shop", "lb").unwrap().netns.clone();
    let mut conn = Netns::open(&lb)
        .unwrap()
        .run(|| TcpStream::connect_timeout(&SocketAddr::from((web, 80)), TIMEOUT))
        .unwrap()
        .expect("lb connects to web:80");
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    let echo = |c: &mut TcpStream, msg: &[u8]| {
        c.write_all(msg).unwrap();
        let mut buf = vec![0; msg.len()];
        c.read_exact(&mut buf).expect("echo");
        assert_eq!(buf, msg);
    };
    echo(&mut conn, b"before");
    rig.agent.kill9();
    echo(&mut conn, b"agent dead");
    assert_eq!(rig.probe("other", "web", 80), ProbeOutcome::TimedOut);
    let args = rig.agent_args(false);
    rig.agent.start(&args);
    let after = rig.agent.json(&["status"]);
    assert_eq!(after["startup"], "adopted", "{after}");
    assert_eq!(after["generation"], 1, "{after}");
    assert_eq!(after["policies"], 1, "{after}");
    assert_eq!(
        hooks(&after),
        hooks_before,
        "same links and programs: nothing reloaded"
    );
    echo(&mut conn, b"after restart");
    assert_eq!(rig.probe("other", "web", 80), ProbeOutcome::TimedOut);
    let text = rig.agent.cli_ok(&["policy", "get", "web.sluice"]);
    assert_eq!(text, WEB);

    // Endpoints from the stored inventory.
    let eps = rig.agent.json(&["endpoint", "list"]);
    assert_eq!(eps.as_array().unwrap().len(), 3, "{eps}");
    let ep = rig.agent.json(&["endpoint", "get", "shop/web"]);
    assert_eq!(ep["ips"][0], web.to_string(), "{ep}");
    let out = rig.agent.cli(&["endpoint", "get", "shop/nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shop/nope"));

    // An oversized body is refused before anything is parsed; nothing changes.
    rig.write("huge.sluice", &format!("# {}\n", "x".repeat(70_000)));
    let v = rig.agent.json(&["policy", "apply", "huge.sluice"]);
    assert_eq!(v["kind"], "too-large", "{v}");

    // A delete takes the same path: generation 2, the rule is gone.
    let out = rig.agent.cli_ok(&["policy", "delete", "web.sluice"]);
    assert!(out.starts_with("generation 2 live"), "{out}");
    assert_eq!(rig.probe("other", "web", 80), ProbeOutcome::Connected);
    let gens = rig.agent.json(&["status"]);
    assert_eq!(gens["generation"], 2, "{gens}");
    let after_delete = hooks(&gens);
    rig.made
        .programs
        .extend(after_delete.iter().map(|h| h.1 as u32));
    echo(&mut conn, b"after delete");
    drop(conn);
}

#[test]
fn agent_down_is_a_clear_error() {
    let a = Agent::scratch("down");
    for args in [
        &["policy", "get"][..],
        &["policy", "delete", "x.sluice"],
        &["endpoint", "list"],
    ] {
        let out = a.cli(args);
        assert!(!out.status.success(), "{args:?}");
        // miette wraps long lines (`  | ` continues one); read the words.
        let stderr = String::from_utf8_lossy(&out.stderr)
            .split_whitespace()
            .filter(|w| *w != "|")
            .collect::<Vec<_>>()
            .join(" ");
        let want = format!(
            "agent not running at {}: start it with `sluice agent`",
            a.socket.display()
        );
        assert!(stderr.contains(&want), "{args:?}: {stderr}");
    }
    // `sluice status` without an agent reads the loader's state, as before, and says so.
    let out = a.cli(&[
        "status",
        "--state-dir",
        a.dir.join("none").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("agent not running at"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no generation loaded\n"
    );
}

#[test]
fn api_guards_socket_tcp_and_bodies() {
    need_root();
    // TCP without a token is refused at startup; nothing is served.
    let mut a = Agent::scratch("guards");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["agent", "--tcp", "127.0.0.1:0", "--socket"])
        .arg(&a.socket)
        .arg("--state-dir")
        .arg(a.dir.join("state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TCP needs a bearer token"),
        "{out:?}"
    );
    assert!(!a.socket.exists());

    // With a token: TCP requests without it (or with another) get 401.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let token = "0123456789abcdef-token";
    std::fs::write(a.dir.join("token"), format!("{token}\n")).unwrap();
    a.start(&[
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--token-file".into(),
        a.dir.join("token").display().to_string(),
        "--max-body".into(),
        "1KiB".into(),
        "--run-dir".into(),
        a.dir.join("loader").display().to_string(),
    ]);
    let meta = std::fs::metadata(&a.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0);
    let tcp = |auth: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        http_exchange(
            &mut s,
            format!("GET /v1/status HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    let (st, body) = tcp("");
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("\"kind\":\"unauthorized\""), "{body}");
    assert_eq!(tcp("Authorization: Bearer wrong-token-0123456\r\n").0, 401);
    let (st, body) = tcp(&format!("Authorization: Bearer {token}\r\n"));
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("\"startup\":\"none\""), "{body}");

    // Bodies over the limit: by Content-Length, and chunked (no length given).
    let big = "x".repeat(2000);
    let (st, body) = a.http(
        format!(
            "PUT /v1/policies/a.sluice HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
            big.len()
        )
        .as_bytes(),
    );
    assert_eq!(st, 413, "{body}");
    assert!(body.contains("\"kind\":\"too-large\""), "{body}");
    let (st, body) = a.http(
        format!(
            "PUT /v1/policies/a.sluice HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        )
        .as_bytes(),
    );
    assert_eq!(st, 413, "{body}");
    // Malformed requests: a bad name, a body that is not UTF-8, an unknown route; and no
    // inventory to compile for. Nothing is stored.
    let put = |name: &str, body: &[u8]| {
        let mut req = format!(
            "PUT /v1/policies/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        a.http(&req)
    };
    let (st, body) = put("no-extension", b"x");
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("bad policy name"), "{body}");
    let (st, body) = put("a.sluice", b"\xff\xfe");
    assert_eq!(st, 400, "{body}");
    let (st, body) = put("a.sluice", b"policy \"a\" {}\n");
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("\"kind\":\"no-inventory\""), "{body}");
    let (st, body) = a.http(b"GET /v1/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(st, 404, "{body}");
    let (st, body) = a.http(b"GET /v1/policies HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!((st, body.as_str()), (200, "[]"));

    // SIGTERM: a clean stop removes the socket.
    let c = a.child.take().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", a.log());
    assert!(!a.socket.exists());
}
