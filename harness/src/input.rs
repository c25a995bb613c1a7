//! Reading sgpc's own input files (scenarios and image recipes).
//!
//! Every problem with an input file becomes an [`InputError`] that names the file, the line where
//! known, the field, and what was expected, in the form `file:line: field: message`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A problem with one of sgpc's input files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub path: PathBuf,
    pub line: Option<u64>,
    /// Dotted path of the offending field (`pod.securityContext.runAsUser`), when known.
    pub field: Option<String>,
    pub message: String,
}

impl InputError {
    pub fn new(path: &Path, line: Option<u64>, field: Option<&str>, message: impl Into<String>) -> Self {
        InputError {
            path: path.to_path_buf(),
            line,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InputError {}

/// The largest input file sgpc reads (a scenario, a recipe, a matrix): the largest shipped
/// is a few KiB, and every line of a file is held to the model's readings.
pub const MAX_INPUT_BYTES: u64 = 1 << 20;

/// Reads an input file as text: a regular file only (not a link to elsewhere, a FIFO or a
/// device), at most [`MAX_INPUT_BYTES`]. Nothing of a file that is refused is echoed.
pub fn read_text(path: &Path) -> Result<String, InputError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let refuse = |message: String| InputError::new(path, None, None, message);
    // O_NONBLOCK: a FIFO opens at once instead of waiting for a writer, and is refused below.
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => refuse("is a symbolic link; give the file it points to".into()),
        _ => refuse(format!("cannot read file: {e}")),
    })?;
    let meta = file.metadata().map_err(|e| refuse(format!("cannot read file: {e}")))?;
    if !meta.is_file() {
        return Err(refuse("is not a regular file (a directory, FIFO, socket or device is no input)".into()));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(refuse(format!("is {} bytes; an input file may have at most {MAX_INPUT_BYTES}", meta.len())));
    }
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes).map_err(|e| refuse(format!("cannot read file: {e}")))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(refuse(format!("grew past {MAX_INPUT_BYTES} bytes while being read")));
    }
    String::from_utf8(bytes).map_err(|e| refuse(format!("is not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))
}

/// Reads and deserializes a YAML file, mapping parse errors to [`InputError`].
pub fn read_yaml<T: DeserializeOwned>(path: &Path) -> Result<T, InputError> {
    parse_yaml(path, &read_text(path)?)
}

/// Deserializes YAML text that came from `path`, mapping parse errors to [`InputError`] with
/// the dotted path of the field being read (serde_path_to_error over serde-saphyr's
/// deserializer).
pub fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, InputError> {
    let mut field = String::new();
    serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            field = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| {
        let e = e.without_snippet();
        let line = e.location().map(|l| l.line());
        // serde-saphyr's `Spanned<T>` reads its value as a field named `value`; no sgpc schema
        // has a field of that name, so it is the wrapper's, not the user's.
        let field = Some(field.trim_end_matches(".value")).filter(|f| !f.is_empty() && *f != ".");
        InputError::new(path, line, field, e.to_string())
    })
}

/// Lists the `*.yaml` files of a directory, sorted by name so that runs are reproducible.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, InputError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| InputError::new(dir, None, None, format!("cannot list directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| InputError::new(dir, None, None, e.to_string()))?.path();
        if path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A character refused in anything sgpc prints from input, so that a report reads as it is:
/// a control character, or an invisible formatting one ([`is_invisible`]).
pub fn is_unprintable(c: char) -> bool {
    c.is_control() || is_invisible(c)
}

/// Unicode formatting characters that change how text displays without being seen (bidi
/// overrides and isolates, zero-width characters, line and paragraph separators, the BOM).
pub fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// The last `n` lines of a text (a log's tail, for an error message).
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Text from outside sgpc (a runtime's error, a log line) made safe to print: every
/// unprintable character but the line break and the tab is written as a Rust escape (`\u{1b}`), so that it
/// can neither redraw a terminal nor hide in a report.
pub fn escape_unprintable(text: &str) -> String {
    text.chars().map(|c| if c != '\n' && c != '\t' && is_unprintable(c) { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

/// The same on one line: a line break or tab from outside is escaped too, so that it cannot
/// print a line of its own (a forged "0 findings", say).
pub fn one_line(text: &str) -> String {
    text.chars().map(|c| if is_unprintable(c) { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_escapes_line_breaks_too() {
        assert_eq!(super::one_line("a\nb: 0 findings\u{1b}]0;t\u{7}"), "a\\u{a}b: 0 findings\\u{1b}]0;t\\u{7}");
    }

    #[test]
    fn escapes_keep_lines_and_tabs_and_defuse_the_rest() {
        assert_eq!(super::escape_unprintable("a\tb\nc\u{1b}[2Kd\u{202e}"), "a\tb\nc\\u{1b}[2Kd\\u{202e}");
    }
}
