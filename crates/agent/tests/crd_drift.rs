//! The CRDs under `deploy/crds/` are generated from the Rust types; this test
//! fails when someone changes one without regenerating the other.

use std::path::PathBuf;

#[test]
fn committed_crds_match_the_rust_types() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds/crds.yaml");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let generated = compass_runtime_agent::crd::to_yaml().expect("CRDs render as YAML");
    assert!(
        committed == generated,
        "{} is out of date with the Rust types; regenerate it with\n  cargo run -p compass-runtime-agent -- crd > deploy/crds/crds.yaml",
        path.display()
    );
}
