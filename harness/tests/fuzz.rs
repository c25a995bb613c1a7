//! Property tests: the input loaders and the /etc parsers never panic, whatever the input.
//! Bounded (256 cases each) so that CI time stays small.

use std::path::Path;

use proptest::prelude::*;
use sgpc::etc::{parse_group, parse_passwd, read_group, Reading};
use sgpc::image::Recipe;
use sgpc::observation::{parse_id_output, parse_probe};
use sgpc::scenario::Scenario;

const SCENARIO: &str = include_str!("../../scenarios/protected-file-access.yaml");
const RECIPE: &str = include_str!("../../images/many-groups.yaml");

fn recipes() -> Vec<Recipe> {
    vec![Recipe::parse(Path::new("issue-112879.yaml"), include_str!("../../images/issue-112879.yaml")).unwrap()]
}

/// A valid file with bytes replaced at random positions: mostly near-valid YAML.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec((0..base.len(), any::<u8>()), 1..8).prop_map(move |edits| {
        let mut bytes = base.as_bytes().to_vec();
        for (at, byte) in edits {
            bytes[at] = byte;
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn etc_parsers_never_panic(line in "\\PC{0,80}") {
        let _ = parse_passwd(&line);
        let _ = parse_group(&line);
    }

    #[test]
    fn etc_parsers_never_panic_on_colon_heavy_lines(line in "[a-z0-9:,-]{0,40}") {
        let _ = parse_passwd(&line);
        let _ = parse_group(&line);
    }

    #[test]
    fn scenario_loader_never_panics(text in mutated(SCENARIO)) {
        let _ = Scenario::parse(Path::new("fuzz.yaml"), &text, &recipes());
    }

    #[test]
    fn scenario_loader_never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        let _ = Scenario::parse(Path::new("fuzz.yaml"), &text, &recipes());
    }

    #[test]
    fn recipe_loader_never_panics(text in mutated(RECIPE)) {
        let _ = Recipe::parse(Path::new("fuzz.yaml"), &text);
    }

    /// The model opens a case only where the specs are silent: a group file of well-formed
    /// lines (no comment, blank, CR, extra field or non-numeric GID) reads the same under
    /// every reading, and every reading of any file is total.
    #[test]
    fn readings_agree_where_the_specs_are_not_silent(
        lines in proptest::collection::vec(("[a-z][a-z0-9-]{0,6}", 0u32..=4294967294, proptest::collection::vec("[a-z][a-z0-9]{0,4}", 0..4)), 0..8),
        noise in proptest::collection::vec("[ #a-z0-9:,\r]{0,20}", 0..3),
    ) {
        let clean: Vec<String> = lines.iter().map(|(name, gid, members)| format!("{name}:x:{gid}:{}", members.join(","))).collect();
        let read = |lines: &[String], reading| -> Vec<(u32, Vec<String>)> { read_group(lines, reading).into_iter().map(|l| (l.gid, l.members)).collect() };
        let first = read(&clean, Reading::GETGRENT);
        for reading in Reading::all() {
            prop_assert_eq!(&read(&clean, reading), &first, "{:?}", reading);
        }
        let noisy: Vec<String> = clean.iter().cloned().chain(noise).collect();
        for reading in Reading::all() {
            let _ = read(&noisy, reading);
        }
    }

    #[test]
    fn probe_parsers_never_panic(text in "[a-z=()0-9, :\\t\\n-]{0,200}") {
        let _ = parse_id_output(&text);
        let _ = parse_probe(&text, "case/strict");
    }
}

#[test]
fn the_unmutated_inputs_parse() {
    assert!(Scenario::parse(Path::new("s.yaml"), SCENARIO, &recipes()).is_ok());
    assert!(Recipe::parse(Path::new("r.yaml"), RECIPE).is_ok());
}
