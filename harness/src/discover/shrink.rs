//! Shrinking: smaller variants of a case, most reducing first. The engine runs them on the
//! runtimes of a class and keeps the first that still shows the class, until none does.
//!
//! Reductions: drop a file, drop halves then single lines, drop a member, drop a CR, drop a Pod
//! field or the volume or `USER`, and lower an id to the smallest of the same kind (the first gid
//! beyond the API's range, 65536, 1000).

use crate::etc;

use super::generate::{self, GenCase};

/// Greedy shrinking of one case, driven from outside: [`Shrinker::window`] gives the next
/// candidates to run, [`Shrinker::observe`] says which of them (the first, in order) still shows
/// the class. The same answers give the same minimal case.
#[derive(Debug, Clone)]
pub struct Shrinker {
    pub current: GenCase,
    candidates: Vec<GenCase>,
    offset: usize,
    window: usize,
    max_steps: usize,
    /// Reductions kept so far.
    pub steps: usize,
    /// Candidates handed out so far.
    pub tried: usize,
}

impl Shrinker {
    pub fn new(case: GenCase, window: usize, max_steps: usize) -> Shrinker {
        Shrinker { candidates: loadable_candidates(&case), current: case, offset: 0, window: window.max(1), max_steps, steps: 0, tried: 0 }
    }

    /// Nothing smaller is left to try, or the step limit is reached.
    pub fn is_done(&self) -> bool {
        self.steps >= self.max_steps || self.offset >= self.candidates.len()
    }

    /// The next candidates, most reducing first; empty when done.
    pub fn window(&self) -> &[GenCase] {
        if self.is_done() {
            return &[];
        }
        &self.candidates[self.offset..(self.offset + self.window).min(self.candidates.len())]
    }

    /// `kept`: the index in the last window of the first candidate that still shows the class.
    pub fn observe(&mut self, kept: Option<usize>) {
        self.tried += self.window().len();
        match kept.and_then(|k| self.window().get(k).cloned()) {
            Some(smaller) => {
                self.candidates = loadable_candidates(&smaller);
                self.current = smaller;
                self.offset = 0;
                self.steps += 1;
            }
            None => self.offset += self.window,
        }
    }
}

/// The candidates that load (one dropping the user a `USER` names does not).
fn loadable_candidates(case: &GenCase) -> Vec<GenCase> {
    candidates(case).into_iter().filter(|c| generate::catalogue(std::slice::from_ref(c)).is_ok()).collect()
}

/// Every one-step reduction of `case`, most reducing first; none equals `case`.
pub fn candidates(case: &GenCase) -> Vec<GenCase> {
    let mut out = Vec::new();
    for file in [File::Group, File::Passwd] {
        file_reductions(case, file, &mut out);
    }
    pod_reductions(case, &mut out);
    out.retain(|c| c != case);
    let mut unique: Vec<GenCase> = Vec::with_capacity(out.len());
    for c in out {
        if !unique.contains(&c) {
            unique.push(c);
        }
    }
    unique
}

#[derive(Clone, Copy)]
enum File {
    Passwd,
    Group,
}

fn lines(case: &GenCase, file: File) -> &Option<Vec<String>> {
    match file {
        File::Passwd => &case.passwd,
        File::Group => &case.group,
    }
}

fn lines_of(case: &mut GenCase, file: File) -> &mut Option<Vec<String>> {
    match file {
        File::Passwd => &mut case.passwd,
        File::Group => &mut case.group,
    }
}

fn with(case: &GenCase, change: impl FnOnce(&mut GenCase)) -> GenCase {
    let mut c = case.clone();
    change(&mut c);
    c
}

fn file_reductions(case: &GenCase, file: File, out: &mut Vec<GenCase>) {
    let Some(lines) = lines(case, file) else { return };
    out.push(with(case, |c| *lines_of(c, file) = None));
    // Halves, quarters, ... then single lines (ddmin's order).
    let mut chunk = lines.len() / 2;
    while chunk >= 1 {
        for start in (0..lines.len()).step_by(chunk) {
            let kept: Vec<String> = lines.iter().enumerate().filter(|(i, _)| *i < start || *i >= start + chunk).map(|(_, l)| l.clone()).collect();
            out.push(with(case, |c| *lines_of(c, file) = Some(kept)));
        }
        chunk /= 2;
    }
    for (i, line) in lines.iter().enumerate() {
        for smaller in line_reductions(line, matches!(file, File::Group)) {
            let mut changed = lines.clone();
            changed[i] = smaller;
            out.push(with(case, |c| *lines_of(c, file) = Some(changed)));
        }
    }
}

/// A line without its CR, without one member, with a lower gid.
fn line_reductions(line: &str, group: bool) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(bare) = line.strip_suffix('\r') {
        out.push(bare.to_string());
    }
    if !group || etc::is_layout_line(line) {
        return out;
    }
    let fields: Vec<&str> = line.split(':').collect();
    if fields.len() != 4 {
        return out;
    }
    let members: Vec<&str> = fields[3].split(',').collect();
    if !fields[3].is_empty() {
        for skip in 0..members.len() {
            let kept: Vec<&str> = members.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, m)| *m).collect();
            out.push(format!("{}:{}:{}:{}", fields[0], fields[1], fields[2], kept.join(",")));
        }
    }
    if let Ok(gid) = fields[2].parse::<u32>() {
        for lower in lower_ids(gid) {
            out.push(format!("{}:{}:{lower}:{}", fields[0], fields[1], fields[3]));
        }
    }
    out
}

/// Smaller ids of the same kind: beyond the API's range stays beyond it.
fn lower_ids(id: u32) -> Vec<u32> {
    [2_147_483_648, 65_536, 1000].into_iter().filter(|&lower| lower < id).collect()
}

fn pod_reductions(case: &GenCase, out: &mut Vec<GenCase>) {
    if case.volume_gid.is_some() {
        out.push(with(case, |c| c.volume_gid = None));
    }
    if case.fs_group.is_some() {
        out.push(with(case, |c| c.fs_group = None));
    }
    if case.run_as_group.is_some() {
        out.push(with(case, |c| c.run_as_group = None));
    }
    for i in 0..case.supplemental_groups.len() {
        out.push(with(case, |c| {
            c.supplemental_groups.remove(i);
        }));
    }
    if case.run_as_user.is_some() {
        out.push(with(case, |c| c.run_as_user = None));
    }
    if case.user.is_some() {
        out.push(with(case, |c| c.user = None));
    }
    if let Some(user) = &case.user {
        if let Some((name, _)) = user.split_once(':') {
            out.push(with(case, |c| c.user = Some(name.to_string())));
        }
    }
    for (i, gid) in case.supplemental_groups.iter().enumerate() {
        for lower in lower_ids(*gid).into_iter().filter(|g| *g <= crate::identity::MAX_POD_ID) {
            out.push(with(case, |c| c.supplemental_groups[i] = lower));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case() -> GenCase {
        GenCase {
            name: "t".into(),
            origin: "test".into(),
            user: Some("alice:staff".into()),
            passwd: Some(vec!["root:x:0:0:root:/root:/bin/sh".into(), "alice:x:1000:1000::/home/alice:/bin/sh".into()]),
            group: Some(vec!["root:x:0:\r".into(), "big:x:4294967294:alice,bob".into()]),
            run_as_user: Some(1000),
            run_as_group: None,
            supplemental_groups: vec![60000],
            fs_group: None,
            volume_gid: None,
            policy: None,
        }
    }

    #[test]
    fn candidates_are_smaller_and_distinct() {
        let all = candidates(&case());
        assert!(all.iter().all(|c| *c != case()));
        assert!(all.iter().any(|c| c.group.is_none()), "drop the file");
        assert!(all.iter().any(|c| c.group.as_ref().is_some_and(|g| g.len() == 1)), "drop a line");
        let has_line = |at: usize, line: &str| all.iter().any(|c| c.group.as_ref().is_some_and(|g| g.len() == 2 && g[at] == line));
        assert!(has_line(1, "big:x:4294967294:alice"), "drop a member");
        assert!(has_line(1, "big:x:2147483648:alice,bob"), "lower beyond the API's range");
        assert!(!has_line(1, "big:x:2147483647:alice,bob"), "never lower into the API's range");
        assert!(has_line(0, "root:x:0:"), "drop the CR");
        assert!(all.iter().any(|c| c.user.as_deref() == Some("alice")), "drop USER's group");
        assert!(all.iter().any(|c| c.supplemental_groups.is_empty()));
        for (i, a) in all.iter().enumerate() {
            assert!(!all[i + 1..].contains(a), "duplicate candidate {a:?}");
        }
    }

    /// containerd 2.x with runc, as recorded (`matrix.yaml`, `gid-4294967294`): a user that
    /// `/etc/group` puts in a gid above 2147483647 is refused under default and Merge.
    fn refused_like_containerd_2(case: &GenCase) -> bool {
        let Ok(catalogue) = generate::catalogue(std::slice::from_ref(case)) else { return false };
        let (recipe, scenario) = (&catalogue.images[0], &catalogue.scenarios[0]);
        let derivation = crate::oracle::derive(recipe, &scenario.spec(), crate::scenario::Policy::Merge).unwrap();
        let refused = derivation.identity.groups.iter().any(|g| g > crate::identity::MAX_POD_ID);
        refused
    }

    fn shrink_with(start: GenCase, shows: impl Fn(&GenCase) -> bool) -> Shrinker {
        let mut shrinker = Shrinker::new(start, 4, 100);
        while !shrinker.is_done() {
            let kept = shrinker.window().iter().position(&shows);
            shrinker.observe(kept);
        }
        shrinker
    }

    #[test]
    fn a_generated_refusal_shrinks_to_one_group_line_the_same_way_every_time() {
        let start = generate::generate(7, 200).into_iter().find(refused_like_containerd_2).expect("seed 7 generates a large-gid membership");
        let minimal = shrink_with(start.clone(), refused_like_containerd_2);
        assert!(refused_like_containerd_2(&minimal.current), "the class still shows");
        assert_eq!(minimal.current.group.as_ref().map(Vec::len), Some(1), "{:#?}", minimal.current);
        assert!(minimal.current.passwd.as_ref().is_some_and(|p| p.len() <= 1), "{:#?}", minimal.current);
        assert!(minimal.current.supplemental_groups.is_empty() && minimal.current.fs_group.is_none() && minimal.current.volume_gid.is_none());
        assert!(minimal.steps > 0 && minimal.tried >= minimal.steps);
        assert_eq!(shrink_with(start, refused_like_containerd_2).current, minimal.current, "deterministic");
    }

    #[test]
    fn a_shrinker_stops_at_its_step_limit() {
        let start = generate::generate(7, 200).into_iter().find(refused_like_containerd_2).unwrap();
        let mut shrinker = Shrinker::new(start, 4, 2);
        while !shrinker.is_done() {
            let kept = shrinker.window().iter().position(refused_like_containerd_2);
            shrinker.observe(kept);
        }
        assert_eq!(shrinker.steps, 2);
    }

    #[test]
    fn a_case_with_nothing_left_has_no_candidates() {
        let bare = GenCase { user: None, passwd: None, group: None, run_as_user: None, supplemental_groups: Vec::new(), ..case() };
        assert!(candidates(&bare).is_empty());
    }
}
