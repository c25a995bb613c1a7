//! Every written expectation in `scenarios/` agrees with the KEP model in `sgpc::oracle`.

use std::path::{Path, PathBuf};

use rstest::rstest;
use sgpc::oracle;
use sgpc::scenario::{Catalogue, Policy};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn catalogue() -> Catalogue {
    Catalogue::load(&root().join("scenarios"), &root().join("images")).expect("the shipped catalogue loads")
}

#[rstest]
fn written_expectation_matches_oracle(#[files("../scenarios/*.yaml")] path: PathBuf, #[values(Policy::Default, Policy::Merge, Policy::Strict)] policy: Policy) {
    let catalogue = catalogue();
    // A Pod of several containers: each container's expectation, against its own image.
    let text = std::fs::read_to_string(&path).unwrap();
    for parsed in sgpc::scenario::Scenario::parse_all(&path, &text, &catalogue.images).unwrap() {
        let scenario = catalogue.scenario(&parsed.name).unwrap();
        let recipe = catalogue.recipe(&scenario.image).unwrap();
        let derived = oracle::derive(recipe, &scenario.spec(), policy).unwrap();
        let written = scenario.expectation(policy);
        assert_eq!(written.identity, derived.identity, "{} ({}): written expectation for {policy} differs from the KEP model", path.display(), scenario.name);
        assert_eq!(written.access, derived.access, "{} ({}): written access for {policy} differs from the KEP model", path.display(), scenario.name);
    }
}

#[test]
fn catalogue_covers_the_issue_seeds() {
    let catalogue = catalogue();
    assert!(catalogue.scenarios.len() >= 12, "catalogue v1 has 12 scenarios");
    // The seeds of the conformance core issue, copied from the issue text, not from the files.
    // (scenario, [uid, gid, unused], Merge groups, Strict groups)
    type Seed = (&'static str, [u32; 3], &'static [u32], &'static [u32]);
    let seeds: [Seed; 4] = [
        ("kep-blog", [1000, 3000, 0], &[3000, 4000, 50000], &[3000, 4000]),
        ("issue-112879", [1000, 1000, 0], &[1000, 50000, 60000], &[1000, 60000]),
        ("cri-tools", [1000, 1000, 0], &[1000, 1234, 50000], &[1000, 1234]),
        ("kubernetes-e2e", [1000, 1000, 0], &[1000, 50000, 60000], &[1000, 60000]),
    ];
    for (name, [uid, gid, _], merge, strict) in seeds {
        let s = catalogue.scenario(name).unwrap_or_else(|| panic!("scenario {name} is missing"));
        let merge_groups: Vec<u32> = s.expect_merge.identity.groups.iter().collect();
        let strict_groups: Vec<u32> = s.expect_strict.identity.groups.iter().collect();
        assert_eq!((s.expect_merge.identity.uid, s.expect_merge.identity.gid), (uid, gid), "{name}");
        assert_eq!(merge_groups, merge, "{name} merge");
        assert_eq!(strict_groups, strict, "{name} strict");
    }
}

#[test]
fn many_groups_user_has_at_least_64_image_groups() {
    let catalogue = catalogue();
    let s = catalogue.scenario("many-groups").unwrap();
    let derived = oracle::derive(catalogue.recipe(&s.image).unwrap(), &s.spec(), Policy::Merge).unwrap();
    assert!(derived.implicit_groups.0.len() >= 64);
}

#[test]
fn every_scenario_reads_as_the_spec() {
    for s in &catalogue().scenarios {
        assert!(!s.references.is_empty(), "{}: no references", s.name);
        for policy in &s.policies {
            let sentence = s.spec_sentence(*policy).unwrap_or_else(|| panic!("{}: no spec sentence for {policy}", s.name));
            assert!(sentence.starts_with("runtime should"), "{}: {sentence:?} is not written as critest writes its cases", s.name);
        }
    }
}

/// Catalogue v2, from the verdict issue's list and the specs, not from the files: every image
/// `USER` form reaches the runtime as kubelet sends it, large gids are groups like any other,
/// and where the specs leave the file's reading open every allowed outcome is listed.
#[test]
fn catalogue_v2_covers_the_forms_real_images_have() {
    let catalogue = catalogue();
    let outcomes = |name: &str, policy: Policy| -> Vec<(u32, u32, Vec<u32>)> {
        let s = catalogue.scenario(name).unwrap_or_else(|| panic!("scenario {name} is missing"));
        let e = s.expectation(policy);
        let all: Vec<&sgpc::identity::Identity> = if e.allowed.is_empty() { vec![&e.identity] } else { e.allowed.iter().map(|o| &o.identity).collect() };
        all.into_iter().map(|i| (i.uid, i.gid, i.groups.iter().collect())).collect()
    };
    // Every USER form: none (kubelet sends run_as_user 0), name, uid, name:group and uid:gid
    // (only the part before ':' reaches the runtime; the primary gid is the passwd gid).
    assert_eq!(outcomes("image-user-none", Policy::Merge), [(0, 0, vec![0, 50000, 60000])]);
    assert_eq!(outcomes("image-user-none", Policy::Strict), [(0, 0, vec![0, 60000])]);
    assert_eq!(outcomes("image-user-by-name", Policy::Merge), [(1000, 1000, vec![1000, 50000, 60000])]);
    for name in ["image-user-name-group", "image-user-uid-gid"] {
        assert_eq!(outcomes(name, Policy::Merge), [(1000, 1000, vec![1000, 50000, 60000])], "{name}");
        assert_eq!(outcomes(name, Policy::Strict), [(1000, 1000, vec![1000, 60000])], "{name}");
    }
    // Large gids: the API limits what a Pod declares, not the image's files.
    for gid in [2147483647, 2147483648, 4294967294] {
        assert_eq!(outcomes(&format!("gid-{gid}"), Policy::Merge), [(1000, 1000, vec![1000, 60000, gid])]);
        assert_eq!(outcomes(&format!("gid-{gid}"), Policy::Strict), [(1000, 1000, vec![1000, 60000])]);
    }
    // Open readings: CRLF (glibc keeps the \r), comments (group(5) has none), whitespace
    // (glibc skips it before a member only).
    assert_eq!(outcomes("crlf-group-file", Policy::Merge), [(1000, 1000, vec![1000, 60000]), (1000, 1000, vec![1000, 50000, 60000])]);
    assert_eq!(outcomes("comments-and-blank-lines", Policy::Merge), [(1000, 1000, vec![1000, 50000, 60000]), (1000, 1000, vec![1000, 50000, 50001, 60000])]);
    assert_eq!(
        outcomes("whitespace-members", Policy::Merge),
        [(1000, 1000, vec![1000, 50000, 60000]), (1000, 1000, vec![1000, 60000]), (1000, 1000, vec![1000, 50000, 50001, 60000])]
    );
    for name in ["crlf-group-file", "comments-and-blank-lines", "whitespace-members"] {
        assert_eq!(outcomes(name, Policy::Strict), [(1000, 1000, vec![1000, 60000])], "{name}: Strict is never open");
    }
    // A distribution-style file: the application user in four system groups.
    assert_eq!(outcomes("distribution-style", Policy::Merge), [(1000, 1000, vec![4, 29, 44, 100, 1000, 60000])]);
    // containerd#11937's shape: user `name`, primary group daemon, member of group `name`.
    assert_eq!(outcomes("same-name-group", Policy::Merge), [(1000, 1, vec![1, 1000, 60000])]);
}

/// Each open choice of the file's reading is made independently: a reader that drops a CRLF
/// file's `\r` but keeps the blank before a member (moby/sys/user, which containerd and CRI-O
/// use) gets an outcome that no whole-file reading gives.
#[test]
fn every_combination_of_the_open_choices_is_an_allowed_outcome() {
    let recipe = sgpc::image::Recipe::parse(
        Path::new("mixed.yaml"),
        "name: mixed\nuser: \"1000\"\npasswd:\n  - \"alice:x:1000:1000::/:/bin/sh\"\ngroup:\n  - \"a:x:50000:alice\\r\"\n  - \"b:x:50001:bob, alice\\r\"\n",
    )
    .unwrap();
    let scenario = sgpc::scenario::Scenario::parse(Path::new("mixed-case.yaml"), "name: mixed\nsummary: s\nimage: mixed\n", std::slice::from_ref(&recipe)).unwrap();
    let allowed: Vec<Vec<u32>> = scenario.expect_merge.allowed.iter().map(|o| o.identity.groups.iter().collect()).collect();
    for groups in [vec![1000], vec![1000, 50000], vec![1000, 50000, 50001]] {
        assert!(allowed.contains(&groups), "{groups:?} is allowed: {allowed:?}");
    }
    let moby = scenario.expect_merge.allowed.iter().find(|o| o.identity.groups.iter().collect::<Vec<_>>() == [1000, 50000]).unwrap();
    assert!(moby.reading.contains("moby/sys/user"), "{}", moby.reading);
}

#[test]
fn passwd_lines_the_model_cannot_read_one_way_are_refused() {
    let parse = |line: &str| sgpc::image::Recipe::parse(Path::new("r.yaml"), &format!("name: r\npasswd:\n  - '{line}'\n"));
    let err = parse("#alice:x:1000:50000::/:/bin/sh").unwrap_err();
    assert!(err.to_string().contains("commented-out entry"), "{err}");
    let err = parse(" alice:x:1000:1000::/:/bin/sh").unwrap_err();
    assert!(err.to_string().contains("blanks"), "{err}");
    let err = parse("alice:x:1000:1000::/:/bin/sh\u{a0}").unwrap_err();
    assert!(err.to_string().contains("'\\u{a0}'"), "{err}");
    assert!(parse("# users of this image").is_ok());
}

/// Found by attacking the loader: lines the model cannot read as every reader does are refused
/// at load, naming the file, the field and why.
#[test]
fn lines_readers_turn_into_different_ids_are_refused() {
    let recipe = |group: &str| sgpc::image::Recipe::parse(Path::new("r.yaml"), &format!("name: r\nuser: \"1000\"\npasswd:\n  - \"alice:x:1000:1000::/:/bin/sh\"\ngroup:\n  - {group}\n"));
    for group in [
        "{line: \"g:x:-1:alice\", malformed: true}",
        "{line: \"g:x:4294967297:alice\", malformed: true}",
        "{line: \"g:x:+5:alice\", malformed: true}",
        "\"#g:x:-1:alice\"",
        "\"g:x:4294967295:alice\"",
    ] {
        let err = recipe(group).expect_err(group);
        assert_eq!(err.field.as_deref(), Some("group[0]"), "{group}: {err}");
    }
    assert!(recipe("{line: \"g:x::alice\", malformed: true}").is_ok(), "a GID that is no number at all is modelled");
    let err = sgpc::image::Recipe::parse(Path::new("r.yaml"), "name: r\npasswd:\n  - {line: \"alice:x:1000:1000\", malformed: true}\n").unwrap_err();
    assert!(err.to_string().contains("reads /etc/passwd one way"), "{err}");
    let err = recipe("{line: \"g:x:1:alice\", malformed: false, reason: x}").unwrap_err();
    assert!(err.to_string().contains("a line of text, or {line: TEXT, malformed: true}"), "{err}");
}

#[test]
fn pod_ids_are_held_to_the_api_range_and_text_to_what_displays() {
    let images = sgpc::image::Recipe::load_dir(&root().join("images")).unwrap();
    let scenario = |extra: &str| sgpc::scenario::Scenario::parse(Path::new("s.yaml"), &format!("name: s\nsummary: s\nimage: kep-blog\n{extra}"), &images);
    let err = scenario("pod:\n  securityContext: {runAsUser: 2147483648}\n").unwrap_err();
    assert_eq!(err.field.as_deref(), Some("pod.securityContext.runAsUser"), "{err}");
    assert!(err.to_string().contains("0..=2147483647"), "{err}");
    assert!(scenario("pod:\n  securityContext: {runAsUser: 2147483647}\n").is_ok());
    for text in ["\"a\\u202Eb\"", "\"\\u200B\"", "\"a\\u2028b\""] {
        let err = scenario(&format!("references: [{text}]\n")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("references[0]"), "{text}: {err}");
    }
}

/// An empty `USER` (`""`, or `":3000"`, whose user part is empty) is root everywhere: the
/// recipe loader admits it, the model derives uid 0, and the CRI driver sends run_as_user 0
/// (the image spec: unset is root; kubelet runs an image whose ImageStatus names no user as
/// the runtime's default). One reading: `identity::ImageUser::of_config`.
#[test]
fn an_empty_image_user_is_root_in_the_loader_the_model_and_the_driver() {
    for user in ["", ":3000"] {
        let recipe = sgpc::image::Recipe::parse(Path::new("empty.yaml"), &format!("name: empty\nuser: {user:?}\npasswd:\n  - \"root:x:0:0::/:/bin/sh\"\ngroup:\n  - \"root:x:0:\"\n  - \"wheel:x:10:root\"\n"))
            .unwrap_or_else(|e| panic!("USER {user:?} loads: {e}"));
        let scenario = sgpc::scenario::Scenario::parse(Path::new("empty-case.yaml"), "name: empty\nsummary: s\nimage: empty\n", std::slice::from_ref(&recipe)).unwrap();
        let derived = sgpc::oracle::derive(&recipe, &scenario.spec(), Policy::Merge).unwrap();
        assert_eq!((derived.identity.uid, derived.identity.gid), (0, 0), "USER {user:?}");
        let request = sgpc::driver::cri::identity_request(&scenario, &recipe, Policy::Merge);
        assert!(request.contains("CreateContainer linux.security_context {run_as_user: Some(0), run_as_username: \"\""), "USER {user:?}: {request}");
    }
    let err = sgpc::image::Recipe::parse(Path::new("big.yaml"), "name: big\nuser: \"4294967295\"\npasswd:\n  - \"root:x:0:0::/:/bin/sh\"\n").unwrap_err();
    assert_eq!(err.field.as_deref(), Some("user"), "{err}");
}
