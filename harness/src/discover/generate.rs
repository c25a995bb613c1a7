//! The generator: random image files (`/etc/passwd`, `/etc/group`, `USER`) and Pod security
//! contexts, as plain data ([`GenCase`]) written in the catalogue's own formats.
//!
//! Cases cover what real images hold (distribution-style files, system groups, users in several
//! groups) and adversarial forms (CRLF, comments and blank lines, blanks around members,
//! duplicate names and gids, groups named like users, members nobody is, long member lists,
//! boundary gids, every `USER` form, missing files). Pod ids stay in the Kubernetes API's range
//! (0..=2147483647, apimachinery `IsValidUserID`/`IsValidGroupID`); image files may go beyond.
//!
//! Randomness is a ChaCha stream seeded by the user's seed: the same seed gives the same cases
//! on every machine and build (`rand_chacha` promises a stable stream; `rand`'s `StdRng` does
//! not). Shrinking is [`super::shrink`]'s, not proptest's: proptest's value trees shrink one
//! value against a synchronous predicate, while a discovery case is judged by several runtimes
//! at once, many candidates per round.

use std::path::Path;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::etc;
use crate::image::Recipe;
use crate::input::InputError;
use crate::scenario::{Catalogue, Policy, Scenario};

/// One generated scenario: an image and a Pod, run under every policy unless `policy` pins one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenCase {
    /// The scenario's and the image's name (a DNS label).
    pub name: String,
    /// What generated it, for the files' header: `seed 7, case 12`, `shrunk from d7-0012`.
    pub origin: String,
    /// The image config's `User`.
    pub user: Option<String>,
    /// `/etc/passwd` lines; `None`: the image has no such file.
    pub passwd: Option<Vec<String>>,
    pub group: Option<Vec<String>>,
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub supplemental_groups: Vec<u32>,
    pub fs_group: Option<u32>,
    /// A protected volume readable only through this gid (see `scenario::Volume`).
    pub volume_gid: Option<u32>,
    /// `Merge` or `Strict` pins the scenario to that policy; `None` runs default, Merge, Strict.
    pub policy: Option<Policy>,
}

const USER_NAMES: [&str; 5] = ["app", "alice", "bob", "name", "svc"];
const GROUP_NAMES: [&str; 6] = ["staff", "audio", "video", "docker", "wheel", "data"];
const UIDS: [u32; 6] = [1000, 1001, 1002, 2000, 3000, 65533];
const COMMON_GIDS: [u32; 11] = [10, 100, 1000, 1001, 2000, 3000, 4000, 50000, 60000, 65534, 65535];
/// The edges of the id ranges: the API's largest, the first beyond it, the largest gid.
const BOUNDARY_GIDS: [u32; 3] = [2_147_483_647, 2_147_483_648, 4_294_967_294];
const POD_GIDS: [u32; 6] = [1000, 2000, 3000, 60000, 65534, 2_147_483_647];

/// `count` scenarios from `seed`, each valid in the catalogue's format (see [`catalogue`]).
pub fn generate(seed: u64, count: usize) -> Vec<GenCase> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count).map(|index| valid_case(&mut rng, seed, index)).collect()
}

/// The name of a generated scenario: `d<seed>-<index>`.
pub fn case_name(seed: u64, index: usize) -> String {
    format!("d{seed}-{index:04}")
}

/// Draws until a case loads (a `USER` naming a user the files lack, say, does not); the draws
/// are part of the stream, so this stays deterministic.
fn valid_case(rng: &mut ChaCha8Rng, seed: u64, index: usize) -> GenCase {
    loop {
        let case = draw(rng, case_name(seed, index), format!("seed {seed}, case {index}"));
        if catalogue(std::slice::from_ref(&case)).is_ok() {
            return case;
        }
    }
}

struct User {
    name: &'static str,
    uid: u32,
    gid: u32,
}

fn draw(rng: &mut ChaCha8Rng, name: String, origin: String) -> GenCase {
    let users = draw_users(rng);
    let passwd = (!rng.random_bool(0.05)).then(|| passwd_lines(rng, &users));
    let group = (!rng.random_bool(0.08)).then(|| group_lines(rng, &users));
    let user = draw_user_field(rng, &users, passwd.is_some());
    let pick_uid = |rng: &mut ChaCha8Rng| match rng.random_range(0..10) {
        0 => 0,
        1 => 4321,
        _ => users.choose(rng).map_or(1000, |u| u.uid),
    };
    let run_as_user = rng.random_bool(0.6).then(|| pick_uid(rng));
    let run_as_group = rng.random_bool(0.3).then(|| *[0, 100, 1000, 3000, 60000, 2_147_483_647].choose(rng).unwrap_or(&0));
    let supplemental_groups = (0..rng.random_range(0..=3)).filter_map(|_| POD_GIDS.choose(rng).copied()).collect();
    let fs_group = rng.random_bool(0.25).then(|| *[2000, 3000, 60000].choose(rng).unwrap_or(&2000));
    let mut case = GenCase { name, origin, user, passwd, group, run_as_user, run_as_group, supplemental_groups, fs_group, volume_gid: None, policy: None };
    if rng.random_bool(0.25) {
        let gids: Vec<u32> = case.group.iter().flatten().filter_map(|l| etc::parse_group(l.trim_end_matches('\r')).ok()).map(|g| g.gid).chain(case.supplemental_groups.iter().copied()).collect();
        case.volume_gid = gids.choose(rng).copied();
    }
    case
}

fn draw_users(rng: &mut ChaCha8Rng) -> Vec<User> {
    let count = rng.random_range(1..=3);
    let names: Vec<&'static str> = USER_NAMES.choose_multiple(rng, count).copied().collect();
    let uids: Vec<u32> = UIDS.choose_multiple(rng, count).copied().collect();
    names
        .into_iter()
        .zip(uids)
        .map(|(name, uid)| {
            let gid = match rng.random_range(0..20) {
                0 => *BOUNDARY_GIDS.choose(rng).unwrap_or(&uid),
                1..=9 => uid,
                _ => *[1, 100, 1000, 3000, 60000].choose(rng).unwrap_or(&uid),
            };
            User { name, uid, gid }
        })
        .collect()
}

fn passwd_lines(rng: &mut ChaCha8Rng, users: &[User]) -> Vec<String> {
    let mut lines = vec!["root:x:0:0:root:/root:/bin/sh".to_string()];
    if rng.random_bool(0.5) {
        lines.extend(
            ["daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin", "bin:x:2:2:bin:/bin:/usr/sbin/nologin", "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"]
                .map(String::from),
        );
    }
    lines.extend(users.iter().map(|u| format!("{}:x:{}:{}::/home/{}:/bin/sh", u.name, u.uid, u.gid, u.name)));
    layout(rng, lines, false)
}

fn group_lines(rng: &mut ChaCha8Rng, users: &[User]) -> Vec<String> {
    let mut lines = vec!["root:x:0:".to_string()];
    if rng.random_bool(0.5) {
        lines.extend(["daemon:x:1:", "bin:x:2:", "users:x:100:", "nogroup:x:65534:"].map(String::from));
    }
    for _ in 0..rng.random_range(0..=5) {
        let name = match rng.random_range(0..10) {
            0..=2 => users.choose(rng).map_or("staff", |u| u.name),
            _ => GROUP_NAMES.choose(rng).copied().unwrap_or("staff"),
        };
        let gid = if rng.random_bool(0.15) { *BOUNDARY_GIDS.choose(rng).unwrap_or(&1000) } else { *COMMON_GIDS.choose(rng).unwrap_or(&1000) };
        let mut members: Vec<String> = users.iter().filter(|_| rng.random_bool(0.5)).map(|u| u.name.to_string()).collect();
        if rng.random_bool(0.15) {
            members.push("ghost".into());
        }
        if rng.random_bool(0.05) {
            members.extend((0..rng.random_range(10..40)).map(|i| format!("u{i:02}")));
        }
        if rng.random_bool(0.1) {
            if let Some(first) = members.first_mut() {
                *first = format!(" {first}");
            }
        }
        lines.push(format!("{name}:x:{gid}:{}", members.join(",")));
    }
    layout(rng, lines, true)
}

/// Comments, blank lines and CRLF endings, now and then.
fn layout(rng: &mut ChaCha8Rng, mut lines: Vec<String>, group: bool) -> Vec<String> {
    if rng.random_bool(0.1) {
        let at = rng.random_range(0..=lines.len());
        let comment = if group && rng.random_bool(0.5) { format!("#{}", lines.last().cloned().unwrap_or_default()) } else { "# generated by sgpc discover".to_string() };
        lines.insert(at, comment);
    }
    if rng.random_bool(0.1) {
        let at = rng.random_range(0..=lines.len());
        lines.insert(at, String::new());
    }
    if rng.random_bool(0.05) {
        lines.iter_mut().for_each(|l| l.push('\r'));
    }
    lines
}

/// Every form of the OCI config `User`: none, `uid`, `name`, `name:group`, `uid:gid`, and a
/// uid the files lack.
fn draw_user_field(rng: &mut ChaCha8Rng, users: &[User], have_passwd: bool) -> Option<String> {
    let user = users.choose(rng)?;
    match rng.random_range(0..20) {
        0..=3 => None,
        4..=8 => Some(user.uid.to_string()),
        9..=14 if have_passwd => Some(user.name.to_string()),
        15..=16 if have_passwd => Some(format!("{}:{}", user.name, GROUP_NAMES.choose(rng).unwrap_or(&"staff"))),
        17..=18 => Some(format!("{}:{}", user.uid, COMMON_GIDS.choose(rng).unwrap_or(&1000))),
        _ => Some("4321".into()),
    }
}

/// The image recipe, in `images/*.yaml` format.
pub fn recipe_yaml(case: &GenCase) -> String {
    let mut out = format!("# Generated by sgpc discover ({}).\nname: {}\ndescription: {}\n", case.origin, case.name, quoted(&format!("generated image, {}", case.origin)));
    if let Some(user) = &case.user {
        out += &format!("user: {}\n", quoted(user));
    }
    for (field, lines, parse) in [("passwd", &case.passwd, is_passwd_entry as fn(&str) -> bool), ("group", &case.group, is_group_entry)] {
        let Some(lines) = lines else { continue };
        out += &format!("{field}:{}\n", if lines.is_empty() { " []" } else { "" });
        for line in lines {
            // A line that is no entry and no comment or blank must say that it means it.
            match etc::is_layout_line(line) || parse(line) {
                true => out += &format!("  - {}\n", quoted(line)),
                false => out += &format!("  - {{line: {}, malformed: true}}\n", quoted(line)),
            }
        }
    }
    out
}

fn is_passwd_entry(line: &str) -> bool {
    etc::parse_passwd(line).is_ok()
}

fn is_group_entry(line: &str) -> bool {
    etc::parse_group(line).is_ok()
}

/// The scenario, in `scenarios/*.yaml` format: expectations left to the model.
pub fn scenario_yaml(case: &GenCase) -> String {
    let mut context = Vec::new();
    if let Some(policy) = case.policy.and_then(Policy::api_value) {
        context.push(format!("supplementalGroupsPolicy: {policy}"));
    }
    for (field, value) in [("runAsUser", case.run_as_user), ("runAsGroup", case.run_as_group), ("fsGroup", case.fs_group)] {
        if let Some(value) = value {
            context.push(format!("{field}: {value}"));
        }
    }
    if !case.supplemental_groups.is_empty() {
        context.push(format!("supplementalGroups: [{}]", case.supplemental_groups.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")));
    }
    let mut out = format!(
        "# Generated by sgpc discover ({}); the expectations are the KEP model's.\nname: {}\nsummary: {}\nimage: {}\nreferences:\n  - \"KEP-3619 keps/sig-node/3619-supplemental-groups-policy, \\\"Design Details\\\"\"\n  - \"initgroups(3): membership by member list\"\npod:\n  securityContext: {{{}}}\n",
        case.origin,
        case.name,
        quoted(&format!("generated case, {}", case.origin)),
        case.name,
        context.join(", ")
    );
    if let Some(gid) = case.volume_gid {
        out += &format!("volumes:\n  - {{name: data, mountPath: /data, protectedDir: {{gid: {gid}}}}}\n");
    }
    out
}

/// A YAML double-quoted scalar: JSON's escapes are YAML's.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// Loads generated cases through the catalogue's own parsers: what is run is exactly what the
/// written files say.
pub fn catalogue(cases: &[GenCase]) -> Result<Catalogue, InputError> {
    let mut images = Vec::new();
    for case in cases {
        images.push(Recipe::parse(Path::new(&format!("{}.image.yaml", case.name)), &recipe_yaml(case))?);
    }
    let mut scenarios = Vec::new();
    for case in cases {
        scenarios.push(Scenario::parse(Path::new(&format!("{}.scenario.yaml", case.name)), &scenario_yaml(case), &images)?);
    }
    Ok(Catalogue { scenarios, images })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_cases_and_another_seed_others() {
        assert_eq!(generate(7, 60), generate(7, 60));
        assert_ne!(generate(7, 60), generate(8, 60));
        assert_eq!(generate(7, 60)[..10], generate(7, 10)[..], "a longer run starts with the shorter one's cases");
    }

    #[test]
    fn every_generated_case_loads_and_round_trips() {
        let cases = generate(7, 300);
        let catalogue = catalogue(&cases).expect("every generated case loads");
        for (case, (recipe, scenario)) in cases.iter().zip(catalogue.images.iter().zip(&catalogue.scenarios)) {
            assert_eq!(recipe.user, case.user);
            assert_eq!(recipe.passwd_lines, case.passwd, "{}", case.name);
            assert_eq!(recipe.group_lines, case.group, "{}", case.name);
            assert_eq!(scenario.pod.run_as_user, case.run_as_user);
            assert_eq!(scenario.pod.run_as_group, case.run_as_group);
            assert_eq!(scenario.pod.supplemental_groups, case.supplemental_groups);
            assert_eq!(scenario.pod.fs_group, case.fs_group);
            assert_eq!(scenario.volumes.first().map(|v| v.gid), case.volume_gid);
            assert_eq!(scenario.policies, Policy::ALL.to_vec());
        }
    }

    #[test]
    fn generated_pods_obey_the_api_and_cover_the_adversarial_forms() {
        let cases = generate(7, 300);
        let pod_ids = cases.iter().flat_map(|c| c.run_as_user.into_iter().chain(c.run_as_group).chain(c.fs_group).chain(c.supplemental_groups.iter().copied()));
        assert!(pod_ids.clone().all(|id| id <= crate::identity::MAX_POD_ID));
        let lines = || cases.iter().flat_map(|c| c.group.iter().flatten());
        let covered = [
            ("CRLF", lines().any(|l| l.ends_with('\r'))),
            ("comment", lines().any(|l| l.starts_with('#'))),
            ("blank line", lines().any(String::is_empty)),
            ("blank before a member", lines().any(|l| l.contains(": ") || l.contains(", "))),
            ("gid beyond the API's range", lines().any(|l| l.contains(":4294967294:") || l.contains(":2147483648:"))),
            ("member nobody is", lines().any(|l| l.contains("ghost"))),
            ("long member list", lines().any(|l| l.split(',').count() > 10)),
            ("no /etc/group", cases.iter().any(|c| c.group.is_none())),
            ("no /etc/passwd", cases.iter().any(|c| c.passwd.is_none())),
            ("USER name:group", cases.iter().any(|c| c.user.as_deref().is_some_and(|u| u.contains(':') && u.parse::<u32>().is_err() && !u.starts_with(char::is_numeric)))),
            ("USER uid:gid", cases.iter().any(|c| c.user.as_deref().is_some_and(|u| u.split(':').all(|p| p.parse::<u32>().is_ok()) && u.contains(':')))),
            ("no USER", cases.iter().any(|c| c.user.is_none())),
            ("no runAsUser", cases.iter().any(|c| c.run_as_user.is_none())),
            ("fsGroup", cases.iter().any(|c| c.fs_group.is_some())),
            ("volume", cases.iter().any(|c| c.volume_gid.is_some())),
        ];
        for (form, present) in covered {
            assert!(present, "300 generated cases have no {form}");
        }
    }
}
