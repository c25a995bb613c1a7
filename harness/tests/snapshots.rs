//! Every reporter, rendered in full from one fixture that holds every verdict (REJECTED and
//! REFUSED included), compared with the reviewed snapshots in `tests/snapshots/`. The fixture
//! fixes durations, versions and paths; JSON durations are redacted on top, so a change in how
//! they are measured does not churn the snapshots. `cargo insta review` shows a change.

use std::collections::BTreeMap;
use std::time::Duration;

use sgpc::divergence::{Behaviour, Divergence, Rule};
use sgpc::driver::RuntimeInfo;
use sgpc::identity::Identity;
use sgpc::image::ImageRecord;
use sgpc::matrix::{Cell, Column, Expected, MatrixReport, Outcome, Row};
use sgpc::target::Source;
use sgpc::observation::{AccessObservation, IdentityObservation, Observations, Point, Prober};
use sgpc::outcome::{error_result, CaseResult, RunReport, Selection};
use sgpc::report::{json, junit, matrix as matrix_report, terminal};
use sgpc::scenario::{Access, CaseId, Expectation, Policy};
use sgpc::verdict::{Judgement, Verdict};

fn runtime() -> RuntimeInfo {
    RuntimeInfo {
        endpoint: "unix:///run/sgpc-test/containerd.sock".into(),
        runtime_name: "containerd".into(),
        runtime_version: "2.1.9".into(),
        runtime_api_version: "v1".into(),
        supplemental_groups_policy: true,
        feature_per_node: false,
        no_user_namespaces: None,
            cri_status: None,
    }
}

fn image() -> ImageRecord {
    ImageRecord {
        name: "kep-blog".into(),
        reference: "127.0.0.1:5000/sgpc/kep-blog@sha256:1111111111111111111111111111111111111111111111111111111111111111".into(),
        manifest_digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111".into(),
        config_digest: "sha256:2222222222222222222222222222222222222222222222222222222222222222".into(),
    }
}

fn observed(groups: &[u32]) -> Observations {
    let identity = Identity::observed(1000, 3000, groups.iter().copied());
    let point = |point| IdentityObservation { point, identity: identity.clone(), raw_groups: groups.to_vec(), printed: String::new() };
    let mut obs = Observations {
        identities: vec![point(Point::FirstProcessId), point(Point::FirstProcessKernel), point(Point::ExecId), point(Point::CriStatus)],
        ..Observations::default()
    };
    obs.identities[0].printed = "uid=1000 gid=3000 groups=3000,4000".into();
    obs.access.push(AccessObservation { prober: Prober::FirstProcess, path: "/protected/token".into(), access: Access::Denied, detail: "cat: can't open '/protected/token': Permission denied".into() });
    obs
}

fn case(scenario: &str, policy: Policy, verdict: Verdict, reasons: &[&str], notes: &[&str]) -> CaseResult {
    let mut result = error_result(&CaseId { scenario: scenario.into(), policy }, "a summary of the scenario", "");
    result.spec = Some("runtime should not add the groups that the image's /etc/group gives the user".into());
    result.references = vec!["KEP-3619".into(), "kubernetes/kubernetes#112879".into()];
    result.image = Some(image());
    result.expected = Some(Expectation {
        identity: Identity::observed(1000, 3000, [3000, 4000]),
        access: BTreeMap::from([("/protected/token".to_string(), Access::Denied)]),
        deviation: None,
        allowed: Vec::new(),
        sources: BTreeMap::new(),
        escalated: BTreeMap::new(),
        refusal_allowed: None,
    });
    result.observations = (verdict != Verdict::Error && verdict != Verdict::Refused).then(|| observed(&[3000, 4000]));
    result.judgement = Judgement { verdict, reasons: reasons.iter().map(|r| r.to_string()).collect(), notes: notes.iter().map(|n| n.to_string()).collect(), known_bugs: Vec::new() };
    result.duration = Duration::from_millis(180);
    result
}

/// A PASS that holds only because the scenario's `deviation:` rewrote the expectation.
fn deviated(mut result: CaseResult) -> CaseResult {
    if let Some(expected) = result.expected.as_mut() {
        expected.deviation = Some("containerd/containerd#11937: containerd 2.x attaches the group named like the user".into());
    }
    result.passed_by_deviation = true;
    result
}

/// One case per verdict.
fn run_report() -> RunReport {
    let cases = vec![
        case("kep-blog", Policy::Strict, Verdict::Pass, &[], &["CRI ContainerStatus.user lists groups unsorted or repeated: [4000, 3000] (order is not a conformance property)"]),
        case("issue-112879", Policy::Strict, Verdict::Fail, &["groups via exec'd `id`: expected {1000 60000}, got {1000 50000 60000} (+50000 from image /etc/group line 3 \"bypassed-group:x:50000:alice\")"], &[]),
        case("protected-file-access", Policy::Strict, Verdict::Unsupported { leak: true }, &["the runtime does not advertise features.supplemental_groups_policy, so Strict cannot be enforced", "LEAK: groups the Pod did not declare were attached despite Strict: +50000 (source unknown)"], &[]),
        case("no-group-file", Policy::Strict, Verdict::Unsupported { leak: false }, &["the runtime does not advertise features.supplemental_groups_policy, so Strict cannot be enforced"], &[]),
        case("fsgroup", Policy::Strict, Verdict::Rejected, &["kubelet rejected the Strict Pod: the node does not support it"], &[]),
        case("gid-4294967294", Policy::Merge, Verdict::Refused, &["the runtime refused a Pod the Kubernetes API accepts: StartContainer failed: Unknown: uids and gids must be in range 0-2147483647"], &[]),
        case("cri-tools", Policy::Default, Verdict::Error, &["RunPodSandbox did not finish within 60s"], &[]),
        deviated(case("same-name-group", Policy::Merge, Verdict::Pass, &[], &["containerd/containerd#11937 attaches the group named like the user"])),
        case("userns-kep-blog", Policy::Strict, Verdict::NotRun, &[&format!("not run (hostUsers: false): {}", sgpc::verdict::USERNS_NOT_ADVERTISED)], &[]),
    ];
    RunReport {
        schema_version: 1,
        harness_version: "0.0.0".into(),
        provisioned: Some("containerd 2.1.9 from /opt/containerd/bin".into()),
        runtime: Some(runtime()),
        images: vec![image()],
        selection: Selection {
            filter: Some("kep|issue|protected|group|fsgroup|gid|cri".into()),
            catalogue_digest: "sha256:0f343b0931126a20f133d67c2b018a3b1a7c1c5f8d5e4c7b2a1f0e9d8c7b6a59".into(),
            selected: 9,
            catalogue_cases: 60,
            policies_not_run: Vec::new(),
        },
        cases,
        setup_error: None,
        critest: Some(critest_says()),
        duration: Duration::from_millis(2500),
    }
}

/// What critest says of a runtime without the feature: its specs skip, with a message that
/// carries a terminal escape (escaped in every report).
fn critest_says() -> sgpc::critest::CritestSays {
    let spec = |policy: &str| sgpc::critest::Spec {
        name: format!("[k8s.io] Security Context SupplementalGroupsPolicy when SupplementalGroupsPolicy={policy} ..."),
        outcome: sgpc::critest::SpecOutcome::Skipped,
        seconds: 0.002,
        message: "The runtime does not support SupplementalGroupsPolicy feature".into(),
    };
    sgpc::critest::CritestSays::Ran(sgpc::critest::CritestRun { version: "v1.37.0".into(), specs: vec![spec("Merge (Default)"), spec("Strict")], seconds: 0.5 })
}

#[test]
fn the_fixture_holds_every_verdict() {
    let report = run_report();
    for verdict in Verdict::ALL {
        assert!(report.cases.iter().any(|c| c.judgement.verdict == verdict), "{verdict} is rendered by no snapshot");
    }
}

fn render(write: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    write(&mut out);
    String::from_utf8(out).expect("reports are UTF-8")
}

#[test]
fn terminal() {
    let report = run_report();
    let style = terminal::Style { color: false, verbose: true };
    let text = render(|out| {
        terminal::write_header(out, style, &runtime(), report.cases.len()).unwrap();
        for (i, case) in report.cases.iter().enumerate() {
            terminal::write_case(out, style, case, i + 1, report.cases.len()).unwrap();
        }
        terminal::write_summary(out, style, &report).unwrap();
    });
    insta::assert_snapshot!(text);
}

#[test]
fn junit() {
    insta::assert_snapshot!(render(|out| junit::write(out, &run_report()).unwrap()));
}

#[test]
fn json() {
    let value: serde_json::Value = serde_json::from_str(&render(|out| json::write(out, &run_report()).unwrap())).unwrap();
    insta::assert_json_snapshot!(value, { ".duration_ms" => "[duration]", ".cases[].duration_ms" => "[duration]" });
}

fn matrix() -> MatrixReport {
    let run = run_report();
    let column = |name: &str, results: Vec<CaseResult>, summary: &str| Column {
        name: name.into(),
        source: Source::ContainerdDir { dir: "/opt/containerd/bin".into() },
        source_version: Some("2.1.9~ds1-5".into()),
        oci_runtime: "runc".into(),
        runtime: Some(runtime()),
        skipped: None,
        setup_error: None,
        summary: summary.into(),
        expect: Some(Expected { outcome: Outcome::Conformant, kubernetes: false, user_namespaces: false, exceptions: BTreeMap::from([(CaseId { scenario: "gid-4294967294".into(), policy: Policy::Merge }, Verdict::Refused)]) }),
        deviations: Vec::new(),
        critest: Some(critest_says()),
        startup: Some(Duration::from_secs(3)),
        duration: Duration::from_secs(10),
        results,
    };
    let mut skipped = column("cri-o", Vec::new(), "not run on this machine: /opt/crio/bin/crio is missing");
    skipped.runtime = None;
    skipped.source_version = None;
    skipped.skipped = Some("/opt/crio/bin/crio is missing".into());
    skipped.expect = None;
    skipped.critest = None;
    let columns = vec![column("containerd-2.x-runc", run.cases.clone(), "non-conformant: 1 failures; refuses 1 Pods the Kubernetes API accepts"), skipped];
    let rows = run
        .cases
        .iter()
        .map(|r| Row {
            case: r.id.clone(),
            summary: r.summary.clone(),
            cells: vec![
                Some(Cell { verdict: r.judgement.verdict, label: r.label(), reasons: r.judgement.reasons.clone(), notes: r.judgement.notes.clone(), observed: vec!["first process `id`: uid=1000 gid=3000 groups={3000 4000}".into()] }),
                None,
            ],
        })
        .collect();
    let divergences = vec![Divergence {
        case: CaseId { scenario: "gid-4294967294".into(), policy: Policy::Merge },
        behaviours: vec![
            Behaviour { runtimes: vec!["containerd-1.7-runc".into()], attached: "uid=1000 gid=1000 groups={1000 60000 4294967294}".into(), rule: Rule::Model, verdicts: vec![Verdict::Pass], known_bugs: Vec::new(), refusal: None },
            Behaviour { runtimes: vec!["containerd-2.x-runc".into()], attached: "refused the Pod".into(), rule: Rule::Refused, verdicts: vec![Verdict::Refused], known_bugs: Vec::new(), refusal: Some("CreateContainer failed: uids and gids must be in range 0-2147483647".into()) },
        ],
        only_missing_feature: false,
    }];
    MatrixReport {
        schema_version: 2,
        harness_version: "0.0.0".into(),
        columns,
        rows,
        divergences,
        notes: vec!["kep-blog/strict: status.user lists groups out of ascending order on containerd-2.x-runc".into()],
        duration: Duration::from_secs(12),
    }
}

#[test]
fn matrix_markdown() {
    insta::assert_snapshot!(render(|out| matrix_report::write_markdown(out, &matrix()).unwrap()));
}

#[test]
fn matrix_html() {
    insta::assert_snapshot!(render(|out| matrix_report::write_html(out, &matrix()).unwrap()));
}

#[test]
fn matrix_json() {
    let value: serde_json::Value = serde_json::from_str(&render(|out| matrix_report::write_json(out, &matrix()).unwrap())).unwrap();
    insta::assert_json_snapshot!(value, { ".duration_ms" => "[duration]", ".columns[].duration_ms" => "[duration]", ".columns[].startup_ms" => "[duration]" });
}
