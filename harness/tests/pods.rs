//! Pods of several containers and shared sandboxes, without a runtime: how a scenario file
//! lists containers, how cases are grouped into Pods and sandboxes, and that a case in a shared
//! sandbox is sent exactly the sandbox config it would be sent alone (what kubelet sends for a
//! Pod: one sandbox config from the Pod's security context).

mod support;

use std::path::{Path, PathBuf};

use sgpc::driver::cri::{sandbox_config, CaseRequest};
use sgpc::driver::kube::{pod_manifest, KubePlan};
use sgpc::image::Recipe;
use sgpc::scenario::{Catalogue, CaseId, Policy, Scenario};

fn recipes() -> Vec<Recipe> {
    support::catalogue().images
}

fn parse(text: &str) -> Result<Vec<Scenario>, String> {
    Scenario::parse_all(Path::new("pod.yaml"), text, &recipes()).map_err(|e| e.to_string())
}

const POD: &str = "name: p\nsummary: s\npod:\n  securityContext: {runAsUser: 1000, runAsGroup: 3000}\n";

#[test]
fn each_container_of_a_pod_is_a_scenario_of_its_own_init_containers_first() {
    let scenarios = parse(&format!("{POD}containers:\n  - {{name: a, image: kep-blog}}\n  - {{name: b, image: two-users, securityContext: {{runAsUser: 1001}}}}\ninitContainers:\n  - {{name: i, image: no-group-file}}\n")).unwrap();
    let names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["p.i", "p.a", "p.b"]);
    assert!(scenarios[0].member.as_ref().unwrap().init && !scenarios[1].member.as_ref().unwrap().init);
    assert_eq!(scenarios[2].container.run_as_user, Some(1001));
    assert_eq!(scenarios[2].expect_merge.identity.groups.iter().collect::<Vec<_>>(), [3000, 61000], "the model reads each container's own image and uid");
    assert_eq!(scenarios[1].expect_merge.identity.groups.iter().collect::<Vec<_>>(), [3000, 50000]);
    assert!(scenarios.iter().all(|s| s.pod_name() == "p" && s.pod.run_as_user == Some(1000)));
}

#[test]
fn a_malformed_pod_is_an_error_naming_the_field() {
    let cases = [
        (format!("{POD}image: kep-blog\ncontainers:\n  - {{name: a, image: kep-blog}}\n"), "image", "names an image per container"),
        (format!("{POD}containers:\n  - {{name: a, image: kep-blog}}\n  - {{name: a, image: kep-blog}}\n"), "containers[1].name", "unique"),
        (format!("{POD}initContainers:\n  - {{name: a, image: kep-blog}}\ncontainers:\n  - {{name: a, image: kep-blog}}\n"), "containers[0].name", "initContainers[0]"),
        (format!("{POD}containers:\n  - {{name: prepare-x, image: kep-blog}}\n"), "containers[0].name", "prepare-"),
        (format!("{POD}containers:\n  - {{name: A, image: kep-blog}}\n"), "containers[0].name", "DNS-1123"),
        (format!("{POD}initContainers:\n  - {{name: a, image: kep-blog}}\n"), "containers", "at least one container"),
        (format!("{POD}containers:\n  - {{name: a, image: nope}}\n"), "containers[0].image", "no image recipe"),
        (format!("{POD}containers:\n  - {{name: a, image: kep-blog, securityContext: {{runAsUser: -1}}}}\n"), "containers[0].securityContext.runAsUser", "is not an id"),
        (format!("{POD}containers:\n  - name: a\n    image: kep-blog\n    expect:\n      strict: {{uid: 1000, gid: 3000, groups: [3000, 50000]}}\n"), "containers[0].expect.strict", "differs from the KEP model"),
        (format!("{POD}expect:\n  strict: {{uid: 1000, gid: 3000, groups: [3000]}}\ncontainers:\n  - {{name: a, image: kep-blog}}\n"), "expect", "per container"),
        (format!("{POD}container:\n  securityContext: {{runAsUser: 1}}\ncontainers:\n  - {{name: a, image: kep-blog}}\n"), "container.securityContext", "per container"),
        (format!("{POD}containers:\n{}", (0..9).map(|i| format!("  - {{name: c{i}, image: kep-blog}}\n")).collect::<String>()), "containers", "at most 8"),
        (POD.to_string(), "image", "missing"),
    ];
    for (text, field, words) in cases {
        let error = parse(&text).expect_err(&text);
        assert!(error.contains(field) && error.contains(words), "{text}\n-> {error}\n(expected the field {field} and {words:?})");
    }
}

#[test]
fn a_certification_run_names_the_containers_deviation_where_it_is_written() {
    let text = format!("{POD}containers:\n  - {{name: a, image: kep-blog}}\n  - name: b\n    image: kep-blog\n    expect:\n      strict: {{uid: 1000, gid: 3000, groups: [3000, 50000], deviation: a reason}}\n");
    let scenarios = parse(&text).unwrap();
    let catalogue = Catalogue { scenarios, images: recipes() };
    let error = catalogue.refuse_deviations(&catalogue.cases()).unwrap_err().to_string();
    assert!(error.contains("containers[1].expect.strict.deviation"), "{error}");
}

#[test]
fn a_pods_cases_run_together_per_policy_and_no_other_case_joins_them() {
    let catalogue = support::catalogue();
    let cases = catalogue.cases();
    for groups in [catalogue.pods(&cases), catalogue.sandboxes(&cases)] {
        let mut seen: Vec<CaseId> = groups.iter().flatten().cloned().collect();
        seen.sort();
        let mut all = cases.clone();
        all.sort();
        assert_eq!(seen, all, "every case in exactly one group");
        for group in &groups {
            let pods: Vec<Option<String>> = group.iter().map(|id| catalogue.scenario(&id.scenario).unwrap().member.as_ref().map(|m| m.pod.clone())).collect();
            if pods.iter().any(Option::is_some) {
                assert!(pods.iter().all(|p| *p == pods[0]), "a Pod of several shares with no other case: {group:?}");
                assert!(group.iter().all(|id| id.policy == group[0].policy));
                let inits: Vec<bool> = group.iter().map(|id| catalogue.scenario(&id.scenario).unwrap().member.as_ref().unwrap().init).collect();
                assert!(inits.windows(2).all(|w| w[0] >= w[1]), "init containers first: {group:?}");
            }
        }
    }
    let pod = catalogue.pods(&cases).into_iter().find(|g| g[0].scenario == "pod-init-container.init").unwrap();
    assert_eq!(pod.iter().map(ToString::to_string).collect::<Vec<_>>(), ["pod-init-container.init/default", "pod-init-container.main/default"]);
    assert!(catalogue.sandboxes(&cases).iter().any(|g| g.len() > 2), "the catalogue has one-container cases that share a sandbox");
}

/// The request a case would get, in the shared sandbox or alone.
fn request<'a>(catalogue: &'a Catalogue, id: &CaseId) -> CaseRequest<'a> {
    CaseRequest {
        case: id.to_string(),
        scenario: catalogue.scenario(&id.scenario).unwrap(),
        policy: id.policy,
        image_ref: String::new(),
        image_digests: sgpc::image::Digests { manifest: String::new(), config: String::new() },
        case_dir: PathBuf::from("/nonexistent"),
        container: "probe".into(),
        init: false,
        run_id: "sgpc-test".into(),
        runtime_handler: String::new(),
        cgroup_parent: String::new(),
        userns_slot: Some(1),
    }
}

#[test]
fn a_case_in_a_shared_sandbox_is_sent_the_sandbox_config_it_would_be_sent_alone() {
    let catalogue = support::catalogue();
    let cases = catalogue.cases();
    let mut shared = 0;
    for group in catalogue.sandboxes(&cases) {
        let sent = sandbox_config(&request(&catalogue, &group[0])).linux.unwrap().security_context.unwrap();
        for id in &group[1..] {
            let alone = sandbox_config(&request(&catalogue, id)).linux.unwrap().security_context.unwrap();
            assert_eq!(alone, sent, "{id} would be sent another sandbox security context than the sandbox of {} it runs in", group[0]);
            shared += 1;
        }
        // Default and Merge send the same CRI request (unset is Merge); Strict another.
        assert!(group.iter().all(|id| (id.policy == Policy::Strict) == (group[0].policy == Policy::Strict)), "{group:?}");
    }
    assert!(shared > 20, "only {shared} cases share a sandbox");
}

#[test]
fn the_containers_of_every_sandbox_have_names_of_their_own() {
    let catalogue = support::catalogue();
    let image = sgpc::image::ImageRecord { name: String::new(), reference: String::new(), manifest_digest: String::new(), config_digest: String::new() };
    for group in catalogue.sandboxes(&catalogue.cases()).into_iter().chain(catalogue.pods(&catalogue.cases())) {
        let cases: Vec<sgpc::case::Case<'_>> = group.iter().map(|id| sgpc::case::Case::resolve(&catalogue, id).unwrap()).collect();
        let mut names: Vec<String> = cases.iter().map(|case| sgpc::driver::Member { case, image: &image }.container_name_among(cases.len())).collect();
        names.sort();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "two containers of one sandbox share a name: {group:?}");
    }
}

#[test]
fn the_kube_level_builds_the_pod_as_written_init_containers_after_the_volume_preparation() {
    let catalogue = support::catalogue();
    let ids: Vec<CaseId> = ["pod-init-container.init", "pod-init-container.main"].iter().map(|s| CaseId { scenario: (*s).into(), policy: Policy::Strict }).collect();
    let plan = KubePlan::new(&catalogue, &ids, "sgpc-test").unwrap();
    let pod = pod_manifest(&plan.request(&catalogue, &ids).unwrap());
    assert_eq!(pod.metadata.name.as_deref(), Some("pod-init-container-strict"));
    let spec = pod.spec.unwrap();
    let names = |cs: &[k8s_openapi::api::core::v1::Container]| cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(spec.init_containers.as_deref().unwrap()), ["prepare-protected", "init"]);
    assert_eq!(names(&spec.containers), ["main"]);
    let case_env = |c: &k8s_openapi::api::core::v1::Container| c.env.as_ref().unwrap().iter().find(|e| e.name == "SGPC_CASE").unwrap().value.clone().unwrap();
    assert_eq!(case_env(&spec.init_containers.as_ref().unwrap()[1]), "pod-init-container.init/strict");
    assert_eq!(case_env(&spec.containers[0]), "pod-init-container.main/strict");
    assert_eq!(spec.security_context.unwrap().supplemental_groups_policy.as_deref(), Some("Strict"));
}
