//! Every Nexmark query under examples/nexmark plans (what `kappactl validate` checks), so an
//! example broken by a change of the planner fails CI.

use std::path::PathBuf;

use kappa_job::{Overrides, plan_job};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/nexmark")
}

#[test]
fn every_nexmark_example_plans() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples())
        .expect("examples/nexmark")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the examples: {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(file).expect("example");
        match plan_job(&name, &text, &Overrides::default()) {
            Ok(plan) => {
                assert_eq!(plan.sinks.len(), 1, "{name}: one sink");
                assert_eq!(plan.sinks[0].name, "out", "{name}: the sink is `out`");
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
