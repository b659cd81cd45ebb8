//! The workspace's dependency rules (docs/architecture.md, "Rules"), read from
//! `cargo metadata` so that a new dependency that breaks one fails the tests:
//!
//! - no service depends on another service;
//! - the runtime depends on no service, not on the CLI, and not on the wire crate (it
//!   knows no protocol: a service hands in what the runtime must know);
//! - the wire crate (`inetsvc-proto`) depends on nothing of the workspace;
//! - the CLI shares wire facts, not server code: it depends on no service and not on
//!   the runtime.
//!
//! Every kind of dependency counts (normal, build and dev).

use std::process::Command;

use serde_json::Value;

const RUNTIME: &str = "inetsvc-runtime";
const PROTO: &str = "inetsvc-proto";
const CLI: &str = "inetsvc-cli";

/// The services: every member under `services/`, so that a new one is covered unnamed.
fn services(metadata: &Value) -> Vec<String> {
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|package| {
            package["manifest_path"]
                .as_str()
                .is_some_and(|path| path.contains("/services/"))
        })
        .map(|package| package["name"].as_str().expect("name").to_owned())
        .collect()
}

/// `(crate, its workspace dependencies)` for every member, from `cargo metadata`.
fn workspace_graph(metadata: &Value) -> Vec<(String, Vec<String>)> {
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|package| {
            let name = package["name"].as_str().expect("name").to_owned();
            let local = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                // Members are path dependencies; everything else comes from crates.io.
                .filter(|dep| dep.get("path").is_some())
                .map(|dep| dep["name"].as_str().expect("dependency name").to_owned())
                .collect();
            (name, local)
        })
        .collect()
}

/// Every broken rule, one line each.
fn violations(graph: &[(String, Vec<String>)], services: &[String]) -> Vec<String> {
    let is_service = |name: &str| services.iter().any(|service| service == name);
    let mut broken = Vec::new();
    for (name, deps) in graph {
        for dep in deps {
            let rule = if is_service(name) && is_service(dep) {
                Some("services never import each other")
            } else if name == RUNTIME && (is_service(dep) || dep == CLI || dep == PROTO) {
                Some("the runtime knows no protocol and never imports a service or the CLI")
            } else if name == PROTO {
                Some("the wire crate depends on nothing of the workspace")
            } else if name == CLI && (is_service(dep) || dep == RUNTIME) {
                Some("the CLI shares wire facts, not server code")
            } else {
                None
            };
            if let Some(rule) = rule {
                broken.push(format!("{name} depends on {dep}: {rule}"));
            }
        }
    }
    broken
}

fn metadata() -> Value {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("metadata is JSON")
}

#[test]
fn the_workspace_keeps_its_dependency_rules() {
    let metadata = metadata();
    let (graph, services) = (workspace_graph(&metadata), services(&metadata));
    assert_eq!(
        services,
        ["inetsvc-echo", "inetsvc-daytime", "inetsvc-time"]
    );
    let names: Vec<&str> = graph.iter().map(|(name, _)| name.as_str()).collect();
    for member in [
        RUNTIME,
        PROTO,
        CLI,
        "inetsvc-echo",
        "inetsvc-daytime",
        "inetsvc-time",
    ] {
        assert!(
            names.contains(&member),
            "{member} is a workspace member: {names:?}"
        );
    }
    let broken = violations(&graph, &services);
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn every_rule_catches_the_dependency_it_forbids() {
    let metadata = metadata();
    let (graph, services) = (workspace_graph(&metadata), services(&metadata));
    let with = |crate_name: &str, dep: &str| {
        let mut graph = graph.clone();
        let entry = graph
            .iter_mut()
            .find(|(name, _)| name == crate_name)
            .expect("member");
        entry.1.push(dep.to_owned());
        violations(&graph, &services)
    };
    for (crate_name, dep) in [
        (CLI, "inetsvc-echo"),
        (CLI, RUNTIME),
        ("inetsvc-time", "inetsvc-daytime"),
        (RUNTIME, "inetsvc-echo"),
        (RUNTIME, CLI),
        (RUNTIME, PROTO),
        (PROTO, "inetsvc-testkit"),
    ] {
        let broken = with(crate_name, dep);
        assert_eq!(
            broken,
            vec![broken[0].clone()],
            "{crate_name} → {dep} is caught once"
        );
        assert!(broken[0].starts_with(&format!("{crate_name} depends on {dep}: ")));
    }
    // Allowed edges stay allowed.
    assert!(with("inetsvc-echo", PROTO).is_empty());
    assert!(with(CLI, PROTO).is_empty());
}
