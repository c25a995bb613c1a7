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
    #[error("field `{field}` must be a number from 0 to 4294967294, found {value:?}")]
    BadId { field: &'static str, value: String },
    #[error("the name field is empty")]
    EmptyName,
    #[error("the name contains blanks, which readers of /etc/passwd drop or keep differently")]
    BlankInName,
}

/// An id of a well-formed line: 0..=4294967294 (4294967295 is `(gid_t)-1`, which setgroups
/// refuses).
fn parse_id(field: &'static str, value: &str) -> Result<u32, LineError> {
    value.parse().ok().filter(|id| *id <= crate::identity::MAX_ID).ok_or_else(|| LineError::BadId { field, value: value.to_string() })
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

/// Parses one `/etc/passwd` line: `name:password:uid:gid:gecos:home:shell`. A name with
/// blanks is refused: readers trim them differently, and the model has one passwd reading.
pub fn parse_passwd(line: &str) -> Result<PasswdEntry, LineError> {
    let f = split_fields(line, 7)?;
    if f[0].chars().any(char::is_whitespace) {
        return Err(LineError::BlankInName);
    }
    Ok(PasswdEntry { name: f[0].to_string(), uid: parse_id("uid", f[2])?, gid: parse_id("gid", f[3])? })
}

/// Parses one `/etc/group` line: `name:password:gid:member,member`.
pub fn parse_group(line: &str) -> Result<GroupEntry, LineError> {
    let f = split_fields(line, 4)?;
    let members = f[3].split(',').filter(|m| !m.is_empty()).map(str::to_string).collect();
    Ok(GroupEntry { name: f[0].to_string(), gid: parse_id("gid", f[2])?, members })
}

/// Which blanks a reader drops (ASCII blanks; a final `\r` is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blanks {
    Kept,
    Leading,
    Around,
}

impl Blanks {
    pub const ALL: [Blanks; 3] = [Blanks::Kept, Blanks::Leading, Blanks::Around];

    fn apply(self, text: &str) -> &str {
        let blank = |c: char| c.is_ascii_whitespace();
        match self {
            Blanks::Kept => text,
            Blanks::Leading => text.trim_start_matches(blank),
            Blanks::Around => text.trim_matches(blank),
        }
    }

    fn describe(self, of: &str) -> String {
        match self {
            Blanks::Kept => format!("blanks in {of} kept"),
            Blanks::Leading => format!("blanks before {of} dropped"),
            Blanks::Around => format!("blanks around {of} dropped"),
        }
    }
}

/// One way to read an image's `/etc/group` where the specs are silent.
///
/// POSIX defines group membership (`getgrnam`, `initgroups`) but not the file; group(5) gives
/// the fields (`name:password:GID:user_list`, members separated by `,`) and nothing about
/// comments, blanks, line endings, extra fields or a GID that is no number. Each of those
/// choices is open, readers make them differently, and so every combination is allowed: where
/// combinations give different groups for a case, the model offers each outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// A line whose first non-blank character is `#` is no entry (glibc's `getgrent`,
    /// `internal_getent`; not glibc's `initgroups`, files-initgroups.c, which parses every line).
    pub comments: bool,
    /// Blanks of the whole line, a CRLF file's final `\r` included.
    pub line: Blanks,
    /// Blanks of each field: the GID and every member (glibc `parse_list`: "Skip leading white
    /// space"; Go readers split without trimming).
    pub fields: Blanks,
    /// The member list ends at the next `:` (a reader that splits the line on `:`), or runs to
    /// the end of the line (glibc: `name:x:1:alice:y` lists `alice:y`).
    pub list_ends_at_colon: bool,
    /// A GID that is no number is read as 0 (Go's `strconv.Atoi` error ignored, moby/sys/user),
    /// or the line is skipped (glibc).
    pub bad_gid_is_zero: bool,
}

impl Reading {
    /// glibc's `getgrent(3)`.
    pub const GETGRENT: Reading = Reading { comments: true, line: Blanks::Leading, fields: Blanks::Leading, list_ends_at_colon: false, bad_gid_is_zero: false };

    /// Every combination of the open choices, glibc's `getgrent` first.
    pub fn all() -> Vec<Reading> {
        let mut all = vec![Reading::GETGRENT];
        for comments in [true, false] {
            for line in Blanks::ALL {
                for fields in Blanks::ALL {
                    for list_ends_at_colon in [false, true] {
                        for bad_gid_is_zero in [false, true] {
                            let reading = Reading { comments, line, fields, list_ends_at_colon, bad_gid_is_zero };
                            if reading != Reading::GETGRENT {
                                all.push(reading);
                            }
                        }
                    }
                }
            }
        }
        all
    }

    /// The well-known reader that reads this way, if one does.
    pub fn known_reader(&self) -> Option<&'static str> {
        let known = [
            (Reading::GETGRENT, "glibc getgrent(3)"),
            (Reading { comments: false, line: Blanks::Kept, fields: Blanks::Leading, list_ends_at_colon: false, bad_gid_is_zero: false }, "glibc initgroups(3)"),
            (Reading { comments: true, line: Blanks::Around, fields: Blanks::Kept, list_ends_at_colon: true, bad_gid_is_zero: true }, "moby/sys/user, which containerd and CRI-O use"),
            (Reading { comments: false, line: Blanks::Kept, fields: Blanks::Kept, list_ends_at_colon: true, bad_gid_is_zero: false }, "group(5) taken literally"),
        ];
        known.iter().find(|(r, _)| r == self).map(|(_, name)| *name)
    }

    /// The choices this reading makes, in words (the model adds the known readers that make
    /// them).
    pub fn choices(&self) -> String {
        format!(
            "/etc/group read with comments {}, {}, {}, the member list ending {}, a GID that is no number {}",
            if self.comments { "skipped" } else { "read as entries" },
            self.line.describe("lines"),
            self.fields.describe("fields"),
            if self.list_ends_at_colon { "at the next ':'" } else { "at the end of the line" },
            if self.bad_gid_is_zero { "read as 0" } else { "skipping its line" },
        )
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
    let rest = text.trim_start_matches(|c: char| c.is_ascii_whitespace());
    rest.is_empty() || rest.starts_with('#')
}

fn read_group_line(text: &str, reading: Reading) -> Option<(String, u32, Vec<String>)> {
    if text.trim_matches(|c: char| c.is_ascii_whitespace()).is_empty() || (reading.comments && is_comment_or_blank(text)) {
        return None;
    }
    let line = reading.line.apply(text);
    let mut fields = line.splitn(4, ':');
    let (name, _password, gid) = (fields.next()?, fields.next()?, fields.next()?);
    let list = fields.next().unwrap_or("");
    let list = if reading.list_ends_at_colon { list.split(':').next().unwrap_or("") } else { list };
    let gid = match reading.fields.apply(gid).parse::<u32>().ok().filter(|g| *g <= crate::identity::MAX_ID) {
        Some(gid) => gid,
        None if reading.bad_gid_is_zero => 0,
        None => return None,
    };
    let members = list.split(',').map(|m| reading.fields.apply(m)).filter(|m| !m.is_empty()).map(str::to_string).collect();
    Some((reading.fields.apply(name).to_string(), gid, members))
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

/// Every line that carries a gid under some reading, as glibc's `getgrent` or the most lenient
/// reading sees it: to say where an observed group came from, never to decide what a runtime
/// must attach.
pub fn lenient_group_lines(lines: &[String]) -> Vec<GroupLine> {
    let lenient = Reading { comments: false, line: Blanks::Around, fields: Blanks::Around, list_ends_at_colon: false, bad_gid_is_zero: false };
    let mut out = read_group(lines, Reading::GETGRENT);
    for line in read_group(lines, lenient) {
        if !out.iter().any(|l| l.number == line.number) {
            out.push(line);
        }
    }
    out.sort_by_key(|l| l.number);
    out
}

/// A comment or a blank line: planted in a recipe as it is, read as the readings read it.
pub fn is_layout_line(text: &str) -> bool {
    is_comment_or_blank(text.strip_suffix('\r').unwrap_or(text))
}

/// Why a planted line cannot be written into an image file as it is: a newline would split it,
/// and NUL or other control characters are no part of any real `/etc` file. A single `\r` at
/// the end is allowed: it is how a file with CRLF line endings looks.
pub fn forbidden_character(line: &str) -> Option<char> {
    // Non-ASCII blanks (U+00A0...) are blanks to Go's strings.TrimSpace, not to C's isspace:
    // readers would disagree on them in ways the model does not follow.
    line.strip_suffix('\r').unwrap_or(line).chars().find(|c| crate::input::is_unprintable(*c) || (c.is_whitespace() && !c.is_ascii()))
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
        assert_eq!((read[0].number, read[0].gid), (1, 50000));
        assert_eq!((read[1].number, read[1].gid, read[1].members.clone()), (3, 60000, vec!["bob".to_string(), "alice".into()]));
    }

    fn members(lines: &[&str], reading: Reading) -> Vec<(u32, Vec<String>)> {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        read_group(&lines, reading).into_iter().map(|l| (l.gid, l.members)).collect()
    }

    fn reader(name: &str) -> Reading {
        Reading::all().into_iter().find(|r| r.known_reader().is_some_and(|k| k.starts_with(name))).unwrap()
    }

    #[test]
    fn known_readers_read_as_their_sources_say() {
        let (getgrent, initgroups, moby, literal) = (reader("glibc getgrent"), reader("glibc initgroups"), reader("moby"), reader("group(5)"));
        let crlf = ["g:x:50000:alice\r"];
        assert_eq!(members(&crlf, getgrent), [(50000, vec!["alice\r".to_string()])]);
        assert_eq!(members(&crlf, moby), [(50000, vec!["alice".to_string()])]);
        let spaced = ["g:x:50000: alice ,bob"];
        assert_eq!(members(&spaced, getgrent), [(50000, vec!["alice ".to_string(), "bob".into()])]);
        assert_eq!(members(&spaced, moby), [(50000, vec![" alice ".to_string(), "bob".into()])]);
        let commented = ["# a comment", "", "#g:x:50001: alice"];
        assert!(members(&commented, getgrent).is_empty());
        assert!(members(&commented, moby).is_empty());
        assert_eq!(members(&commented, initgroups), [(50001, vec!["alice".to_string()])], "initgroups parses every line");
        assert_eq!(members(&commented, literal), [(50001, vec![" alice".to_string()])]);
        let extra = ["g:x:50000:alice:y", "h:x: 50001 :alice"];
        assert_eq!(members(&extra, getgrent), [(50000, vec!["alice:y".to_string()])]);
        assert_eq!(members(&extra, moby), [(50000, vec!["alice".to_string()]), (0, vec!["alice".to_string()])], "Atoi's error is ignored");
        let plain = ["root:x:0:", "g:x:50000:alice,bob"];
        for reading in Reading::all() {
            assert_eq!(members(&plain, reading), [(0, vec![]), (50000, vec!["alice".to_string(), "bob".into()])], "{reading:?}");
        }
        assert_eq!(Reading::all().len(), 72);
        assert_eq!(Reading::all()[0], Reading::GETGRENT);
    }

    #[test]
    fn control_characters_are_found_but_a_final_cr_is_allowed() {
        assert_eq!(forbidden_character("g:x:1:alice\r"), None);
        assert_eq!(forbidden_character("g:x:1:alice\0"), Some('\0'));
        assert_eq!(forbidden_character("g:x:1:al\rice"), Some('\r'));
        assert_eq!(forbidden_character("g:x:1:a\tb"), Some('\t'));
        assert_eq!(forbidden_character("g:x:1:\u{a0}alice"), Some('\u{a0}'));
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
        assert_eq!(parse_group("g:x:4294967295:"), Err(LineError::BadId { field: "gid", value: "4294967295".into() }), "(gid_t)-1");
        assert_eq!(parse_group(":x:1:"), Err(LineError::EmptyName));
        assert_eq!(parse_passwd(" alice:x:1000:1000::/:/bin/sh"), Err(LineError::BlankInName));
    }
}
