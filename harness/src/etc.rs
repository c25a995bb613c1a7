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

/// A line of an image's `/etc/group`, read as leniently as runtimes read it: a trailing `\r`
/// is dropped and whitespace around every field and member is trimmed. Used to say where an
/// observed group came from, never to decide what a runtime must attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLine {
    /// 1-based line number in the file.
    pub number: usize,
    pub text: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Every line of a group file that carries a gid, read leniently (see [`GroupLine`]).
pub fn lenient_group_lines(lines: &[String]) -> Vec<GroupLine> {
    lines
        .iter()
        .enumerate()
        .filter_map(|(index, text)| {
            let fields: Vec<&str> = text.trim_end_matches('\r').split(':').map(str::trim).collect();
            let gid = fields.get(2)?.parse().ok()?;
            let members = fields.get(3).map(|m| m.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_string).collect()).unwrap_or_default();
            Some(GroupLine { number: index + 1, text: text.clone(), gid, members })
        })
        .collect()
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
    fn lenient_lines_drop_cr_and_spaces() {
        let lines = vec!["g:x:50000:alice\r".to_string(), "broken".into(), " h : x : 60000 : bob , alice ".into()];
        let read = lenient_group_lines(&lines);
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].number, read[0].gid, read[0].members.clone()), (1, 50000, vec!["alice".to_string()]));
        assert_eq!((read[1].number, read[1].gid, read[1].members.clone()), (3, 60000, vec!["bob".to_string(), "alice".into()]));
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
