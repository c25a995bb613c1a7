//! Every reporter renders every verdict, from one fixture; exit codes follow the verdicts.

use std::time::Duration;

use sgpc::driver::RuntimeInfo;
use sgpc::outcome::{error_result, exit_code, CaseResult, RunReport};
use sgpc::report::{json, junit, terminal};
use sgpc::scenario::{CaseId, Policy};
use sgpc::verdict::{Judgement, Verdict};

fn case(scenario: &str, verdict: Verdict, reason: &str) -> CaseResult {
    let mut result = error_result(&CaseId { scenario: scenario.into(), policy: Policy::Strict }, "a summary", reason);
    result.judgement = Judgement { verdict, reasons: if reason.is_empty() { vec![] } else { vec![reason.into()] }, notes: vec!["a note".into()], known_bugs: Vec::new() };
    result.duration = Duration::from_millis(180);
    result.spec = Some("runtime should not add the groups that the image's /etc/group gives the user".into());
    result.references = vec!["KEP-3619".into(), "kubernetes/kubernetes#112879".into()];
    result
}

const SPEC: &str = "runtime should not add the groups that the image's /etc/group gives the user";

fn fixture(verdicts: &[Verdict]) -> RunReport {
    RunReport {
        schema_version: 1,
        harness_version: "0.0.0".into(),
        provisioned: None,
        runtime: Some(RuntimeInfo {
            endpoint: "unix:///run/test.sock".into(),
            runtime_name: "containerd".into(),
            runtime_version: "2.1.9".into(),
            runtime_api_version: "v1".into(),
            supplemental_groups_policy: true,
            feature_per_node: false,
            no_user_namespaces: None,
            cri_status: None,
        }),
        images: vec![],
        selection: Default::default(),
        cases: verdicts
            .iter()
            .enumerate()
            .map(|(i, v)| case(&format!("case-{i}"), *v, if *v == Verdict::Pass { "" } else { "reason of case" }))
            .collect(),
        setup_error: None,
        critest: None,
        duration: Duration::from_secs(2),
    }
}

const EVERY: [Verdict; 8] = [
    Verdict::Pass,
    Verdict::Fail,
    Verdict::Unsupported { leak: true },
    Verdict::Unsupported { leak: false },
    Verdict::Error,
    Verdict::Rejected,
    Verdict::Refused,
    Verdict::NotRun,
];

#[test]
fn terminal_lines_and_summary() {
    let report = fixture(&EVERY);
    let mut out = Vec::new();
    let style = terminal::Style::default();
    for (i, case) in report.cases.iter().enumerate() {
        terminal::write_case(&mut out, style, case, i + 1, report.cases.len()).unwrap();
    }
    terminal::write_summary(&mut out, style, &report).unwrap();
    let text = String::from_utf8(out).unwrap();
    for label in ["PASS", "FAIL", "UNSUPPORTED+LEAK", "UNSUPPORTED", "ERROR", "REJECTED", "REFUSED", "NOT RUN"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(&format!("{label} ["))), "{label} missing in:\n{text}");
    }
    assert!(text.contains("(1/8) case-0/strict"), "{text}");
    assert_eq!(text.matches("reason of case").count(), 6, "reasons under cases that are neither PASS nor REJECTED:\n{text}");
    assert!(text.contains("7 cases run on containerd 2.1.9: 1 passed, 1 rejected by kubelet, 1 failed, 1 refused, 2 unsupported (1 leak), 1 not run (the target lacks what they need), 1 errors"), "{text}");
    assert!(!text.contains('\x1b'), "no colour unless asked");
    assert_eq!(text.matches(&format!("spec: {SPEC}")).count(), 6, "the spec sentence heads the reasons of cases that are not PASS:\n{text}");
}

#[test]
fn junit_separates_failures_from_errors() {
    let mut out = Vec::new();
    junit::write(&mut out, &fixture(&EVERY)).unwrap();
    let xml = String::from_utf8(out).unwrap();
    assert!(xml.contains("tests=\"8\""), "{xml}");
    assert!(xml.contains("<skipped message=") && xml.contains("type=\"NOT RUN\""), "a case not run is skipped, never a success: {xml}");
    assert!(xml.contains("failures=\"4\""), "FAIL, REFUSED and both UNSUPPORTED are failures; REJECTED is a success: {xml}");
    assert!(xml.contains("type=\"REFUSED\""), "{xml}");
    assert!(xml.contains("errors=\"1\""), "{xml}");
    assert!(xml.contains("type=\"UNSUPPORTED+LEAK\""), "{xml}");
    assert!(xml.contains("<error message=\"spec: runtime should not add the groups that the image&apos;s /etc/group gives the user\nreason of case\" type=\"ERROR\""), "{xml}");
    assert_eq!(xml.matches("reference: kubernetes/kubernetes#112879").count(), 8, "every case names its references: {xml}");
}

/// The attributes and children `junit-10.xsd` (the JUnit schema Jenkins' xunit plugin
/// validates against; GitLab reads the same shape) allows, element by element.
fn junit_10_allows(element: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    Some(match element {
        "testsuites" => (&["name", "time", "tests", "failures", "errors"], &["testsuite"]),
        "testsuite" => (
            &["name", "tests", "failures", "errors", "group", "time", "skipped", "timestamp", "hostname", "id", "package", "file", "log", "url"],
            &["testsuite", "properties", "testcase", "system-out", "system-err"],
        ),
        "properties" => (&[], &["property"]),
        "property" => (&["name", "value"], &[]),
        "testcase" => (&["name", "time", "classname", "group"], &["skipped", "error", "failure", "system-out", "system-err"]),
        "failure" | "error" | "skipped" => (&["type", "message"], &[]),
        "system-out" | "system-err" => (&[], &[]),
        _ => return None,
    })
}

/// Every element, attribute and child of the JUnit report is one `junit-10.xsd` allows: the
/// `skipped` attribute quick-junit puts on `<testsuites>` and properties on a `<testcase>`
/// were not.
#[test]
fn junit_keeps_to_the_schema_jenkins_and_gitlab_read() {
    use quick_xml::events::Event;
    let mut report = fixture(&EVERY);
    let catalogue = sgpc::scenario::Catalogue::open(None, None).unwrap();
    let mut expected = catalogue.scenario("kep-blog").unwrap().expect_strict.clone();
    expected.deviation = Some("a documented departure".into());
    report.cases[0].expected = Some(expected);
    report.cases[0].passed_by_deviation = true;
    let mut out = Vec::new();
    junit::write(&mut out, &report).unwrap();
    let xml = String::from_utf8(out).unwrap();
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut open: Vec<String> = Vec::new();
    loop {
        let event = reader.read_event().unwrap();
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            Event::End(_) => {
                open.pop();
                (None, false)
            }
            Event::Eof => break,
            _ => (None, false),
        };
        let Some(start) = start else { continue };
        let name = String::from_utf8(start.name().as_ref().to_vec()).unwrap();
        let (attributes, _) = junit_10_allows(&name).unwrap_or_else(|| panic!("<{name}> is no element of junit-10.xsd:\n{xml}"));
        if let Some(parent) = open.last() {
            assert!(junit_10_allows(parent).unwrap().1.contains(&name.as_str()), "<{name}> inside <{parent}>:\n{xml}");
        }
        for attribute in start.attributes() {
            let key = String::from_utf8(attribute.unwrap().key.as_ref().to_vec()).unwrap();
            assert!(attributes.contains(&key.as_str()), "<{name} {key}=...> is not allowed:\n{xml}");
        }
        if !empty {
            open.push(name);
        }
    }
    assert!(xml.contains("passed-by-deviation: a documented departure"), "the deviation is still reported, as output: {xml}");
}

#[test]
fn json_carries_verdicts_and_runtime() {
    let mut out = Vec::new();
    json::write(&mut out, &fixture(&EVERY)).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(value["schema_version"], 1);
    assert_eq!(value["runtime"]["supplemental_groups_policy"], true);
    let kinds: Vec<(&str, Option<bool>)> = value["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["verdict"]["kind"].as_str().unwrap(), c["verdict"]["leak"].as_bool()))
        .collect();
    assert_eq!(kinds, [("PASS", None), ("FAIL", None), ("UNSUPPORTED", Some(true)), ("UNSUPPORTED", Some(false)), ("ERROR", None), ("REJECTED", None), ("REFUSED", None), ("NOT_RUN", None)]);
    assert_eq!(value["cases"][0]["id"]["policy"], "strict");
    assert_eq!(value["cases"][0]["duration_ms"], 180.0);
    assert_eq!(value["cases"][0]["spec"], SPEC);
    assert_eq!(value["cases"][0]["references"][1], "kubernetes/kubernetes#112879");
}

#[test]
fn exit_codes_rank_fail_then_error_then_unsupported() {
    assert_eq!(fixture(&[Verdict::Pass]).exit_code(), exit_code::PASS);
    assert_eq!(fixture(&EVERY).exit_code(), exit_code::FAIL);
    assert_eq!(fixture(&[Verdict::Pass, Verdict::Error, Verdict::Unsupported { leak: true }]).exit_code(), exit_code::ERROR);
    assert_eq!(fixture(&[Verdict::Pass, Verdict::Unsupported { leak: true }]).exit_code(), exit_code::UNSUPPORTED);
    assert_eq!(fixture(&[Verdict::Pass, Verdict::NotRun]).exit_code(), exit_code::UNSUPPORTED, "a case not run is no pass");
    assert_eq!(fixture(&[Verdict::Pass, Verdict::Error, Verdict::Refused]).exit_code(), exit_code::FAIL, "a refusal is the runtime's finding");
    assert_eq!(fixture(&[]).exit_code(), exit_code::ERROR, "a run of nothing is not a pass");
}
