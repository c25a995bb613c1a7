//! The evidence bundle: `sgpc verify` accepts a fresh one, names the file after a byte changes in a
//! report, an observation or the manifest, and names the case whose verdict moves when the
//! observations or the rules (the bundled catalogue) change under a correct manifest.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

mod support;

use sgpc::bundle::{self, CatalogueFiles, MANIFEST};
use sgpc::case::Case;
use sgpc::driver::RuntimeInfo;
use sgpc::identity::Identity;
use sgpc::image::ImageRecord;
use sgpc::observation::{IdentityObservation, Observations, Point};
use sgpc::outcome::{error_result, RunReport};
use sgpc::run::judge_observed;
use sgpc::scenario::{CaseId, Catalogue, Policy};
use sgpc::verdict::Verdict;

fn runtime() -> RuntimeInfo {
    RuntimeInfo {
        endpoint: "unix:///run/test.sock".into(),
        runtime_name: "containerd".into(),
        runtime_version: "2.1.9".into(),
        runtime_api_version: "v1".into(),
        supplemental_groups_policy: true,
        feature_per_node: false,
        no_user_namespaces: None,
        cri_status: None,
    }
}

/// kep-blog/strict as a conformant runtime shows it at every point, judged by this sgpc.
fn report(catalogue: &Catalogue) -> RunReport {
    report_observing(catalogue, &[3000, 4000], Verdict::Pass)
}

/// kep-blog/strict with `groups` at every point, judged by this sgpc as `verdict`.
fn report_observing(catalogue: &Catalogue, groups: &[u32], verdict: Verdict) -> RunReport {
    let id = CaseId { scenario: "kep-blog".into(), policy: Policy::Strict };
    let case = Case::resolve(catalogue, &id).unwrap();
    let image = ImageRecord { name: "kep-blog".into(), reference: "127.0.0.1:5000/sgpc/kep-blog@sha256:00".into(), manifest_digest: "sha256:00".into(), config_digest: "sha256:11".into() };
    let identity = Identity::observed(1000, 3000, groups.iter().copied());
    let identities = [Point::FirstProcessId, Point::FirstProcessKernel, Point::HostKernel, Point::ExecId, Point::CriStatus]
        .into_iter()
        .map(|point| IdentityObservation { point, identity: identity.clone(), raw_groups: groups.to_vec(), printed: String::new() })
        .collect();
    let observations = Observations { identities, ..Observations::default() };
    let (judgement, _) = judge_observed(&case, &runtime(), true, &image, &observations);
    assert_eq!(judgement.verdict, verdict, "{:?}", judgement.reasons);
    let mut result = error_result(&id, "", "");
    result.describe(case.scenario);
    result.image = Some(image.clone());
    result.observations = Some(observations);
    result.judgement = judgement;
    RunReport {
        schema_version: 1,
        harness_version: "0.0.0".into(),
        provisioned: None,
        runtime: Some(runtime()),
        images: vec![image],
        selection: sgpc::outcome::Selection::of(catalogue, std::slice::from_ref(&id), Some(&regex::Regex::new("^kep-blog/strict$").unwrap())),
        cases: vec![result],
        setup_error: None,
        critest: None,
        duration: Duration::from_secs(1),
    }
}

fn files(kind: &str) -> Vec<(PathBuf, String)> {
    sgpc::builtin::files(None, kind).unwrap()
}

fn fresh(dir: &Path) -> PathBuf {
    let catalogue = Catalogue::open(None, None).unwrap();
    let path = dir.join("bundle.tar.gz");
    bundle::write(&path, &report(&catalogue), &CatalogueFiles { scenarios: &files("scenarios"), images: &files("images") }).unwrap();
    path
}

fn unpack(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()));
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.insert(name, bytes);
    }
    out
}

fn pack(path: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::default()));
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

/// The manifest of the other files, as the bundle writes it: a forger who rewrites it too.
fn remanifest(files: &mut BTreeMap<String, Vec<u8>>) {
    files.remove(MANIFEST);
    let hex = |b: &[u8]| Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>();
    let manifest: String = files.iter().map(|(name, bytes)| format!("{}  {name}\n", hex(bytes))).collect();
    files.insert(MANIFEST.into(), manifest.into_bytes());
}

/// Rewrites one file of the bundle by text replacement (which must apply).
fn edit(files: &mut BTreeMap<String, Vec<u8>>, name: &str, from: &str, to: &str) {
    let text = String::from_utf8(files[name].clone()).unwrap();
    assert!(text.contains(from), "{name} lacks {from:?}");
    files.insert(name.into(), text.replacen(from, to, 1).into_bytes());
}

fn subjects(path: &Path) -> Vec<String> {
    bundle::verify(path).unwrap().findings.into_iter().map(|f| f.subject).collect()
}

/// A fleet's bundles, one per node: `sgpc verify` checks each and names, per bundle, the
/// runtime and the Strict cases it did not hold to (here the second node leaks the image's
/// group 50000 under Strict).
#[test]
fn several_bundles_say_which_node_does_not_hold_strict() {
    let dir = tempfile::tempdir().unwrap();
    let catalogue = Catalogue::open(None, None).unwrap();
    let (holds, leaks) = (dir.path().join("sgpc-node-a.tar.gz"), dir.path().join("sgpc-node-b.tar.gz"));
    let catalogue_files = CatalogueFiles { scenarios: &files("scenarios"), images: &files("images") };
    bundle::write(&holds, &report(&catalogue), &catalogue_files).unwrap();
    bundle::write(&leaks, &report_observing(&catalogue, &[3000, 4000, 50000], Verdict::Fail), &catalogue_files).unwrap();
    let mut unreachable = report(&catalogue);
    unreachable.runtime = None;
    unreachable.cases[0] = error_result(&unreachable.cases[0].id, "", "cannot connect");
    let unjudged = dir.path().join("sgpc-node-c.tar.gz");
    bundle::write(&unjudged, &unreachable, &catalogue_files).unwrap();
    let verify = |paths: &[&Path]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sgpc")).arg("verify").args(paths).output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (code, stdout) = verify(&[&holds, &leaks, &unjudged]);
    assert_eq!(code, Some(sgpc::outcome::exit_code::PASS), "every bundle is intact: {stdout}");
    assert!(stdout.contains(&format!("{} (containerd 2.1.9): yes\n", holds.display())), "{stdout}");
    assert!(stdout.contains(&format!("{} (containerd 2.1.9): NO: kep-blog/strict FAIL", leaks.display())), "{stdout}");
    assert!(stdout.contains(&format!("{} (runtime unreachable): not judged", unjudged.display())), "an unreachable runtime held nothing: {stdout}");

    let garbage = dir.path().join("garbage.tar.gz");
    std::fs::write(&garbage, "not a bundle").unwrap();
    let (code, stdout) = verify(&[&garbage, &holds]);
    assert_eq!(code, Some(sgpc::outcome::exit_code::ERROR), "{stdout}");
    assert!(stdout.contains(&format!("{}: unreadable", garbage.display())) && stdout.contains(&format!("{}: 0 findings", holds.display())), "one unreadable bundle does not hide the others: {stdout}");
}

#[test]
fn a_fresh_bundle_verifies_and_every_change_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = fresh(dir.path());
    let verification = bundle::verify(&path).unwrap();
    assert!(verification.findings.is_empty(), "{:?}", verification.findings);
    assert_eq!((verification.judged, verification.not_judged), (1, 0));
    assert!(verification.builtin_catalogue);
    let original = unpack(&path);
    assert!(original.contains_key("plugins/sgpc/results/global/junit.xml"), "sonobuoy's layout for a JUnit plugin");

    // A byte of a report or of an observation, the manifest left as it was: that file.
    let mut files = original.clone();
    edit(&mut files, "sgpc/report.json", "\"harness_version\": \"0.0.0\"", "\"harness_version\": \"0.0.1\"");
    pack(&path, &files);
    assert_eq!(subjects(&path), ["sgpc/report.json"]);
    // A status word nested below a passing case's output is text to JUnit readers, not its status.
    let mut files = original.clone();
    let junit = String::from_utf8(files["plugins/sgpc/results/global/junit.xml"].clone()).unwrap();
    let case = junit.find("<testcase").unwrap();
    let close = case + junit[case..].find('>').unwrap();
    let nested = if junit[..close].ends_with('/') {
        format!("{}><system-out><error/></system-out></testcase>{}", &junit[..close - 1], &junit[close + 1..])
    } else {
        format!("{}><system-out><error/></system-out>{}", &junit[..close], &junit[close + 1..])
    };
    files.insert("plugins/sgpc/results/global/junit.xml".into(), nested.into_bytes());
    remanifest(&mut files);
    pack(&path, &files);
    assert_eq!(subjects(&path), Vec::<String>::new(), "a nested <error/> is no status");
    let mut files = original.clone();
    edit(&mut files, "plugins/sgpc/results/global/junit.xml", "tests=\"1\"", "tests=\"2\"");
    pack(&path, &files);
    assert_eq!(subjects(&path), ["plugins/sgpc/results/global/junit.xml"]);

    // A byte of the manifest: the file it no longer matches.
    let mut files = original.clone();
    let manifest = String::from_utf8(files[MANIFEST].clone()).unwrap();
    let first_file = manifest.lines().next().unwrap().split_once("  ").unwrap().1.to_string();
    let flipped = if manifest.starts_with('0') { manifest.replacen('0', "1", 1) } else { format!("0{}", &manifest[1..]) };
    files.insert(MANIFEST.into(), flipped.into_bytes());
    pack(&path, &files);
    assert_eq!(subjects(&path), [first_file]);

    // Under a rewritten manifest: a JUnit file that says pass where the report says fail, and a
    // report that leaves out a chosen case, are each named.
    let mut files = original.clone();
    edit(&mut files, "sgpc/report.json", "\"kind\": \"PASS\"", "\"kind\": \"FAIL\"");
    remanifest(&mut files);
    pack(&path, &files);
    let found = subjects(&path);
    for named in ["plugins/sgpc/results/global/junit.xml", "plugins/sgpc/sonobuoy_results.yaml", "kep-blog/strict"] {
        assert!(found.contains(&named.to_string()), "{named} not named: {found:?}");
    }
    // sonobuoy's item tree rewritten under a rewritten manifest: every status, the case's
    // alone, the summary's alone (what `sonobuoy results` prints as the plugin's Status).
    let yaml = String::from_utf8(original["plugins/sgpc/sonobuoy_results.yaml"].clone()).unwrap();
    assert_eq!(yaml.matches("status: passed").count(), 4, "summary, file, suite, case:\n{yaml}");
    let last = yaml.rfind("status: passed").unwrap();
    let case_only = format!("{}status: failed{}", &yaml[..last], &yaml[last + "status: passed".len()..]);
    for rewritten in [yaml.replace("status: passed", "status: failed"), case_only, yaml.replacen("status: passed", "status: failed", 1)] {
        let mut files = original.clone();
        files.insert("plugins/sgpc/sonobuoy_results.yaml".into(), rewritten.into_bytes());
        remanifest(&mut files);
        pack(&path, &files);
        assert_eq!(subjects(&path), ["plugins/sgpc/sonobuoy_results.yaml"]);
    }
    let mut files = original.clone();
    edit(&mut files, "meta/info.json", "\"sgpc\"", "\"e2e\"");
    remanifest(&mut files);
    pack(&path, &files);
    assert_eq!(subjects(&path), ["meta/info.json"]);
    let mut files = original.clone();
    let mut report: serde_json::Value = serde_json::from_slice(&files["sgpc/report.json"]).unwrap();
    report["cases"] = serde_json::json!([]);
    files.insert("sgpc/report.json".into(), serde_json::to_vec_pretty(&report).unwrap());
    remanifest(&mut files);
    pack(&path, &files);
    let findings = bundle::verify(&path).unwrap().findings;
    assert!(findings.iter().any(|f| f.subject == "kep-blog/strict" && f.problem.contains("missing from the report")), "{findings:?}");

    // An observation rewritten under a rewritten manifest: the case whose verdict moves.
    let mut files = original.clone();
    let mut report: serde_json::Value = serde_json::from_slice(&files["sgpc/report.json"]).unwrap();
    let exec = report["cases"][0]["observations"]["identities"].as_array_mut().unwrap().iter_mut().find(|o| o["point"] == "exec-id").unwrap();
    exec["identity"]["groups"] = serde_json::json!([3000, 50000]);
    files.insert("sgpc/report.json".into(), serde_json::to_vec_pretty(&report).unwrap());
    remanifest(&mut files);
    pack(&path, &files);
    let findings = bundle::verify(&path).unwrap().findings;
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].subject, "kep-blog/strict");
    assert!(findings[0].problem.contains("recorded PASS") && findings[0].problem.contains("FAIL"), "{}", findings[0].problem);

    // A verdict turned into ERROR, its observations kept but its image dropped: judged again
    // (it was once passed over as "without observations"), and named.
    let mut files = original.clone();
    let mut report: serde_json::Value = serde_json::from_slice(&files["sgpc/report.json"]).unwrap();
    report["cases"][0]["image"] = serde_json::Value::Null;
    report["cases"][0]["verdict"]["kind"] = serde_json::json!("ERROR");
    files.insert("sgpc/report.json".into(), serde_json::to_vec_pretty(&report).unwrap());
    remanifest(&mut files);
    pack(&path, &files);
    let verification = bundle::verify(&path).unwrap();
    assert!(verification.findings.iter().any(|f| f.subject == "kep-blog/strict"), "{:?}", verification.findings);
    assert_eq!(verification.not_judged, 0);

    // A rule changed (the bundled scenario asks for another group): the case whose verdict moves.
    let mut files = original.clone();
    edit(&mut files, "sgpc/catalogue/scenarios/kep-blog.yaml", "supplementalGroups: [4000]", "supplementalGroups: [4001]");
    edit(&mut files, "sgpc/catalogue/scenarios/kep-blog.yaml", "groups: [3000, 4000, 50000]", "groups: [3000, 4001, 50000]");
    edit(&mut files, "sgpc/catalogue/scenarios/kep-blog.yaml", "groups: [3000, 4000]}", "groups: [3000, 4001]}");
    remanifest(&mut files);
    pack(&path, &files);
    assert_eq!(subjects(&path), ["sgpc/catalogue", "kep-blog/strict"], "the catalogue is not the report's, and the case moves under it");
    assert!(!bundle::verify(&path).unwrap().builtin_catalogue, "its rules are not sgpc's own");
}

/// sonobuoy's own CLI, built from its Go module, reads a bundle as one of its results archives:
/// its summary counts what sgpc's verdicts are in sonobuoy's terms (FAIL and ERROR failed, NOT
/// RUN skipped) and names the failed cases; its detailed mode lists every case once.
#[test]
fn sonobuoy_results_reads_a_bundle_as_its_own_archive() {
    let sonobuoy = support::sonobuoy();
    let dir = tempfile::tempdir().unwrap();
    let catalogue = Catalogue::open(None, None).unwrap();
    let mut report = report_observing(&catalogue, &[3000, 4000, 50000], Verdict::Fail);
    let merge = CaseId { scenario: "kep-blog".into(), policy: Policy::Merge };
    report.cases.push(error_result(&merge, "", "the sandbox did not start"));
    let mut not_run = error_result(&CaseId { scenario: "kep-blog".into(), policy: Policy::Default }, "", "");
    not_run.judgement = sgpc::verdict::Judgement::not_run("the runtime reports no such feature");
    report.cases.push(not_run);
    let mut passed = report_observing(&catalogue, &[3000, 4000], Verdict::Pass).cases.remove(0);
    passed.id.scenario = "kep-blog-again".into();
    report.cases.push(passed);
    let path = dir.path().join("sgpc-node-a.tar.gz");
    bundle::write(&path, &report, &CatalogueFiles { scenarios: &files("scenarios"), images: &files("images") }).unwrap();

    let results = |args: &[&str]| {
        let output = std::process::Command::new(&sonobuoy).arg("results").arg(&path).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "sonobuoy results {args:?}: {stderr}");
        String::from_utf8(output.stdout).unwrap()
    };
    let summary = results(&["--plugin", "sgpc"]);
    for line in ["Plugin: sgpc", "Status: failed", "Total: 4", "Passed: 1", "Failed: 2", "Skipped: 1"] {
        assert!(summary.lines().any(|l| l == line), "no {line:?} in sonobuoy's summary:\n{summary}");
    }
    let failed: Vec<&str> = summary.split_once("Failed tests:\n").map(|(_, rest)| rest.lines().filter(|l| !l.is_empty()).collect()).unwrap_or_default();
    assert_eq!(failed, ["kep-blog/strict", "kep-blog/merge"], "{summary}");

    let detailed = results(&["--plugin", "sgpc", "--mode", "detailed"]);
    let mut listed: Vec<(String, String)> = detailed
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .map(|item| (item["name"].as_str().unwrap().to_string(), item["status"].as_str().unwrap().to_string()))
        .collect();
    listed.sort();
    let want = [("kep-blog-again/strict", "passed"), ("kep-blog/default", "skipped"), ("kep-blog/merge", "failed"), ("kep-blog/strict", "failed")];
    assert_eq!(listed, want.map(|(n, s)| (n.to_string(), s.to_string())), "{detailed}");
    // Without --plugin, sonobuoy reads the plugin list from the bundle's meta/info.json.
    assert!(results(&[]).contains("Plugin: sgpc"));
}

#[test]
fn a_bundle_is_input_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.tar.gz");
    let mut files = BTreeMap::new();
    files.insert("../escape".to_string(), b"x".to_vec());
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::default()));
    for (name, bytes) in &files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        // `append_data` refuses `..`; a hostile bundle writes the name itself.
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        tar.append(&header, bytes.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    let err = bundle::verify(&path).unwrap_err().to_string();
    assert!(err.contains("clean relative path"), "{err}");
    std::fs::write(&path, b"not a gzip stream").unwrap();
    assert!(bundle::verify(&path).is_err());

    // A second gzip member after an intact bundle: `tar` and sonobuoy read it, so verify does.
    let honest = fresh(dir.path());
    let mut appended = std::fs::read(&honest).unwrap();
    let mut forged = BTreeMap::new();
    forged.insert("sgpc/report.json".to_string(), b"{}".to_vec());
    let second = dir.path().join("second.tar.gz");
    pack(&second, &forged);
    appended.extend(std::fs::read(&second).unwrap());
    std::fs::write(&path, appended).unwrap();
    let err = bundle::verify(&path).unwrap_err().to_string();
    assert!(err.contains("follow the archive's end"), "{err}");

    // A recorded filter longer than a run takes is refused as a finding, not compiled (its
    // text, not just its compiled size, is held small: 20 MB of one once took 4.9 GB).
    let mut files = unpack(&honest);
    let mut report: serde_json::Value = serde_json::from_slice(&files["sgpc/report.json"]).unwrap();
    report["selection"]["filter"] = serde_json::json!("(a)".repeat(2000));
    files.insert("sgpc/report.json".into(), serde_json::to_vec(&report).unwrap());
    remanifest(&mut files);
    pack(&path, &files);
    let findings = bundle::verify(&path).unwrap().findings;
    assert!(findings.iter().any(|f| f.problem.contains("selection.filter")), "{findings:?}");
}

/// A run whose runtime never answered can only hold ERRORs without observations: a forger who
/// turns them into PASS, in every file and the manifest, is caught.
#[test]
fn a_bundle_without_a_runtime_holds_only_errors() {
    let dir = tempfile::tempdir().unwrap();
    let catalogue = Catalogue::open(None, None).unwrap();
    let mut unreachable = report(&catalogue);
    unreachable.runtime = None;
    unreachable.cases[0] = error_result(&unreachable.cases[0].id, "", "cannot connect");
    let path = dir.path().join("bundle.tar.gz");
    bundle::write(&path, &unreachable, &CatalogueFiles { scenarios: &files("scenarios"), images: &files("images") }).unwrap();
    assert_eq!(subjects(&path), Vec::<String>::new());
    let mut forged = report(&catalogue);
    forged.runtime = None;
    bundle::write(&path, &forged, &CatalogueFiles { scenarios: &files("scenarios"), images: &files("images") }).unwrap();
    let findings = bundle::verify(&path).unwrap().findings;
    assert!(findings.iter().any(|f| f.subject == "kep-blog/strict" && f.problem.contains("never answered")), "{findings:?}");
}

/// A genuine bundle of a run that stopped before a `hostUsers: false` case ran (set-up failed
/// late, or a signal) on a runtime without user namespaces: the case is ERROR without
/// observations, and verify has nothing to judge, no finding to make. A JUnit file that lists one
/// case twice and leaves another out is named.
#[test]
fn an_error_before_a_case_ran_is_nothing_to_judge() {
    let dir = tempfile::tempdir().unwrap();
    let catalogue = Catalogue::open(None, None).unwrap();
    let mut report = report(&catalogue);
    let userns = CaseId { scenario: "userns-kep-blog".into(), policy: Policy::Strict };
    report.cases.push(error_result(&userns, "", "interrupted by SIGTERM"));
    report.runtime.as_mut().unwrap().no_user_namespaces = Some("no Pod network".into());
    let chosen = [report.cases[0].id.clone(), userns];
    report.selection = sgpc::outcome::Selection::of(&catalogue, &chosen, Some(&regex::Regex::new("^(kep-blog|userns-kep-blog)/strict$").unwrap()));
    let path = dir.path().join("bundle.tar.gz");
    bundle::write(&path, &report, &CatalogueFiles { scenarios: &files("scenarios"), images: &files("images") }).unwrap();
    let verification = bundle::verify(&path).unwrap();
    assert!(verification.findings.is_empty(), "{:?}", verification.findings);
    assert_eq!((verification.judged, verification.not_judged), (1, 1));
    assert_eq!(verification.strict, bundle::StrictHeld::NotJudged, "a Strict case that is sgpc's ERROR says nothing of Strict");

    let mut files = unpack(&path);
    edit(&mut files, "plugins/sgpc/results/global/junit.xml", "name=\"userns-kep-blog/strict\"", "name=\"kep-blog/strict\"");
    remanifest(&mut files);
    pack(&path, &files);
    let problems: Vec<String> = bundle::verify(&path).unwrap().findings.into_iter().map(|f| f.problem).collect();
    assert!(problems.iter().any(|p| p.contains("userns-kep-blog/strict is missing")), "{problems:?}");
}
