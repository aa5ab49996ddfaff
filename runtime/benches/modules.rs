//! Prints what running a policy module costs (not a timed test): cold compile + run, a run
//! with the compiled module cached, a run from a precompiled artifact (deserialized, no
//! Cranelift), and an output-cache hit; for the WAT example and the Rust SDK example, on the
//! example inventory and on a synthetic one of 2000 endpoints in 200 namespaces.
//!
//! `cargo bench -p sluice-runtime --bench modules` (builds the examples with
//! examples/wasm/build.sh first).

use sluice_runtime::{Input, Limits, Runtime};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn median(mut f: impl FnMut() -> Duration, n: usize) -> Duration {
    let mut v: Vec<Duration> = (0..n).map(|_| f()).collect();
    v.sort();
    v[n / 2]
}

fn fmt(d: Duration) -> String {
    if d >= Duration::from_millis(1) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    }
}

fn synthetic(namespaces: usize, per_ns: usize) -> Input {
    let nss: Vec<_> = (0..namespaces)
        .map(|i| {
            let tier = if i % 4 == 0 { "pci" } else { "std" };
            serde_json::json!({"name": format!("ns-{i}"), "labels": {"tier": tier}})
        })
        .collect();
    let eps: Vec<_> = (0..namespaces * per_ns)
        .map(|i| {
            serde_json::json!({
                "name": format!("pod-{i}"), "namespace": format!("ns-{}", i / per_ns),
                "labels": {"app": format!("app-{}", i % 7)},
                "ips": [format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255)],
            })
        })
        .collect();
    Input::new(
        serde_json::json!({"namespaces": nss, "endpoints": eps}),
        serde_json::json!({"egress_cidrs": ["203.0.113.0/24"]}),
    )
}

fn main() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wasm");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm-modules");
    let status = Command::new(examples.join("build.sh"))
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("examples/wasm/build.sh");
    assert!(status.success());

    let inventory = std::fs::read(examples.join("inventory.json")).unwrap();
    let small =
        Input::from_json(&inventory, Some(br#"{"egress_cidrs":["203.0.113.0/24"]}"#)).unwrap();
    let large = synthetic(200, 10);
    let modules = [
        (
            "default-deny.wat",
            wat::parse_file(examples.join("wat/default-deny.wat")).unwrap(),
        ),
        (
            "namespace-isolation",
            std::fs::read(out.join("namespace-isolation.wasm")).unwrap(),
        ),
    ];
    let limits = Limits::default();

    println!(
        "{:<20} {:>8} {:>11} {:>12} {:>12} {:>15} {:>12} {:>12}",
        "module", "size", "input", "cold", "cached run", "precompiled", "output hit", "fuel"
    );
    for (name, bytes) in &modules {
        for (label, input) in [("example", &small), ("2000 pods", &large)] {
            let cold = median(
                || {
                    let rt = Runtime::new();
                    let t = Instant::now();
                    let m = rt.compile(bytes, name).unwrap();
                    rt.run(&m, input, &limits).unwrap();
                    t.elapsed()
                },
                5,
            );
            let rt = Runtime::new();
            rt.compile(bytes, name).unwrap();
            let mut fuel = 0;
            let cached = median(
                || {
                    let t = Instant::now();
                    let m = rt.compile(bytes, name).unwrap();
                    fuel = rt.run(&m, input, &limits).unwrap().fuel_used;
                    t.elapsed()
                },
                21,
            );
            let pre = rt.precompile(bytes, name).unwrap();
            let precompiled = median(
                || {
                    let t = Instant::now();
                    let m = rt.load_precompiled(&pre).unwrap();
                    rt.run(&m, input, &limits).unwrap();
                    t.elapsed()
                },
                21,
            );
            rt.generate(bytes, name, input, &limits).unwrap();
            let hit = median(
                || {
                    let t = Instant::now();
                    rt.generate(bytes, name, input, &limits).unwrap();
                    t.elapsed()
                },
                21,
            );
            println!(
                "{:<20} {:>8} {:>11} {:>12} {:>12} {:>15} {:>12} {:>12}",
                name,
                format!("{}K", bytes.len() / 1024),
                label,
                fmt(cold),
                fmt(cached),
                fmt(precompiled),
                fmt(hit),
                fuel
            );
        }
    }
    println!(
        "\ncold = Module::new + instantiate + run; cached run = compiled-module cache hit + \
         instantiate + run;\nprecompiled = Module::deserialize of an Engine::precompile_module \
         artifact + run; output hit = (module, input) sha256 cache hit (hashes the module)."
    );
}
