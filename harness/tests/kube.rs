//! The Kubernetes level, tested without a cluster (none can run on these machines): every
//! manifest of the catalogue field by field, and the interpretation of real-shaped API objects.
//! The objects below are typed k8s-openapi values built from JSON in the shape the API server
//! returns (field names and nesting as in the KEP's examples and kubelet's rejection); they are
//! recorded shapes, not a live run.

mod support;

use std::process::Command;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use serde_json::json;
use sgpc::driver::{Driver, DriverError, Member, RuntimeInfo};
use sgpc::driver::kube::{observations, pod_manifest, KubeFacts, KubePlan};
use sgpc::observation::Observations;
use sgpc::provision::kind::{self, ClusterSpec};
use sgpc::scenario::{CaseId, Policy};
use sgpc::verdict::admission::{REJECTION_MESSAGE, REJECTION_REASON};
use sgpc::verdict::Verdict;

fn plan() -> (sgpc::scenario::Catalogue, KubePlan) {
    let catalogue = support::catalogue();
    let plan = KubePlan::new(&catalogue, &catalogue.cases(), "sgpc-test").unwrap();
    (catalogue, plan)
}

#[test]
fn every_manifest_carries_the_scenario_field_by_field() {
    let (catalogue, plan) = plan();
    for id in catalogue.cases() {
        let s = catalogue.scenario(&id.scenario).unwrap();
        let pod = pod_manifest(&plan.request(&catalogue, std::slice::from_ref(&id)).unwrap());
        let spec = pod.spec.as_ref().unwrap();
        let sc = spec.security_context.as_ref().unwrap();
        let name = format!("{id}");
        assert_eq!(pod.metadata.name.as_deref(), Some(format!("{}-{}", s.pod_name(), id.policy).as_str()));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("sgpc-test"));
        assert_eq!(pod.metadata.labels.as_ref().unwrap()["sgpc.io/run"], "sgpc-test");
        let want_policy = match id.policy {
            Policy::Default => None,
            Policy::Merge => Some("Merge"),
            Policy::Strict => Some("Strict"),
        };
        assert_eq!(sc.supplemental_groups_policy.as_deref(), want_policy, "{name}");
        assert_eq!(sc.run_as_user, s.pod.run_as_user.map(i64::from), "{name}");
        assert_eq!(sc.run_as_group, s.pod.run_as_group.map(i64::from), "{name}");
        assert_eq!(sc.fs_group, s.pod.fs_group.map(i64::from), "{name}");
        assert_eq!(spec.host_users, s.pod.host_users, "{name}");
        let sup: Vec<i64> = s.pod.supplemental_groups.iter().map(|&g| i64::from(g)).collect();
        assert_eq!(sc.supplemental_groups.clone().unwrap_or_default(), sup, "{name}");
        // A container of a Pod of several, run alone here, keeps its name and its list.
        let probe = match &s.member {
            Some(m) if m.init => spec.init_containers.as_ref().unwrap().iter().find(|c| c.name == m.container).unwrap(),
            Some(m) => spec.containers.iter().find(|c| c.name == m.container).unwrap(),
            None => &spec.containers[0],
        };
        assert_eq!(probe.name, s.member.as_ref().map_or("probe", |m| m.container.as_str()), "{name}");
        assert_eq!(probe.image_pull_policy.as_deref(), Some("Never"));
        assert!(probe.image.as_deref().unwrap().starts_with(&format!("sgpc.local/sgpc/{}:", s.image)), "{name}");
        assert_eq!(probe.command.as_ref().unwrap(), &sgpc::observation::first_process_command());
        let env = probe.env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "SGPC_CASE" && e.value.as_deref() == Some(name.as_str())), "{name}");
        let csc = probe.security_context.as_ref();
        assert_eq!(csc.and_then(|c| c.run_as_user), s.container.run_as_user.map(i64::from), "{name}");
        assert_eq!(csc.and_then(|c| c.run_as_group), s.container.run_as_group.map(i64::from), "{name}");
        assert_eq!(spec.volumes.as_ref().map(Vec::len).unwrap_or(0), s.volumes.len(), "{name}");
        for v in &s.volumes {
            let init = spec.init_containers.as_ref().unwrap().iter().find(|c| c.name == format!("prepare-{}", v.name)).unwrap();
            // `sgpc-probe prepare DIR FILE TEXT GID FILE_MODE DIR_MODE`: no shell.
            let command = init.command.as_ref().unwrap();
            let (dir_mode, token_mode) = if v.negative_group_permission { ("755", "604") } else { ("70", "40") };
            assert_eq!(command[..4], [sgpc::image::PROBE_PATH, "prepare", "/volume", "token"], "{command:?}");
            assert_eq!(command[5..], [v.gid.to_string(), token_mode.to_string(), dir_mode.to_string()], "{command:?}");
            assert_eq!(init.security_context.as_ref().unwrap().run_as_user, Some(0));
            assert!(probe.volume_mounts.as_ref().unwrap().iter().any(|m| m.mount_path == v.mount_path && m.read_only == Some(true)));
        }
    }
}

#[test]
fn dry_run_prints_the_namespace_and_every_pod() {
    let output = Command::new(support::sgpc_binary()).current_dir(support::repo_root()).args(["run", "--kube", "--dry-run"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let docs: Vec<&str> = text.split("---\n").filter(|d| !d.trim().is_empty()).collect();
    let catalogue = support::catalogue();
    assert_eq!(docs.len(), 1 + catalogue.pods(&catalogue.cases()).len(), "a Pod per case, but one per Pod of several containers");
    assert!(docs[0].contains("kind: Namespace"));
    let pods: Vec<Pod> = docs[1..].iter().map(|d| serde_saphyr::from_str(d).unwrap()).collect();
    assert!(pods.iter().all(|p| p.metadata.namespace == docs[0].lines().find_map(|l| l.trim().strip_prefix("name: ")).map(str::to_string)));
}

// ---- recorded shapes --------------------------------------------------------------------

/// The KEP blog's Pod after it ran: status.containerStatuses[].user as the KEP documents it.
fn recorded_pod(policy: Option<&str>, status_groups: &[i64]) -> Pod {
    let mut sc = json!({"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000]});
    if let Some(p) = policy {
        sc["supplementalGroupsPolicy"] = json!(p);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kep-blog-strict", "namespace": "sgpc-test"},
        "spec": {"nodeName": "kind-control-plane", "securityContext": sc,
                 "containers": [{"name": "probe", "image": "sgpc.local/sgpc/kep-blog:x"}]},
        "status": {"phase": "Running", "containerStatuses": [{
            "name": "probe", "ready": true, "restartCount": 0, "image": "sgpc.local/sgpc/kep-blog:x", "imageID": "",
            "user": {"linux": {"uid": 1000, "gid": 3000, "supplementalGroups": status_groups}}}]}
    }))
    .unwrap()
}

/// A Pod kubelet rejected: phase, reason and message exactly as kubelet sets them.
fn recorded_rejected_pod() -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kep-blog-strict", "namespace": "sgpc-test"},
        "spec": {"nodeName": "kind-control-plane", "securityContext": {"runAsUser": 1000, "supplementalGroupsPolicy": "Strict"},
                 "containers": [{"name": "probe"}]},
        "status": {"phase": "Failed", "reason": REJECTION_REASON, "message": REJECTION_MESSAGE}
    }))
    .unwrap()
}

fn recorded_warning_event() -> Event {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "kep-blog-strict.1", "namespace": "sgpc-test"},
        "involvedObject": {"kind": "Pod", "name": "kep-blog-strict", "namespace": "sgpc-test"},
        "type": "Warning", "reason": REJECTION_REASON, "message": REJECTION_MESSAGE
    }))
    .unwrap()
}

fn recorded_node(feature: Option<bool>) -> Node {
    let mut status = json!({"nodeInfo": {"containerRuntimeVersion": "containerd://2.1.4", "kubeletVersion": "v1.33.1",
        "architecture": "amd64", "bootID": "", "kernelVersion": "", "kubeProxyVersion": "", "machineID": "", "operatingSystem": "linux", "osImage": "", "systemUUID": ""}});
    if let Some(f) = feature {
        status["features"] = json!({"supplementalGroupsPolicy": f});
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "kind-control-plane"}, "status": status})).unwrap()
}

/// What the probe prints for an identity (its `id` line and its /proc/self/status lines).
fn probe_output(case: &str, groups: &[u32]) -> String {
    let list = groups.iter().map(u32::to_string).collect::<Vec<_>>();
    format!(
        "sgpc-case={case}\nsgpc-id=uid=1000 gid=3000 groups={}\nsgpc-status-Uid:\t1000\t1000\t1000\t1000\nsgpc-status-Gid:\t3000\t3000\t3000\t3000\nsgpc-status-Groups:\t{}\nsgpc-end\n",
        list.join(","),
        list.join(" ")
    )
}


fn facts(pod: Pod, node: Option<bool>, groups: &[u32], minor: u32) -> KubeFacts {
    KubeFacts {
        container: "probe".into(),
        init: false,
        pod,
        node: Some(recorded_node(node)),
        events: vec![],
        log: Some(probe_output("kep-blog/strict", groups)),
        exec: Some(probe_output("kep-blog/strict", groups)),
        server_minor: minor,
        refusal: None,
    }
}

/// kubelet's Warning event when the runtime refused the probe container, as recorded live on
/// containerd 2.1.9 under kubelet v1.37.2 (`gid-2147483648/default`): the Pod's own status could
/// not be written (the API server refused its `status.user`), the event was.
fn failed_event(container: &str, component: &str) -> Event {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "gid-2147483648-default.1", "namespace": "sgpc-x"},
        "involvedObject": {"kind": "Pod", "name": "gid-2147483648-default", "fieldPath": format!("spec.containers{{{container}}}")},
        "type": "Warning", "reason": "Failed", "source": {"component": component},
        "message": "Error: failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: unable to setup user: uids and gids must be in range 0-2147483647"
    }))
    .unwrap()
}

#[test]
fn kubelets_failed_event_about_the_probe_is_the_runtimes_refusal_and_nothing_else_is() {
    let refusal = sgpc::driver::kube::event_refusal(&[failed_event("probe", "kubelet")], "spec.containers{probe}").expect("a refusal");
    assert!(refusal.message.starts_with("failed to create containerd task"), "{}", refusal.message);
    assert_eq!(refusal.image_id, None);
    assert_eq!(sgpc::driver::kube::event_refusal(&[failed_event("prepare-data", "kubelet")], "spec.containers{probe}"), None, "another container's failure");
    assert_eq!(sgpc::driver::kube::event_refusal(&[failed_event("probe", "default-scheduler")], "spec.containers{probe}"), None, "not kubelet's");
}

/// The Kubernetes level's driver with the cluster replaced by recorded API objects: what
/// `KubeRun` reports about itself, and its conversion of the facts into observations.
struct Recorded {
    facts: KubeFacts,
    runtime: RuntimeInfo,
}

impl Driver for Recorded {
    fn runtime(&self) -> &RuntimeInfo {
        &self.runtime
    }

    fn reads_host_proc(&self) -> bool {
        false
    }

    async fn run_pod(&self, members: &[Member<'_, '_>]) -> Vec<Result<Observations, DriverError>> {
        members.iter().map(|m| Ok(observations(&m.case.id, &self.facts)?)).collect()
    }
}

/// The verdict the runner gives kep-blog/strict on these facts.
fn judge(f: &KubeFacts) -> sgpc::verdict::Judgement {
    let (catalogue, plan) = plan();
    let runtime = RuntimeInfo { endpoint: "recorded".into(), runtime_name: "kubernetes".into(), runtime_version: format!("1.{}", f.server_minor), runtime_api_version: "v1".into(), supplemental_groups_policy: false, feature_per_node: true, no_user_namespaces: None, cri_status: None };
    let driver = Recorded { facts: f.clone(), runtime };
    let id = CaseId { scenario: "kep-blog".into(), policy: Policy::Strict };
    let result = futures::executor::block_on(sgpc::run::run_case(&driver, &catalogue, &plan.images, &id));
    result.judgement
}

#[test]
fn strict_honoured_with_status_user_is_pass() {
    let j = judge(&facts(recorded_pod(Some("Strict"), &[3000, 4000]), Some(true), &[3000, 4000], 33));
    assert_eq!(j.verdict, Verdict::Pass, "{j:?}");
}

#[test]
fn status_user_that_disagrees_with_the_process_is_fail() {
    let j = judge(&facts(recorded_pod(Some("Strict"), &[3000, 4000, 50000]), Some(true), &[3000, 4000], 33));
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(j.reasons.iter().any(|r| r.contains("Pod status.containerStatuses[].user")), "{:?}", j.reasons);
}

#[test]
fn leak_on_a_node_that_advertises_the_feature_is_fail() {
    let j = judge(&facts(recorded_pod(Some("Strict"), &[3000, 4000, 50000]), Some(true), &[3000, 4000, 50000], 34));
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(j.reasons.iter().any(|r| r.contains("+50000 from image /etc/group")), "{:?}", j.reasons);
}

#[test]
fn rejection_with_warning_event_is_rejected() {
    let mut f = facts(recorded_rejected_pod(), None, &[], 33);
    f.log = None;
    f.exec = None;
    f.events = vec![recorded_warning_event()];
    let j = judge(&f);
    assert_eq!(j.verdict, Verdict::Rejected, "{j:?}");
}

#[test]
fn rejection_without_the_event_or_on_a_supporting_node_is_fail() {
    let mut f = facts(recorded_rejected_pod(), None, &[], 33);
    f.log = None;
    let j = judge(&f);
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(j.reasons[0].contains("without a Warning event"), "{:?}", j.reasons);
    f.events = vec![recorded_warning_event()];
    f.node = Some(recorded_node(Some(true)));
    assert_eq!(judge(&f).verdict, Verdict::Fail);
}

#[test]
fn strict_pod_running_on_unsupporting_node_of_1_33_is_fail() {
    let j = judge(&facts(recorded_pod(Some("Strict"), &[]), None, &[3000, 4000, 50000], 33));
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(j.reasons[0].contains("must reject it"), "{:?}", j.reasons);
}

#[test]
fn dropped_policy_on_1_32_is_unsupported_with_leak() {
    // Feature gate off: the API server stored the Pod without the field; Strict became Merge.
    let mut f = facts(recorded_pod(None, &[]), None, &[3000, 4000, 50000], 32);
    f.pod.status.as_mut().unwrap().container_statuses.as_mut().unwrap()[0].user = None;
    let j = judge(&f);
    assert_eq!(j.verdict, Verdict::Unsupported { leak: true }, "{j:?}");
    assert!(j.notes.iter().any(|n| n.contains("dropped")), "{:?}", j.notes);
}

#[test]
fn pod_that_never_ran_is_error() {
    let mut f = facts(recorded_pod(Some("Strict"), &[]), Some(true), &[], 33);
    f.pod.status.as_mut().unwrap().phase = Some("Pending".into());
    f.log = None;
    f.exec = None;
    assert_eq!(judge(&f).verdict, Verdict::Error);
}

#[test]
fn output_of_another_case_is_error() {
    let mut f = facts(recorded_pod(Some("Strict"), &[3000, 4000]), Some(true), &[3000, 4000], 33);
    f.exec = Some(probe_output("kep-blog/merge", &[3000, 4000]));
    assert_eq!(judge(&f).verdict, Verdict::Error);
}

// ---- kind --------------------------------------------------------------------------------

#[test]
fn kind_config_switches_the_gate_on_only_where_it_is_off_by_default() {
    let spec = |minor, crio| ClusterSpec { name: "sgpc-x".into(), node_image: format!("kindest/node:v1.{minor}.0"), minor, crio };
    let old: serde_json::Value = serde_saphyr::from_str(&kind::config(&spec(32, false))).unwrap();
    assert_eq!(old["featureGates"]["SupplementalGroupsPolicy"], true);
    assert_eq!(old["nodes"][0]["image"], "kindest/node:v1.32.0");
    let new: serde_json::Value = serde_saphyr::from_str(&kind::config(&spec(33, false))).unwrap();
    assert!(new.get("featureGates").is_none());
    let crio: serde_json::Value = serde_saphyr::from_str(&kind::config(&spec(33, true))).unwrap();
    assert!(crio["nodes"][0]["kubeadmConfigPatches"][0].as_str().unwrap().contains("unix:///var/run/crio/crio.sock"));
    let top: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(support::repo_root().join("kind-config.yaml")).unwrap()).unwrap();
    assert_eq!(top["featureGates"]["SupplementalGroupsPolicy"], true);
}

#[test]
fn kind_commands() {
    let spec = ClusterSpec { name: "sgpc-v1-33".into(), node_image: "kindest/node:v1.33.1".into(), minor: 33, crio: false };
    assert_eq!(kind::create_args(&spec, std::path::Path::new("/tmp/c.yaml")), ["create", "cluster", "--name", "sgpc-v1-33", "--config", "/tmp/c.yaml", "--wait", "180s"]);
    assert_eq!(kind::load_args(&spec, std::path::Path::new("/tmp/a.oci.tar")), ["load", "image-archive", "/tmp/a.oci.tar", "--name", "sgpc-v1-33"]);
    assert_eq!(kind::delete_args(&spec), ["delete", "cluster", "--name", "sgpc-v1-33"]);
}

#[test]
fn missing_kind_is_named_at_once() {
    let empty = tempfile::tempdir().unwrap();
    let err = kind::find_kind_in(empty.path().as_os_str()).unwrap_err().to_string();
    assert!(err.contains("`kind` is not on PATH"), "{err}");
    std::fs::write(empty.path().join("kind"), "").unwrap();
    assert_eq!(kind::find_kind_in(empty.path().as_os_str()).unwrap(), empty.path().join("kind"));
}

#[test]
fn every_case_has_a_pod_request() {
    let (catalogue, plan) = plan();
    let ids: Vec<CaseId> = catalogue.cases();
    assert!(ids.iter().all(|id| plan.request(&catalogue, std::slice::from_ref(id)).is_ok()));
}

#[test]
fn kind_flag_without_kind_fails_at_once_naming_it() {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(support::sgpc_binary())
        .current_dir(support::repo_root())
        .env("PATH", empty.path())
        .args(["run", "--kube", "--kind", "kindest/node:v1.33.1"])
        .output()
        .unwrap();
    // A set-up failure like any other: the terminal names it and every case is ERROR.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(sgpc::outcome::exit_code::ERROR), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("ERROR `kind` is not on PATH"), "{stdout}");
    let cases = support::catalogue().cases().len();
    assert!(stdout.contains(&format!("0 passed, 0 failed, 0 unsupported (0 leak), {cases} errors")), "{stdout}");
}

#[test]
fn node_image_tags_give_the_minor_version() {
    assert_eq!(kind::minor_of("kindest/node:v1.33.1"), Some(33));
    assert_eq!(kind::spec_for("kindest/node:v1.31.6", false).unwrap().name, "sgpc-v1-31");
    assert!(kind::spec_for("kindest/node:latest", false).is_err());
}

/// A cluster sgpc cannot reach is a failed set-up, reported like a CRI one: every case ERROR,
/// the reason once (kube-rs errors print their cause, which must not be repeated), exit 2.
#[test]
fn an_unreadable_kubeconfig_is_a_failed_set_up_with_its_reason_once() {
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("report.json");
    let output = Command::new(support::sgpc_binary())
        .current_dir(support::repo_root())
        .args(["run", "--kube", "--kubeconfig", "/nonexistent/kubeconfig", "--filter", "kep-blog/strict", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(sgpc::outcome::exit_code::ERROR), "{stdout}");
    assert_eq!(stdout.matches("No such file or directory").count(), 1, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(report["setup_error"].as_str().unwrap().starts_with("reading kubeconfig /nonexistent/kubeconfig"), "{report}");
    assert_eq!(report["cases"][0]["verdict"]["kind"], "ERROR", "{report}");
}

/// A node as the API server returns it, with its runtime handlers (recorded shape).
fn node_with_handlers(name: &str, handlers: serde_json::Value) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name}, "status": {"runtimeHandlers": handlers}})).unwrap()
}

/// `hostUsers: false` runs only where every node's default handler reports user namespaces.
#[test]
fn user_namespaced_pods_need_every_nodes_default_handler_to_report_them() {
    use sgpc::driver::kube::nodes_without_user_namespaces;
    let yes = node_with_handlers("a", json!([{"name": "", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": true}}, {"name": "runc", "features": {"userNamespaces": true}}]));
    let named_only = node_with_handlers("b", json!([{"name": "runc", "features": {"userNamespaces": true}}]));
    let no = node_with_handlers("c", json!([{"name": "", "features": {"userNamespaces": false}}]));
    let silent: Node = serde_json::from_value(json!({"metadata": {"name": "d"}, "status": {}})).unwrap();
    assert_eq!(nodes_without_user_namespaces(std::slice::from_ref(&yes)), None);
    for lacking in [named_only, no, silent] {
        let why = nodes_without_user_namespaces(&[yes.clone(), lacking.clone()]).expect("one node lacks them");
        let name = lacking.metadata.name.clone().unwrap();
        assert!(why.contains(&format!("node {name} does not report")) && !why.contains("node a"), "{why}");
    }
    assert!(nodes_without_user_namespaces(&[]).is_some(), "no node, no user namespaces");
}
