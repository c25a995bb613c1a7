//! Bad scenario input is rejected with the file, line and field named.

use std::path::Path;

use sgpc::scenario::{Catalogue, Scenario};

fn load(text: &str) -> Result<Scenario, sgpc::input::InputError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("case.yaml");
    std::fs::write(&path, text).unwrap();
    Scenario::load(&path)
}

const GOOD: &str = "name: t\nsummary: s\nimage: kep-blog\npod:\n  securityContext: {runAsUser: 1000, supplementalGroups: [4000]}\nexpect:\n  merge: {uid: 1000, gid: 1000, groups: [1000, 4000]}\n  strict: {uid: 1000, gid: 1000, groups: [1000, 4000]}\n";

#[test]
fn good_scenario_loads() {
    let s = load(GOOD).unwrap();
    assert_eq!(s.pod.run_as_user, Some(1000));
}

#[test]
fn negative_id_names_line_and_field() {
    let err = load(&GOOD.replace("runAsUser: 1000", "runAsUser: -5")).unwrap_err();
    assert_eq!(err.line, Some(5));
    assert_eq!(err.field.as_deref(), Some("pod.securityContext.runAsUser"));
    assert!(err.to_string().contains("-5 is not an id"), "{err}");
}

#[test]
fn gid_above_u32_is_rejected() {
    let err = load(&GOOD.replace("[4000]}", "[4294967296]}")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("pod.securityContext.supplementalGroups[0]"));
}

#[test]
fn unknown_field_is_rejected() {
    let err = load(&GOOD.replace("runAsUser", "runAsUsr")).unwrap_err();
    assert!(err.to_string().contains("runAsUsr"), "{err}");
    assert!(err.to_string().contains("case.yaml"), "{err}");
}

#[test]
fn expectation_without_primary_gid_is_rejected() {
    let err = load(&GOOD.replace("merge: {uid: 1000, gid: 1000, groups: [1000, 4000]}", "merge: {uid: 1000, gid: 1000, groups: [4000]}")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("expect.merge.groups"));
}

#[test]
fn scenario_naming_unknown_image_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("case.yaml"), GOOD.replace("kep-blog", "no-such-image")).unwrap();
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images");
    let err = Catalogue::load(dir.path(), &images).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("image"));
    assert!(err.to_string().contains("no-such-image"), "{err}");
}

#[test]
fn duplicate_scenario_names_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), GOOD).unwrap();
    std::fs::write(dir.path().join("b.yaml"), GOOD).unwrap();
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images");
    let err = Catalogue::load(dir.path(), &images).unwrap_err();
    assert!(err.to_string().contains("already defined"), "{err}");
}

#[test]
fn policy_in_lower_case_is_rejected_as_the_api_server_would() {
    let text = GOOD.replace("runAsUser: 1000,", "supplementalGroupsPolicy: strict, runAsUser: 1000,");
    let err = load(&text).unwrap_err();
    assert!(err.to_string().contains("strict"), "{err}");
    assert!(err.to_string().contains("Strict"), "the message names the expected spelling: {err}");
    assert_eq!(err.line, Some(5), "{err}");
}

#[test]
fn pinned_policy_limits_the_cases() {
    let text = GOOD.replace("runAsUser: 1000,", "supplementalGroupsPolicy: Strict, runAsUser: 1000,");
    let s = load(&text).unwrap();
    assert_eq!(s.policies, vec![sgpc::scenario::Policy::Strict]);
}

#[test]
fn wrong_type_names_the_field() {
    let err = load(&GOOD.replace("runAsUser: 1000", "runAsUser: \"thousand\"")).unwrap_err();
    assert_eq!(err.line, Some(5), "{err}");
    assert!(err.to_string().contains("case.yaml:5"), "{err}");
}

#[test]
fn malformed_yaml_names_the_line() {
    let err = load("name: t\nsummary: [unclosed\n").unwrap_err();
    assert!(err.line.is_some(), "{err}");
}
