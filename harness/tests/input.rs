//! Bad scenario input is rejected with the file, line and field named.

use std::path::Path;

use sgpc::image::Recipe;
use sgpc::scenario::{Catalogue, Scenario};

fn recipes() -> Vec<Recipe> {
    Recipe::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../images")).unwrap()
}

fn load(text: &str) -> Result<Scenario, sgpc::input::InputError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("case.yaml");
    std::fs::write(&path, text).unwrap();
    Scenario::load(&path, &recipes())
}

/// The KEP blog case, written out as the model derives it.
const GOOD: &str = "name: t\nsummary: s\nimage: kep-blog\npod:\n  securityContext: {runAsUser: 1000, supplementalGroups: [4000]}\nexpect:\n  merge: {uid: 1000, gid: 1000, groups: [1000, 4000, 50000]}\n  strict: {uid: 1000, gid: 1000, groups: [1000, 4000]}\n";

const VOLUME: &str = "volumes:\n  - name: protected\n    mountPath: /protected\n    protectedDir: {gid: 50000}\n";

fn with_volume(name: &str, mount_path: &str) -> String {
    let volume = VOLUME.replace("name: protected", &format!("name: {name:?}")).replace("mountPath: /protected", &format!("mountPath: {mount_path:?}"));
    // Without `expect`, the model's derivation is used: the volume's access is derived too.
    format!("{}{volume}", GOOD.split("expect:").next().unwrap())
}

#[test]
fn volume_names_that_are_not_dns_labels_are_rejected() {
    for name in ["x/../../../../some/dir", "../x", "a/b", "A", "-a", "a-", ".", "", &"a".repeat(64)] {
        let err = load(&with_volume(name, "/protected")).expect_err(name);
        assert_eq!(err.field.as_deref(), Some("volumes[0].name"), "{name:?}: {err}");
        assert!(err.to_string().contains("DNS-1123"), "{err}");
    }
    assert!(load(&with_volume("protected-1", "/protected")).is_ok());
}

#[test]
fn mount_paths_that_are_not_clean_and_absolute_are_rejected() {
    for path in ["/../../etc", "/a/../b", "/a/./b", "relative", "/", "//a", "/a/", "/a b", "/a\u{0}b", ""] {
        let err = load(&with_volume("protected", path)).expect_err(path);
        assert_eq!(err.field.as_deref(), Some("volumes[0].mountPath"), "{path:?}: {err}");
    }
}

#[test]
fn repeated_volume_names_are_rejected() {
    let text = with_volume("protected", "/a") + &VOLUME.replace("volumes:\n", "").replace("/protected", "/b");
    let err = load(&text).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("volumes[1]"), "{err}");
}

#[test]
fn expectation_that_disagrees_with_the_model_is_a_load_error() {
    // The Merge set without the image's group: what a wrong user scenario looked like.
    let err = load(&GOOD.replace("[1000, 4000, 50000]", "[1000, 4000]")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("expect.merge"), "{err}");
    let text = err.to_string();
    assert!(text.contains("case.yaml") && text.contains("merge") && text.contains("{1000 4000}") && text.contains("{1000 4000 50000}"), "{text}");
    // A Strict expectation written as the Merge set.
    let err = load(&GOOD.replace("strict: {uid: 1000, gid: 1000, groups: [1000, 4000]}", "strict: {uid: 1000, gid: 1000, groups: [1000, 4000, 50000]}")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("expect.strict"), "{err}");
}

#[test]
fn a_deliberate_deviation_needs_a_reason_and_is_kept() {
    let text = GOOD.replace("groups: [1000, 4000, 50000]}", "groups: [1000, 4000], deviation: \"measuring a runtime that documents otherwise\"}");
    let s = load(&text).unwrap();
    assert_eq!(s.expect_merge.deviation.as_deref(), Some("measuring a runtime that documents otherwise"));
    let err = load(&GOOD.replace("groups: [1000, 4000]}", "groups: [1000, 4000], deviation: \"none\"}")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("expect.strict.deviation"), "agreeing expectations cannot claim a deviation: {err}");
}

#[test]
fn omitted_expectations_come_from_the_model() {
    let s = load(GOOD.split("expect:").next().unwrap()).unwrap();
    assert_eq!(s.expect_merge.identity.groups.iter().collect::<Vec<_>>(), vec![1000, 4000, 50000]);
    assert_eq!(s.expect_strict.identity.groups.iter().collect::<Vec<_>>(), vec![1000, 4000]);
}

#[test]
fn control_characters_in_a_summary_are_rejected() {
    let err = load(&GOOD.replace("summary: s", "summary: \"s\\e[31mred\"")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("summary"), "{err}");
}

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
    let err = load(&GOOD.replace("merge: {uid: 1000, gid: 1000, groups: [1000, 4000, 50000]}", "merge: {uid: 1000, gid: 1000, groups: [4000, 50000]}")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("expect.merge.groups"));
}

#[test]
fn scenario_naming_unknown_image_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("case.yaml"), GOOD.replace("kep-blog", "no-such-image")).unwrap();
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images");
    let err = Catalogue::load(dir.path(), &images).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("image"));
    assert_eq!(err.line, Some(3));
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
    assert_eq!(err.field.as_deref(), Some("pod.securityContext.runAsUser"), "{err}");
    assert!(err.to_string().contains("case.yaml:5: field `pod.securityContext.runAsUser`"), "{err}");
}

#[test]
fn malformed_yaml_names_the_line() {
    let err = load("name: t\nsummary: [unclosed\n").unwrap_err();
    assert!(err.line.is_some(), "{err}");
}

#[test]
fn references_and_spec_sentences_are_one_line_each() {
    let err = load(&GOOD.replace("image: kep-blog\n", "image: kep-blog\nreferences: [\"KEP-3619\", \"\"]\n")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("references[1]"), "{err}");
    let err = load(&GOOD.replace("image: kep-blog\n", "image: kep-blog\nspec: {merge: \"runtime should\\nadd\"}\n")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("spec.merge"), "{err}");
    let err = load(&GOOD.replace("image: kep-blog\n", "image: kep-blog\nspec: {mrege: x}\n")).unwrap_err();
    assert!(err.to_string().contains("mrege"), "{err}");
    let s = load(&GOOD.replace("image: kep-blog\n", "image: kep-blog\nreferences: [\"KEP-3619\"]\nspec: {strict: \"runtime should not add image groups\"}\n")).unwrap();
    assert_eq!(s.spec_sentence(sgpc::scenario::Policy::Strict), Some("runtime should not add image groups"));
    assert_eq!(s.spec_sentence(sgpc::scenario::Policy::Merge), None);
}

#[test]
fn a_written_expectation_may_be_any_allowed_outcome_but_no_other() {
    let crlf = "name: t\nsummary: s\nimage: crlf-group-file\npod:\n  securityContext: {supplementalGroups: [60000]}\nexpect:\n  merge: {uid: 1000, gid: 1000, groups: [GROUPS]}\n";
    for allowed in ["1000, 60000", "1000, 50000, 60000"] {
        let s = load(&crlf.replace("GROUPS", allowed)).unwrap_or_else(|e| panic!("{allowed}: {e}"));
        assert_eq!(s.expect_merge.allowed.len(), 2, "the alternatives stay with a written expectation");
    }
    let err = load(&crlf.replace("GROUPS", "1000, 50000")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("expect.merge"), "{err}");
    assert!(err.to_string().contains(" or "), "the error lists every allowed outcome: {err}");
}

#[test]
fn only_regular_files_of_bounded_size_are_read_and_nothing_else_is_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("shadow.yaml");
    std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
    let err = Scenario::load(&link, &recipes()).unwrap_err();
    assert!(err.to_string().contains("is a symbolic link"), "{err}");
    let shadow_first_line = std::fs::read_to_string("/etc/shadow").unwrap_or_default().lines().next().unwrap_or("root:").to_string();
    assert!(!err.to_string().contains(&shadow_first_line), "{err}");
    let fifo = dir.path().join("fifo.yaml");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let err = Scenario::load(&fifo, &recipes()).unwrap_err();
    assert!(err.to_string().contains("is not a regular file"), "a FIFO is refused at once: {err}");
    let zero = dir.path().join("zero.yaml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    assert!(Scenario::load(&zero, &recipes()).is_err());
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, format!("{GOOD}# {}\n", "x".repeat(sgpc::input::MAX_INPUT_BYTES as usize))).unwrap();
    let err = Scenario::load(&big, &recipes()).unwrap_err();
    assert!(err.to_string().contains("at most 1048576"), "{err}");
    assert!(!err.to_string().contains("xxxx"), "{err}");
}

#[test]
fn pods_no_runtime_could_run_are_refused_at_load() {
    // Over the kernel's NGROUPS_MAX with the primary gid: setgroups(2) would say EINVAL.
    let many: Vec<String> = (1..=65535u32).map(|g| g.to_string()).collect();
    let text = GOOD.replace("[4000]}", &format!("[{}]}}", many.join(", "))).split("expect:").next().unwrap().to_string();
    let err = load(&text).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("pod.securityContext.supplementalGroups"), "{err}");
    assert!(err.to_string().contains("NGROUPS_MAX"), "{err}");
    // A volume over the probe's own directories.
    for path in ["/bin", "/proc/self", "/etc"] {
        let err = load(&with_volume("protected", path)).expect_err(path);
        assert_eq!(err.field.as_deref(), Some("volumes[0].mountPath"), "{path}: {err}");
        assert!(err.to_string().contains("the probe itself needs"), "{err}");
    }
}

/// The digest names what a catalogue says, not where it was read from; any change shows.
#[test]
fn catalogue_digest_follows_content_not_location() {
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images");
    let digest = |text: &str, file: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file), text).unwrap();
        Catalogue::load(dir.path(), &images).unwrap().digest()
    };
    let here = digest(GOOD, "a.yaml");
    assert!(here.starts_with("sha256:") && here.len() == 71, "{here}");
    assert_eq!(here, digest(GOOD, "elsewhere.yaml"));
    assert_ne!(here, digest(&GOOD.replace("[4000]", "[4001]").replace("4000", "4001"), "a.yaml"));
}

/// A certification run refuses a selected case whose expectation departs from the model, naming
/// the file and field; a case left out by the selection does not count.
#[test]
fn no_deviations_names_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = GOOD.replace("groups: [1000, 4000, 50000]}", "groups: [1000, 4000], deviation: \"a runtime that documents otherwise\"}");
    std::fs::write(dir.path().join("dev.yaml"), text).unwrap();
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images");
    let catalogue = Catalogue::load(dir.path(), &images).unwrap();
    let cases = catalogue.cases();
    let err = catalogue.refuse_deviations(&cases).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("expect.merge.deviation"));
    assert!(err.to_string().contains("dev.yaml"), "{err}");
    let strict_only: Vec<_> = cases.into_iter().filter(|c| c.policy == sgpc::scenario::Policy::Strict).collect();
    assert!(catalogue.refuse_deviations(&strict_only).is_ok());
}

/// The escalation fields (#22): capability names are checked before anything runs, the field
/// path names the entry; `add` is not part of the language.
#[test]
fn escalation_fields_load_and_bad_capabilities_name_their_entry() {
    let with = |container: &str| format!("{}container:\n  securityContext: {container}\n", GOOD.split("expect:").next().unwrap());
    let s = load(&with("{allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}")).unwrap();
    assert!(s.container.no_new_privs() && s.container.drops_all_capabilities());
    let err = load(&with("{capabilities: {drop: [SETGID, \"cap setgid\"]}}")).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("container.securityContext.capabilities.drop[1]"), "{err}");
    let err = load(&with("{capabilities: {add: [SETGID]}}")).unwrap_err();
    assert!(err.to_string().contains("add"), "{err}");
    let s = load(&with("{allowPrivilegeEscalation: true}")).unwrap();
    assert!(!s.container.no_new_privs(), "only false asks for no_new_privs");
}

/// A Pod with hostUsers: false declares ids of its user namespace (0..65535); the loader names
/// the field of one beyond it. An image group beyond it cannot be attached: the runtime refuses
/// the Pod or runs it without that group.
#[test]
fn a_user_namespaced_pod_declares_ids_of_its_namespace_only() {
    let recipe = sgpc::image::Recipe::parse(std::path::Path::new("r.yaml"), "name: r\npasswd: [\"a:x:1000:1000::/:/bin/sh\"]\ngroup: [\"g:x:70000:a\"]\nuser: a\n").unwrap();
    let scenario = |security_context: &str| sgpc::scenario::Scenario::parse(std::path::Path::new("s.yaml"), &format!("name: s\nsummary: s\nimage: r\npod:\n  hostUsers: false\n  securityContext: {security_context}\n"), std::slice::from_ref(&recipe));
    let err = scenario("{supplementalGroups: [4000, 65536]}").unwrap_err();
    assert_eq!(err.field.as_deref(), Some("pod.securityContext.supplementalGroups[1]"), "{err}");
    assert!(err.to_string().contains("0..=65535"), "{err}");
    assert_eq!(scenario("{fsGroup: 70000}").unwrap_err().field.as_deref(), Some("pod.securityContext.fsGroup"));
    let s = scenario("{supplementalGroups: [4000]}").unwrap();
    assert!(s.expect_merge.refusal_allowed.as_deref().is_some_and(|why| why.contains("0..65535")), "{:?}", s.expect_merge.refusal_allowed);
    assert!(!s.expect_merge.identity.groups.contains(70000), "no runtime can attach the unmappable group: a Pod that runs, runs without it");
    assert!(s.expect_merge.allowed.iter().all(|o| !o.identity.groups.contains(70000)), "{:?}", s.expect_merge.allowed);
    assert_eq!(s.expect_strict.refusal_allowed, None, "Strict needs no group beyond the declared ones");
    let deviating = sgpc::scenario::Scenario::parse(
        std::path::Path::new("s.yaml"),
        "name: s\nsummary: s\nimage: r\npod:\n  hostUsers: false\n  securityContext: {supplementalGroups: [4000]}\nexpect:\n  merge: {uid: 1000, gid: 1000, groups: [1000], deviation: \"a runtime documented to drop every image group\"}\n",
        std::slice::from_ref(&recipe),
    )
    .unwrap();
    assert_eq!(deviating.expect_merge.refusal_allowed, None, "a deviation expects its own outcome, not the model's leave to refuse");
}
