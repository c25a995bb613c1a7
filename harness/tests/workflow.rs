//! The CI workflow users copy is valid GitHub Actions YAML: checked with check-jsonschema
//! against the GitHub-workflow schema it vendors (offline), and a broken copy must fail.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn validator() -> PathBuf {
    std::env::var_os("SGPC_CHECK_JSONSCHEMA").map_or_else(|| PathBuf::from("check-jsonschema"), PathBuf::from)
}

fn validate(workflow: &Path) -> (bool, String) {
    let output = Command::new(validator())
        .args(["--builtin-schema", "vendor.github-workflows"])
        .arg(workflow)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}): `make setup` installs it", validator().display()));
    (output.status.success(), format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

fn workflow() -> PathBuf {
    support::repo_root().join(".github/workflows/conformance.yml")
}

#[test]
fn the_workflow_is_valid() {
    let (ok, output) = validate(&workflow());
    assert!(ok, "{output}");
}

#[test]
fn a_broken_workflow_fails_validation() {
    let text = std::fs::read_to_string(workflow()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // `runs-on` misspelt, and a step with neither `run` nor `uses`.
    for (what, broken) in [("runs-on", text.replacen("runs-on:", "runs_on:", 1)), ("step", text.replacen("      - uses: actions/checkout@v4\n", "      - name: nothing to do\n", 1))] {
        assert_ne!(broken, text, "the {what} edit applies");
        let path = dir.path().join(format!("broken-{what}.yml"));
        std::fs::write(&path, broken).unwrap();
        let (ok, output) = validate(&path);
        assert!(!ok, "the validator accepted a workflow with a broken {what}: {output}");
    }
}
