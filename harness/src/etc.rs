//! Parsers for the image's `/etc/passwd` and `/etc/group`, as the runtimes read them.
//!
//! Runtimes skip lines they cannot parse; [`parse_passwd`] and [`parse_group`] report them instead,
//! so that an image recipe cannot carry a malformed line by accident.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LineError {
    #[error("expected {expected} colon-separated fields, found {found}")]
    FieldCount { expected: usize, found: usize },
    #[error("field `{field}` must be a number from 0 to 4294967295, found {value:?}")]
    BadId { field: &'static str, value: String },
    #[error("the name field is empty")]
    EmptyName,
}

fn parse_id(field: &'static str, value: &str) -> Result<u32, LineError> {
    value.parse().map_err(|_| LineError::BadId { field, value: value.to_string() })
}

fn split_fields(line: &str, expected: usize) -> Result<Vec<&str>, LineError> {
    let fields: Vec<&str> = line.split(':').collect();
    if fields.len() != expected {
        return Err(LineError::FieldCount { expected, found: fields.len() });
    }
    if fields[0].is_empty() {
        return Err(LineError::EmptyName);
    }
    Ok(fields)
}

/// Parses one `/etc/passwd` line: `name:password:uid:gid:gecos:home:shell`.
pub fn parse_passwd(line: &str) -> Result<PasswdEntry, LineError> {
    let f = split_fields(line, 7)?;
    Ok(PasswdEntry { name: f[0].to_string(), uid: parse_id("uid", f[2])?, gid: parse_id("gid", f[3])? })
}

/// Parses one `/etc/group` line: `name:password:gid:member,member`.
pub fn parse_group(line: &str) -> Result<GroupEntry, LineError> {
    let f = split_fields(line, 4)?;
    let members = f[3].split(',').filter(|m| !m.is_empty()).map(str::to_string).collect();
    Ok(GroupEntry { name: f[0].to_string(), gid: parse_id("gid", f[2])?, members })
}

/// How a reader may read an image's `/etc/group` where the specs are silent.
///
/// POSIX defines group membership (`getgrnam`, `initgroups`) but not the file; group(5) gives
/// the fields (`name:password:GID:user_list`, members separated by `,`) and nothing about
/// comments, whitespace or line endings. So each reading below is allowed, and where they give
/// different groups for a case, the model offers each outcome as an allowed alternative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reading {
    /// glibc's `nss_files` (what `getgrent(3)`/`initgroups(3)` read on Linux): blank lines and
    /// lines whose first non-blank character is `#` are skipped (`internal_getent`), the GID is
    /// read by `strtoul` (leading blanks skipped), and leading blanks of each member are
    /// skipped (`parse_list`: "Skip leading white space"); anything else, a final `\r`
    /// included, is part of the name.
    Glibc,
    /// group(5)'s format taken literally: every field is exactly the text between `:`, every
    /// member the text between `,`; group(5) defines no comment syntax, so a `#` line is a
    /// group whose name starts with `#`.
    Literal,
    /// Whitespace (a final `\r` included) around every field and member dropped, comments
    /// skipped: no valid user or group name contains whitespace (POSIX.1-2017 3.437 User Name,
    /// the portable filename character set), so a reader may treat it as layout.
    Trimmed,
}

impl Reading {
    pub const ALL: [Reading; 3] = [Reading::Glibc, Reading::Literal, Reading::Trimmed];

    /// One line for reports: the reading and where it comes from.
    pub fn describe(self) -> &'static str {
        match self {
            Reading::Glibc => "the image's /etc/group read as glibc's getgrent(3) reads it (comments skipped, leading blanks of members skipped, a final \\r kept)",
            Reading::Literal => "the image's /etc/group read literally as group(5) lays it out (no comments, every byte between separators is part of a name)",
            Reading::Trimmed => "the image's /etc/group with whitespace and a final \\r around names dropped (no valid name contains whitespace, POSIX.1-2017 3.437)",
        }
    }
}

/// A line of an image's `/etc/group` as one [`Reading`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLine {
    /// 1-based line number in the file.
    pub number: usize,
    pub text: String,
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

fn is_comment_or_blank(text: &str) -> bool {
    let rest = text.trim_start();
    rest.is_empty() || rest.starts_with('#')
}

fn read_group_line(text: &str, reading: Reading) -> Option<(String, u32, Vec<String>)> {
    if text.trim().is_empty() || (reading != Reading::Literal && is_comment_or_blank(text)) {
        return None;
    }
    let line = match reading {
        Reading::Glibc => text.trim_start(),
        Reading::Literal => text,
        Reading::Trimmed => text.trim(),
    };
    let fields: Vec<&str> = line.split(':').collect();
    let (name, gid, list) = (fields.first()?, fields.get(2)?, fields.get(3).copied().unwrap_or(""));
    let gid = match reading {
        Reading::Glibc => gid.trim_start().parse().ok()?,
        Reading::Literal => gid.parse().ok()?,
        Reading::Trimmed => gid.trim().parse().ok()?,
    };
    let members = list
        .split(',')
        .map(|m| match reading {
            Reading::Glibc => m.trim_start(),
            Reading::Literal => m,
            Reading::Trimmed => m.trim(),
        })
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect();
    let name = if reading == Reading::Trimmed { name.trim() } else { name };
    Some((name.to_string(), gid, members))
}

/// Every line of a group file that carries a gid under `reading`.
pub fn read_group(lines: &[String], reading: Reading) -> Vec<GroupLine> {
    lines
        .iter()
        .enumerate()
        .filter_map(|(index, text)| {
            let (name, gid, members) = read_group_line(text, reading)?;
            Some(GroupLine { number: index + 1, text: text.clone(), name, gid, members })
        })
        .collect()
}

/// Every line that carries a gid under any reading: to say where an observed group came from,
/// never to decide what a runtime must attach.
pub fn lenient_group_lines(lines: &[String]) -> Vec<GroupLine> {
    let mut out: Vec<GroupLine> = Vec::new();
    for reading in [Reading::Trimmed, Reading::Literal] {
        for line in read_group(lines, reading) {
            if !out.iter().any(|l| l.number == line.number) {
                out.push(line);
            }
        }
    }
    out.sort_by_key(|l| l.number);
    out
}

/// A comment or a blank line: no entry under glibc's reading, accepted in a recipe as it is.
pub fn is_layout_line(text: &str) -> bool {
    is_comment_or_blank(text.strip_suffix('\r').unwrap_or(text))
}

/// Why a planted line cannot be written into an image file as it is: a newline would split it,
/// and NUL or other control characters are no part of any real `/etc` file. A single `\r` at
/// the end is allowed: it is how a file with CRLF line endings looks.
pub fn forbidden_character(line: &str) -> Option<char> {
    line.strip_suffix('\r').unwrap_or(line).chars().find(|c| c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_line() {
        let e = parse_passwd("alice:x:1000:1000:Alice:/home/alice:/bin/sh").unwrap();
        assert_eq!(e, PasswdEntry { name: "alice".into(), uid: 1000, gid: 1000 });
    }

    #[test]
    fn group_line_with_members() {
        let e = parse_group("bypassed-group:x:50000:alice,bob").unwrap();
        assert_eq!(e.gid, 50000);
        assert_eq!(e.members, vec!["alice", "bob"]);
        assert!(parse_group("empty:x:1:").unwrap().members.is_empty());
    }

    #[test]
    fn lenient_lines_are_every_reading_together() {
        let lines = vec!["g:x:50000:alice\r".to_string(), "broken".into(), " h : x : 60000 : bob , alice ".into()];
        let read = lenient_group_lines(&lines);
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].number, read[0].gid, read[0].members.clone()), (1, 50000, vec!["alice".to_string()]));
        assert_eq!((read[1].number, read[1].gid, read[1].members.clone()), (3, 60000, vec!["bob".to_string(), "alice".into()]));
    }

    fn members(lines: &[&str], reading: Reading) -> Vec<(u32, Vec<String>)> {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        read_group(&lines, reading).into_iter().map(|l| (l.gid, l.members)).collect()
    }

    #[test]
    fn readings_differ_exactly_where_the_specs_are_silent() {
        let crlf = ["g:x:50000:alice\r"];
        assert_eq!(members(&crlf, Reading::Glibc), vec![(50000, vec!["alice\r".to_string()])]);
        assert_eq!(members(&crlf, Reading::Literal), vec![(50000, vec!["alice\r".to_string()])]);
        assert_eq!(members(&crlf, Reading::Trimmed), vec![(50000, vec!["alice".to_string()])]);
        let spaced = ["g:x:50000: alice ,bob"];
        assert_eq!(members(&spaced, Reading::Glibc), vec![(50000, vec!["alice ".to_string(), "bob".into()])]);
        assert_eq!(members(&spaced, Reading::Literal), vec![(50000, vec![" alice ".to_string(), "bob".into()])]);
        assert_eq!(members(&spaced, Reading::Trimmed), vec![(50000, vec!["alice".to_string(), "bob".into()])]);
        let commented = ["# a comment", "", "#g:x:50000:alice", "  #h:x:50001:alice"];
        assert!(members(&commented, Reading::Glibc).is_empty());
        assert!(members(&commented, Reading::Trimmed).is_empty());
        assert_eq!(members(&commented, Reading::Literal), vec![(50000, vec!["alice".to_string()]), (50001, vec!["alice".to_string()])]);
        let plain = ["root:x:0:", "g:x:50000:alice,bob"];
        for reading in Reading::ALL {
            assert_eq!(members(&plain, reading), vec![(0, vec![]), (50000, vec!["alice".to_string(), "bob".into()])], "{reading:?}");
        }
    }

    #[test]
    fn control_characters_are_found_but_a_final_cr_is_allowed() {
        assert_eq!(forbidden_character("g:x:1:alice\r"), None);
        assert_eq!(forbidden_character("g:x:1:alice\0"), Some('\0'));
        assert_eq!(forbidden_character("g:x:1:al\rice"), Some('\r'));
        assert_eq!(forbidden_character("g:x:1:a\tb"), Some('\t'));
    }

    #[test]
    fn malformed_lines_are_named() {
        assert_eq!(parse_passwd("alice:x:1000"), Err(LineError::FieldCount { expected: 7, found: 3 }));
        assert_eq!(
            parse_group("g:x:-1:"),
            Err(LineError::BadId { field: "gid", value: "-1".into() })
        );
        assert_eq!(
            parse_group("g:x:4294967296:"),
            Err(LineError::BadId { field: "gid", value: "4294967296".into() })
        );
        assert_eq!(parse_group(":x:1:"), Err(LineError::EmptyName));
    }
}
