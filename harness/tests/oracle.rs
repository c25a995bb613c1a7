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
    let name = sgpc::scenario::Scenario::load(&path, &catalogue.images).unwrap().name;
    let scenario = catalogue.scenario(&name).unwrap();
    let recipe = catalogue.recipe(&scenario.image).unwrap();
    let derived = oracle::derive(recipe, scenario, policy).unwrap();
    let written = scenario.expectation(policy);
    assert_eq!(written.identity, derived.identity, "{}: written expectation for {policy} differs from the KEP model", path.display());
    assert_eq!(written.access, derived.access, "{}: written access for {policy} differs from the KEP model", path.display());
}

#[test]
fn catalogue_covers_the_issue_seeds() {
    let catalogue = catalogue();
    assert!(catalogue.scenarios.len() >= 12, "catalogue v1 has 12 scenarios");
    // The seeds of the conformance core issue, copied from the issue text, not from the files.
    let seeds: [(&str, [u32; 3], &[u32], &[u32]); 4] = [
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
    let derived = oracle::derive(catalogue.recipe(&s.image).unwrap(), s, Policy::Merge).unwrap();
    assert!(derived.implicit_groups.0.len() >= 64);
}
