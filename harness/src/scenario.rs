//! Scenarios (`scenarios/*.yaml`): one conformance case written in Pod terms, with the identity
//! expected under each policy.
//!
//! Loading is two-staged: raw serde structs that mirror the file (unknown fields rejected), then
//! validated types with ids checked (a Pod's to the Kubernetes API's 0..=2147483647, any other to
//! 0..=4294967294) and images resolved.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::identity::{GroupSet, Identity, MAX_ID, MAX_POD_ID};
use crate::image::{self, BuiltImage, ImageContent, Recipe};
use crate::input::{self, InputError};
use crate::oracle;
pub use crate::pod::{Access, ContainerSecurity, PodSecurity, Policy, Volume};

type RawId = Spanned<i64>;


#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawScenario {
    name: String,
    summary: String,
    /// The image of a Pod with one container; a Pod of several names one per container.
    image: Option<Spanned<String>>,
    /// Where the case's rules come from: KEP section, API doc, OCI spec, upstream issue.
    #[serde(default)]
    references: Vec<String>,
    /// One sentence per policy saying what the runtime should do, in critest's style.
    #[serde(default)]
    spec: RawSpec,
    #[serde(default)]
    pod: RawPod,
    #[serde(default)]
    container: RawContainer,
    #[serde(default)]
    volumes: Vec<RawVolume>,
    /// Omitted (or one policy omitted): the KEP model's derivation is the expectation.
    #[serde(default)]
    expect: RawExpect,
    /// A Pod of several containers, each its own case (instead of `image`/`container`/`expect`).
    #[serde(default)]
    containers: Vec<RawPodContainer>,
    /// Run to completion, in order, before `containers` start (Kubernetes `initContainers`).
    #[serde(default)]
    init_containers: Vec<RawPodContainer>,
}

/// One container of a Pod of several: `spec.containers[]` or `spec.initContainers[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPodContainer {
    name: String,
    image: Spanned<String>,
    #[serde(default)]
    security_context: RawContainerSecurityContext,
    #[serde(default)]
    expect: RawExpect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    merge: Option<String>,
    strict: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPod {
    #[serde(default)]
    security_context: RawPodSecurityContext,
    host_users: Option<bool>,
}

/// `supplementalGroupsPolicy` as the API spells it (the API server rejects other spellings).
#[derive(Debug, Clone, Copy, Deserialize)]
enum ApiPolicy {
    Merge,
    Strict,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPodSecurityContext {
    /// Pins the scenario to one policy; unset, it runs under default, Merge and Strict.
    supplemental_groups_policy: Option<ApiPolicy>,
    run_as_user: Option<RawId>,
    run_as_group: Option<RawId>,
    #[serde(default)]
    supplemental_groups: Vec<RawId>,
    fs_group: Option<RawId>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawContainer {
    #[serde(default)]
    security_context: RawContainerSecurityContext,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawContainerSecurityContext {
    run_as_user: Option<RawId>,
    run_as_group: Option<RawId>,
    allow_privilege_escalation: Option<bool>,
    #[serde(default)]
    capabilities: RawCapabilities,
}

impl RawContainerSecurityContext {
    fn is_empty(&self) -> bool {
        self.run_as_user.is_none() && self.run_as_group.is_none() && self.allow_privilege_escalation.is_none() && self.capabilities.drop.is_empty()
    }
}

/// `capabilities` of a container's securityContext: only `drop` (sgpc adds none).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapabilities {
    #[serde(default)]
    drop: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawVolume {
    name: String,
    mount_path: String,
    protected_dir: RawProtectedDir,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawProtectedDir {
    gid: RawId,
    #[serde(default)]
    negative_group_permission: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    merge: Option<RawExpectation>,
    strict: Option<RawExpectation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpectation {
    uid: RawId,
    gid: RawId,
    groups: Vec<RawId>,
    #[serde(default)]
    access: BTreeMap<String, Access>,
    /// Why this expectation deliberately differs from the KEP model.
    deviation: Option<String>,
}

/// One container of a file, before validation: where its fields are, and what they say.
struct ContainerInput<'r> {
    /// Prefix of the container's own field paths in error messages: `""` or `containers[1].`.
    prefix: String,
    /// Where its security context is: `container` or `containers[1]`.
    security_prefix: String,
    image: &'r Spanned<String>,
    security: &'r RawContainerSecurityContext,
    expect: &'r RawExpect,
    member: Option<PodMember>,
}

/// The most containers (init containers included) a scenario's Pod may have.
pub const MAX_CONTAINERS: usize = 8;

/// The most cases one shared sandbox runs ([`Catalogue::sandboxes`]).
pub const MAX_SHARED: usize = 12;

/// Where a scenario's container sits in a Pod of several: each container is its own case, and
/// the runner runs the cases of one Pod together, in one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodMember {
    /// The file's `name`: the Pod's, shared by its containers.
    pub pod: String,
    /// The container's name in the Pod.
    pub container: String,
    /// An init container: it runs, and exits, before the Pod's containers start.
    pub init: bool,
    /// Its place in the file's `containers` (or `initContainers`) list.
    pub index: usize,
}

impl PodMember {
    /// The container's scenario name: `<pod>.<container>` (a `.` no file's name has).
    pub fn case_name(&self) -> String {
        format!("{}.{}", self.pod, self.container)
    }
}

/// What one policy must give: the identity and, per probed file, the access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expectation {
    pub identity: Identity,
    pub access: BTreeMap<String, Access>,
    /// Set when the scenario deliberately departs from the KEP model: the written reason,
    /// shown with every verdict of the case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deviation: Option<String>,
    /// Every outcome the specs allow where they leave the case open (see [`oracle::AllowedOutcome`]);
    /// empty when exactly one outcome is right.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<oracle::AllowedOutcome>,
    /// Why each expected group is expected: where a missing group should have come from.
    #[serde(skip)]
    pub sources: BTreeMap<u32, Vec<String>>,
    /// Per escalation program of the image, what it reaches if the kernel grants it its bits
    /// (the model's, [`oracle::Derivation::escalated`]); empty for an image without them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub escalated: BTreeMap<crate::escalation::Program, BTreeMap<String, Access>>,
    /// Why the runtime may refuse the Pod instead (the model's, [`oracle::Derivation::refusal_allowed`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal_allowed: Option<String>,
}

impl Expectation {
    /// Stands in until a container's expectation is resolved.
    fn placeholder() -> Expectation {
        Expectation {
            identity: Identity { uid: 0, gid: 0, groups: GroupSet::default() },
            access: BTreeMap::new(),
            deviation: None,
            allowed: Vec::new(),
            sources: BTreeMap::new(),
            escalated: BTreeMap::new(),
            refusal_allowed: None,
        }
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let write_one = |f: &mut fmt::Formatter<'_>, identity: &Identity, access: &BTreeMap<String, Access>| {
            write!(f, "{identity}")?;
            access.iter().try_for_each(|(path, access)| write!(f, " {path}={access:?}"))
        };
        match self.allowed.as_slice() {
            [] => write_one(f, &self.identity, &self.access),
            outcomes => outcomes.iter().enumerate().try_for_each(|(i, o)| {
                if i > 0 {
                    f.write_str(" or ")?;
                }
                write_one(f, &o.identity, &o.access)
            }),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub summary: String,
    pub source: PathBuf,
    pub image: String,
    /// Where the case's rules come from (KEP section, API doc, OCI spec, upstream issue).
    pub references: Vec<String>,
    /// What the runtime should do under Merge (and default) and under Strict, one sentence each.
    pub spec_merge: Option<String>,
    pub spec_strict: Option<String>,
    pub pod: PodSecurity,
    pub container: ContainerSecurity,
    pub volumes: Vec<Volume>,
    pub expect_merge: Expectation,
    pub expect_strict: Expectation,
    /// The policies this scenario runs under: all three unless the file pins one.
    pub policies: Vec<Policy>,
    /// Its place in a Pod of several containers; `None` for a Pod of one (container `probe`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<PodMember>,
}

impl Scenario {
    /// The name of the Pod this scenario's container runs in (the file's `name`).
    pub fn pod_name(&self) -> &str {
        self.member.as_ref().map_or(&self.name, |m| &m.pod)
    }

    /// The Pod the model reads ([`oracle::derive`]).
    pub fn spec(&self) -> oracle::PodSpec<'_> {
        oracle::PodSpec { pod: &self.pod, container: &self.container, volumes: &self.volumes }
    }

    /// The written expectation for a policy (unset behaves as `Merge`).
    pub fn expectation(&self, policy: Policy) -> &Expectation {
        match policy {
            Policy::Default | Policy::Merge => &self.expect_merge,
            Policy::Strict => &self.expect_strict,
        }
    }

    /// The sentence saying what the runtime should do under a policy, if the scenario has one.
    pub fn spec_sentence(&self, policy: Policy) -> Option<&str> {
        match policy {
            Policy::Default | Policy::Merge => self.spec_merge.as_deref(),
            Policy::Strict => self.spec_strict.as_deref(),
        }
    }

    /// Files the probe tries to read: every volume's token.
    pub fn probed_files(&self) -> Vec<String> {
        self.volumes.iter().map(Volume::token_path).collect()
    }

    /// Loads a scenario and holds its expectations to the KEP model over its image recipe,
    /// which must be one of `recipes`.
    pub fn load(path: &Path, recipes: &[Recipe]) -> Result<Scenario, InputError> {
        Scenario::parse(path, &input::read_text(path)?, recipes)
    }

    /// Parses scenario text that came from `path` (see [`Scenario::load`]): a Pod of one
    /// container.
    pub fn parse(path: &Path, text: &str, recipes: &[Recipe]) -> Result<Scenario, InputError> {
        let mut all = Scenario::parse_all(path, text, recipes)?;
        match all.len() {
            1 => Ok(all.remove(0)),
            n => Err(InputError::new(path, None, Some("containers"), format!("{n} containers where one was expected"))),
        }
    }

    /// Parses a scenario file: one scenario per container of its Pod.
    pub fn parse_all(path: &Path, text: &str, recipes: &[Recipe]) -> Result<Vec<Scenario>, InputError> {
        let raw: RawScenario = input::parse_yaml(path, text)?;
        Validator { path, recipes }.scenarios(raw)
    }
}

struct Validator<'a> {
    path: &'a Path,
    recipes: &'a [Recipe],
}

impl Validator<'_> {
    fn error(&self, line: Option<u64>, field: &str, message: impl Into<String>) -> InputError {
        InputError::new(self.path, line, Some(field), message)
    }

    fn one_line(&self, field: &str, text: &str) -> Result<(), InputError> {
        if text.trim().is_empty() {
            return Err(self.error(None, field, "is empty: write one line of plain text"));
        }
        match text.chars().find(|c| crate::input::is_unprintable(*c)) {
            Some(c) => Err(self.error(None, field, format!("contains {c:?}, a control or invisible formatting character: write one line of plain text"))),
            None => Ok(()),
        }
    }

    /// An id anywhere: 0..=4294967294 (`(gid_t)-1`, 4294967295, means "no change" to
    /// setresgid and is refused by setgroups).
    fn id(&self, field: &str, raw: &RawId) -> Result<u32, InputError> {
        self.id_up_to(field, raw, MAX_ID)
    }

    /// An id a Pod declares: 0..=2147483647, what the Kubernetes API accepts
    /// (apimachinery `IsValidUserID`/`IsValidGroupID`).
    fn pod_id(&self, field: &str, raw: &RawId) -> Result<u32, InputError> {
        self.id_up_to(field, raw, MAX_POD_ID)
    }

    fn id_up_to(&self, field: &str, raw: &RawId, max: u32) -> Result<u32, InputError> {
        u32::try_from(raw.value).ok().filter(|id| *id <= max).ok_or_else(|| {
            let why = if max == MAX_POD_ID { " (the Kubernetes API's range for the ids a Pod declares)" } else { "" };
            self.error(Some(raw.referenced.line()), field, format!("{} is not an id: expected 0..={max}{why}", raw.value))
        })
    }

    /// Capability names as the API takes them: `ALL`, or upper-case letters, digits and `_`
    /// (`SETGID`, `CAP_SETGID`), at most 64 of them.
    fn capability_names(&self, field: &str, names: &[String]) -> Result<Vec<String>, InputError> {
        if names.len() > 64 {
            return Err(self.error(None, field, format!("{} capabilities: expected at most 64", names.len())));
        }
        for (i, name) in names.iter().enumerate() {
            let valid = !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(self.error(None, &format!("{field}[{i}]"), format!("{name:?}: expected ALL or a capability name such as SETGID")));
            }
        }
        Ok(names.to_vec())
    }

    /// A Pod with `hostUsers: false` declares ids of its own user namespace, which holds 0..65535
    /// (Kubernetes docs, "User Namespaces": "The valid UIDs/GIDs when this feature is enabled is
    /// the range 0-65535"): a Pod that declares others asks what no runtime can give.
    fn ids_in_user_namespace(&self, pod: &PodSecurity, container: &ContainerSecurity, container_field: &str) -> Result<(), InputError> {
        let declared = [
            ("pod.securityContext.runAsUser".to_string(), pod.run_as_user),
            ("pod.securityContext.runAsGroup".into(), pod.run_as_group),
            ("pod.securityContext.fsGroup".into(), pod.fs_group),
            (format!("{container_field}.securityContext.runAsUser"), container.run_as_user),
            (format!("{container_field}.securityContext.runAsGroup"), container.run_as_group),
        ]
        .into_iter()
        .filter_map(|(field, id)| id.map(|id| (field, id)))
        .chain(pod.supplemental_groups.iter().enumerate().map(|(i, g)| (format!("pod.securityContext.supplementalGroups[{i}]"), *g)));
        for (field, id) in declared {
            if id >= crate::oracle::USERNS_IDS {
                return Err(self.error(None, &field, format!("{id}: with hostUsers: false the Pod's ids are those of its user namespace, 0..=65535 (Kubernetes docs, \"User Namespaces\"); runtimes refuse others (setgroups(2) and setgid(2): EINVAL for an unmapped id)")));
            }
        }
        Ok(())
    }

    fn opt_pod_id(&self, field: &str, raw: &Option<RawId>) -> Result<Option<u32>, InputError> {
        raw.as_ref().map(|r| self.pod_id(field, r)).transpose()
    }

    fn pod_ids(&self, field: &str, raw: &[RawId]) -> Result<Vec<u32>, InputError> {
        raw.iter().enumerate().map(|(i, r)| self.pod_id(&format!("{field}[{i}]"), r)).collect()
    }

    fn ids(&self, field: &str, raw: &[RawId]) -> Result<Vec<u32>, InputError> {
        raw.iter().enumerate().map(|(i, r)| self.id(&format!("{field}[{i}]"), r)).collect()
    }

    /// The scenarios of one file: one, or one per container of a Pod of several.
    fn scenarios(&self, raw: RawScenario) -> Result<Vec<Scenario>, InputError> {
        if !is_scenario_name(&raw.name) {
            return Err(self.error(None, "name", format!("{:?}: use lower-case letters, digits and '-'", raw.name)));
        }
        self.one_line("summary", &raw.summary)?;
        for (i, reference) in raw.references.iter().enumerate() {
            self.one_line(&format!("references[{i}]"), reference)?;
        }
        for (field, sentence) in [("spec.merge", &raw.spec.merge), ("spec.strict", &raw.spec.strict)] {
            if let Some(sentence) = sentence {
                self.one_line(field, sentence)?;
            }
        }
        let psc = &raw.pod.security_context;
        // The kernel's NGROUPS_MAX (65536) bounds every process's list, the primary gid and
        // fsGroup included (setgroups(2): EINVAL beyond it): a Pod over it no runtime can run.
        if psc.supplemental_groups.len() + 2 > NGROUPS_MAX {
            return Err(self.error(None, "pod.securityContext.supplementalGroups", format!("{} groups: with the primary gid and fsGroup that is more than the kernel's NGROUPS_MAX ({NGROUPS_MAX}), so no runtime could run the Pod", psc.supplemental_groups.len())));
        }
        let pod = PodSecurity {
            run_as_user: self.opt_pod_id("pod.securityContext.runAsUser", &psc.run_as_user)?,
            run_as_group: self.opt_pod_id("pod.securityContext.runAsGroup", &psc.run_as_group)?,
            supplemental_groups: self.pod_ids("pod.securityContext.supplementalGroups", &psc.supplemental_groups)?,
            fs_group: self.opt_pod_id("pod.securityContext.fsGroup", &psc.fs_group)?,
            host_users: raw.pod.host_users,
        };
        let volumes = raw
            .volumes
            .iter()
            .enumerate()
            .map(|(i, v)| self.volume(i, v))
            .collect::<Result<Vec<_>, _>>()?;
        self.distinct_volumes(&volumes)?;
        let shared = Scenario {
            name: raw.name.clone(),
            summary: raw.summary.clone(),
            source: self.path.to_path_buf(),
            image: String::new(),
            references: raw.references.clone(),
            spec_merge: raw.spec.merge.clone(),
            spec_strict: raw.spec.strict.clone(),
            policies: match psc.supplemental_groups_policy {
                None => Policy::ALL.to_vec(),
                Some(ApiPolicy::Merge) => vec![Policy::Merge],
                Some(ApiPolicy::Strict) => vec![Policy::Strict],
            },
            pod,
            container: ContainerSecurity::default(),
            volumes,
            expect_merge: Expectation::placeholder(),
            expect_strict: Expectation::placeholder(),
            member: None,
        };
        self.containers(&raw)?.into_iter().map(|c| self.container_scenario(&shared, c)).collect()
    }

    /// The file's containers: its one (`image`, `container`, `expect`), or each of `initContainers`
    /// and `containers`, named and checked as the Kubernetes API checks a Pod's.
    fn containers<'r>(&self, raw: &'r RawScenario) -> Result<Vec<ContainerInput<'r>>, InputError> {
        let several = !raw.containers.is_empty() || !raw.init_containers.is_empty();
        match (&raw.image, several) {
            (Some(image), false) => {
                return Ok(vec![ContainerInput { prefix: String::new(), security_prefix: "container".into(), image, security: &raw.container.security_context, expect: &raw.expect, member: None }]);
            }
            (None, false) => return Err(self.error(None, "image", "missing: name the image recipe of the Pod's container, or list `containers`")),
            (Some(image), true) => return Err(self.error(Some(image.referenced.line()), "image", "a Pod that lists `containers` names an image per container; remove the top-level `image`")),
            (None, true) => {}
        }
        if raw.containers.is_empty() {
            return Err(self.error(None, "containers", "empty: a Pod needs at least one container besides its init containers (Kubernetes API: spec.containers is required)"));
        }
        if raw.expect.merge.is_some() || raw.expect.strict.is_some() {
            return Err(self.error(None, "expect", "a Pod that lists `containers` writes `expect` per container"));
        }
        if !raw.container.security_context.is_empty() {
            return Err(self.error(None, "container.securityContext", "a Pod that lists `containers` writes `securityContext` per container"));
        }
        if raw.containers.len() + raw.init_containers.len() > MAX_CONTAINERS {
            return Err(self.error(None, "containers", format!("{} containers: expected at most {MAX_CONTAINERS}", raw.containers.len() + raw.init_containers.len())));
        }
        let listed = raw.init_containers.iter().map(|c| ("initContainers", true, c)).chain(raw.containers.iter().map(|c| ("containers", false, c)));
        let mut inputs: Vec<ContainerInput<'r>> = Vec::new();
        for (i, (list, init, c)) in listed.enumerate() {
            let index = if init { i } else { i - raw.init_containers.len() };
            let prefix = format!("{list}[{index}]");
            // The kube level names its volume-preparing init containers `prepare-<volume>`.
            if !is_dns_label(&c.name) || c.name.starts_with("prepare-") {
                return Err(self.error(None, &format!("{prefix}.name"), format!("{:?}: a container name must be a DNS-1123 label (Kubernetes API), not starting with `prepare-` (sgpc's own)", c.name)));
            }
            if let Some(other) = inputs.iter().find(|o| o.member.as_ref().is_some_and(|m| m.container == c.name)) {
                return Err(self.error(None, &format!("{prefix}.name"), format!("{:?} is also the name of {}: names are unique across a Pod's containers and init containers (Kubernetes API)", c.name, other.security_prefix)));
            }
            let member = PodMember { pod: raw.name.clone(), container: c.name.clone(), init, index };
            inputs.push(ContainerInput { prefix: format!("{prefix}."), security_prefix: prefix, image: &c.image, security: &c.security_context, expect: &c.expect, member: Some(member) });
        }
        Ok(inputs)
    }

    /// One container's scenario: the Pod's fields with the container's own.
    fn container_scenario(&self, shared: &Scenario, input: ContainerInput<'_>) -> Result<Scenario, InputError> {
        let prefix = &input.prefix;
        let Some(recipe) = self.recipes.iter().find(|r| r.name == input.image.value) else {
            let known: Vec<&str> = self.recipes.iter().map(|r| r.name.as_str()).collect();
            return Err(self.error(Some(input.image.referenced.line()), &format!("{prefix}image"), format!("no image recipe named {:?}; known: {known:?}", input.image.value)));
        };
        let csc = input.security;
        let field = |name: &str| format!("{}.securityContext.{name}", input.security_prefix);
        let container = ContainerSecurity {
            run_as_user: self.opt_pod_id(&field("runAsUser"), &csc.run_as_user)?,
            run_as_group: self.opt_pod_id(&field("runAsGroup"), &csc.run_as_group)?,
            allow_privilege_escalation: csc.allow_privilege_escalation,
            drop_capabilities: self.capability_names(&field("capabilities.drop"), &csc.capabilities.drop)?,
        };
        if shared.pod.user_namespace() {
            self.ids_in_user_namespace(&shared.pod, &container, &input.security_prefix)?;
        }
        let probed: Vec<String> = shared.volumes.iter().map(Volume::token_path).collect();
        let expect_field = |policy: &str| format!("{prefix}expect.{policy}");
        let written_merge = input.expect.merge.as_ref().map(|e| self.expectation(&expect_field("merge"), e, &probed)).transpose()?;
        let written_strict = input.expect.strict.as_ref().map(|e| self.expectation(&expect_field("strict"), e, &probed)).transpose()?;
        let pod_spec = oracle::PodSpec { pod: &shared.pod, container: &container, volumes: &shared.volumes };
        let image_field = format!("{prefix}image");
        Ok(Scenario {
            expect_merge: self.resolve(&expect_field("merge"), &image_field, Policy::Merge, written_merge, recipe, &pod_spec)?,
            expect_strict: self.resolve(&expect_field("strict"), &image_field, Policy::Strict, written_strict, recipe, &pod_spec)?,
            name: match &input.member {
                Some(member) => member.case_name(),
                None => shared.name.clone(),
            },
            image: input.image.value.clone(),
            container,
            member: input.member,
            ..shared.clone()
        })
    }

    /// Holds a written expectation to the KEP model ([`oracle::derive`]); with none written, the
    /// model's derivation is the expectation. A difference is an input error unless the
    /// expectation gives a `deviation` reason.
    fn resolve(&self, field: &str, image_field: &str, policy: Policy, written: Option<Expectation>, recipe: &Recipe, pod: &oracle::PodSpec<'_>) -> Result<Expectation, InputError> {
        let derived = oracle::derive(recipe, pod, policy).map_err(|e| {
            self.error(None, image_field, format!("the KEP model cannot derive policy {policy} from image {:?} ({}): {e}; set runAsUser", recipe.name, recipe.source.display()))
        })?;
        let allowed_by_model = |e: &Expectation| {
            (e.identity == derived.identity && e.access == derived.access) || derived.open.iter().any(|o| o.identity == e.identity && o.access == e.access)
        };
        let model = Expectation {
            identity: derived.identity.clone(),
            access: derived.access.clone(),
            deviation: None,
            allowed: derived.open.clone(),
            sources: derived.sources.clone(),
            escalated: derived.escalated.clone(),
            refusal_allowed: derived.refusal_allowed.clone(),
        };
        let Some(written) = written else { return Ok(model) };
        match (&written.deviation, allowed_by_model(&written)) {
            (None, true) => Ok(Expectation { allowed: derived.open, sources: derived.sources, escalated: derived.escalated, refusal_allowed: derived.refusal_allowed, ..written }),
            (None, false) => Err(self.error(
                None,
                field,
                format!("under policy {policy} the written expectation {written} differs from the KEP model's {model}; correct it, delete it to use the model's, or add `deviation: REASON`"),
            )),
            (Some(_), true) => Err(self.error(None, &format!("{field}.deviation"), format!("the expectation agrees with the KEP model ({model}); remove `deviation`"))),
            // A deviation names the one outcome the scenario expects instead of the model's: the
            // model's leave to refuse was for its own identity, not this one.
            (Some(_), false) => Ok(Expectation { sources: derived.sources, escalated: derived.escalated, refusal_allowed: None, ..written }),
        }
    }

    fn volume(&self, index: usize, raw: &RawVolume) -> Result<Volume, InputError> {
        /// Where the probe's own programs and files live.
        const PROBE_DIRS: &[&str] = &["/bin", "/proc", "/etc", "/dev", "/sys"];
        let field = format!("volumes[{index}]");
        if !is_dns_label(&raw.name) {
            return Err(self.error(None, &format!("{field}.name"), format!("{:?}: a volume name must be a DNS-1123 label (lower-case letters, digits and '-', at most 63, starting and ending alphanumeric), as the Kubernetes API requires", raw.name)));
        }
        if !is_clean_absolute_path(&raw.mount_path) {
            return Err(self.error(None, &format!("{field}.mountPath"), format!("{:?}: expected a clean absolute path below / (no `.` or `..` component, no empty component, no whitespace or control characters)", raw.mount_path)));
        }
        if let Some(hidden) = PROBE_DIRS.iter().find(|dir| Path::new(&raw.mount_path).starts_with(dir) || Path::new(dir).starts_with(&raw.mount_path)) {
            return Err(self.error(None, &format!("{field}.mountPath"), format!("{:?} would hide or replace {hidden}, which the probe itself needs (its shell, `id` and /proc/self/status): no runtime could run the case as written", raw.mount_path)));
        }
        Ok(Volume {
            name: raw.name.clone(),
            mount_path: raw.mount_path.clone(),
            gid: self.id(&format!("{field}.protectedDir.gid"), &raw.protected_dir.gid)?,
            negative_group_permission: raw.protected_dir.negative_group_permission,
        })
    }

    fn distinct_volumes(&self, volumes: &[Volume]) -> Result<(), InputError> {
        for (i, v) in volumes.iter().enumerate() {
            if let Some(other) = volumes[..i].iter().find(|o| o.name == v.name || o.mount_path == v.mount_path) {
                return Err(self.error(None, &format!("volumes[{i}]"), format!("{:?} at {:?} repeats the name or mountPath of {:?}", v.name, v.mount_path, other.name)));
            }
        }
        Ok(())
    }

    fn expectation(&self, field: &str, raw: &RawExpectation, probed: &[String]) -> Result<Expectation, InputError> {
        let gid = self.id(&format!("{field}.gid"), &raw.gid)?;
        let groups: GroupSet = self.ids(&format!("{field}.groups"), &raw.groups)?.into_iter().collect();
        if !groups.contains(gid) {
            return Err(self.error(Some(raw.gid.referenced.line()), &format!("{field}.groups"), format!("must contain the primary gid {gid} (the KEP lists it among the supplemental groups)")));
        }
        for path in raw.access.keys() {
            if !probed.contains(path) {
                return Err(self.error(None, &format!("{field}.access"), format!("{path:?} is not a probed file; expected one of {probed:?}")));
            }
        }
        if let Some(missing) = probed.iter().find(|p| !raw.access.contains_key(*p)) {
            return Err(self.error(None, &format!("{field}.access"), format!("no expected access for the probed file {missing:?}")));
        }
        let deviation = match &raw.deviation {
            Some(reason) if reason.trim().is_empty() || reason.chars().any(crate::input::is_unprintable) => {
                return Err(self.error(None, &format!("{field}.deviation"), "expected a one-line reason"));
            }
            other => other.clone(),
        };
        Ok(Expectation {
            identity: Identity { uid: self.id(&format!("{field}.uid"), &raw.uid)?, gid, groups },
            access: raw.access.clone(),
            deviation,
            allowed: Vec::new(),
            sources: BTreeMap::new(),
            escalated: BTreeMap::new(),
            refusal_allowed: None,
        })
    }
}

/// A DNS-1123 label, what the Kubernetes API requires of a volume name.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// The kernel's limit on a process's supplementary groups (`NGROUPS_MAX`, linux/limits.h).
pub const NGROUPS_MAX: usize = 65536;

/// An absolute path with at least one component, none of them empty, `.` or `..`.
pub fn is_clean_absolute_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else { return false };
    !rest.is_empty()
        && !path.chars().any(|c| crate::input::is_unprintable(c) || c.is_whitespace())
        && rest.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
}

fn is_scenario_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// All scenarios and the image recipes they use, checked against each other.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub scenarios: Vec<Scenario>,
    pub images: Vec<Recipe>,
}

impl Catalogue {
    /// Builds the pause image (first) and every image the cases use, once each.
    pub fn build_images(&self, cases: &[CaseId]) -> anyhow::Result<Vec<BuiltImage>> {
        use anyhow::Context as _;
        let mut names: Vec<&str> = cases.iter().filter_map(|c| self.scenario(&c.scenario)).map(|s| s.image.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let mut built = vec![image::build(&ImageContent::pause())?];
        for name in names {
            let recipe = self.recipe(name).with_context(|| format!("no image recipe named {name:?}"))?;
            built.push(image::build(&ImageContent::from_recipe(recipe)).with_context(|| format!("building image {name}"))?);
        }
        Ok(built)
    }

    pub fn load(scenario_dir: &Path, image_dir: &Path) -> Result<Catalogue, InputError> {
        Catalogue::open(Some(scenario_dir), Some(image_dir))
    }

    /// Loads the catalogue: each part from its directory, or the one built into the binary where
    /// none is given ([`crate::builtin`]).
    pub fn open(scenario_dir: Option<&Path>, image_dir: Option<&Path>) -> Result<Catalogue, InputError> {
        Catalogue::from_files(&crate::builtin::files(scenario_dir, "scenarios")?, &crate::builtin::files(image_dir, "images")?)
    }

    /// Parses catalogue files (`(path, text)`, as [`crate::builtin::files`] gives them).
    pub fn from_files(scenario_files: &[(PathBuf, String)], image_files: &[(PathBuf, String)]) -> Result<Catalogue, InputError> {
        let images = Recipe::from_files(image_files.to_vec())?;
        let mut scenarios: Vec<Scenario> = Vec::new();
        for (path, text) in scenario_files {
            let parsed = Scenario::parse_all(path, text, &images)?;
            if let Some(other) = parsed.first().and_then(|p| scenarios.iter().find(|s| s.pod_name() == p.pod_name())) {
                return Err(InputError::new(path, None, Some("name"), format!("scenario {:?} is already defined in {}", other.pod_name(), other.source.display())));
            }
            scenarios.extend(parsed);
        }
        if scenarios.is_empty() {
            return Err(InputError::new(Path::new("scenarios"), None, None, "no scenario files (*.yaml) found"));
        }
        Ok(Catalogue { scenarios, images })
    }

    pub fn recipe(&self, name: &str) -> Option<&Recipe> {
        self.images.iter().find(|r| r.name == name)
    }

    /// Every (scenario, policy) pair, in file order then policy order.
    pub fn cases(&self) -> Vec<CaseId> {
        self.scenarios
            .iter()
            .flat_map(|s| s.policies.iter().map(|&policy| CaseId { scenario: s.name.clone(), policy }))
            .collect()
    }

    /// The cases grouped by the Pod they run in: a container of a Pod of several with the other
    /// selected containers of that Pod under the same policy, in catalogue order (init
    /// containers first); every other case alone. Groups in the order of their first case.
    pub fn pods(&self, cases: &[CaseId]) -> Vec<Vec<CaseId>> {
        let mut seen = std::collections::HashSet::new();
        // A case listed twice runs once: its second container would take the first's name.
        let keyed = cases.iter().filter(|id| seen.insert(*id)).map(|id| {
            let pod = self.scenario(&id.scenario).and_then(|s| s.member.as_ref()).map(|m| (m.pod.as_str(), id.policy));
            (pod, id.clone())
        });
        let position = |id: &CaseId| self.scenarios.iter().position(|s| s.name == id.scenario);
        group_by(keyed, usize::MAX)
            .into_iter()
            .map(|mut ids| {
                ids.sort_by_key(position);
                ids
            })
            .collect()
    }

    /// [`Catalogue::pods`], with the cases of one-container Pods whose sandbox config is the
    /// same (the policy as the CRI carries it, where unset is Merge; `runAsUser`, `runAsGroup`,
    /// `supplementalGroups`, `fsGroup`, `hostUsers`: everything kubelet puts in the sandbox's
    /// security context) together, at most [`MAX_SHARED`] to a group, as containers of one
    /// sandbox would run. A Pod of several containers stays alone, and no case joins a sandbox
    /// whose Pod-level context differs.
    pub fn sandboxes(&self, cases: &[CaseId]) -> Vec<Vec<CaseId>> {
        let keyed = self.pods(cases).into_iter().map(|ids| {
            let shareable = match ids.as_slice() {
                [id] => self.scenario(&id.scenario).filter(|s| s.member.is_none()).map(|s| (id.policy == Policy::Strict, &s.pod)),
                _ => None,
            };
            (shareable, ids)
        });
        group_by(keyed, MAX_SHARED).into_iter().map(|groups| groups.concat()).collect()
    }

    pub fn scenario(&self, name: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| s.name == name)
    }

    /// SHA-256 of what the catalogue says (every scenario and recipe, in order, without the
    /// paths they were read from): equal for the same catalogue wherever it is checked out.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for scenario in &self.scenarios {
            match serde_json::to_value(scenario) {
                Ok(mut value) => {
                    if let Some(fields) = value.as_object_mut() {
                        fields.remove("source");
                    }
                    hasher.update(value.to_string());
                }
                // Not reached for these plain types; never a digest shared with another catalogue.
                Err(_) => hasher.update(format!("{scenario:?}")),
            }
        }
        for r in &self.images {
            hasher.update(serde_json::json!([r.name, r.description, r.user, r.etc_layers, r.escalation_gid]).to_string());
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }

    /// For a certification run (`--no-deviations`): the first selected case whose expectation
    /// departs from the KEP model, as an error naming its file and field.
    pub fn refuse_deviations(&self, cases: &[CaseId]) -> Result<(), InputError> {
        for case in cases {
            let Some(scenario) = self.scenario(&case.scenario) else { continue };
            if let Some(reason) = &scenario.expectation(case.policy).deviation {
                let policy = match case.policy {
                    Policy::Default | Policy::Merge => "merge",
                    Policy::Strict => "strict",
                };
                let field = match &scenario.member {
                    Some(member) => format!("{}[{}].expect.{policy}.deviation", if member.init { "initContainers" } else { "containers" }, member.index),
                    None => format!("expect.{policy}.deviation"),
                };
                let message = format!("case {case} departs from the KEP model ({reason:?}); --no-deviations runs only cases held to the model: leave the case out with --filter, or drop --no-deviations");
                return Err(InputError::new(&scenario.source, None, Some(&field), message));
            }
        }
        Ok(())
    }
}

/// Groups items by their key in order of first appearance, at most `max` to a group; an item
/// without a key is a group of its own.
fn group_by<K: PartialEq, T>(items: impl IntoIterator<Item = (Option<K>, T)>, max: usize) -> Vec<Vec<T>> {
    let mut groups: Vec<(Option<K>, Vec<T>)> = Vec::new();
    for (key, item) in items {
        match groups.iter_mut().find(|(k, group)| key.is_some() && *k == key && group.len() < max) {
            Some((_, group)) => group.push(item),
            None => groups.push((key, vec![item])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

/// Names one case: a scenario under one policy. Displays as `scenario/policy`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CaseId {
    pub scenario: String,
    pub policy: Policy,
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.scenario, self.policy)
    }
}
