//! The catalogue compiled into the binary (`build.rs` lists the repository's `scenarios/` and
//! `images/`): what sgpc runs when no `--scenarios` or `--images` directory is given, so that
//! the binary alone works from any directory.

use std::path::{Path, PathBuf};

use crate::input::{self, InputError};

mod generated {
    include!(concat!(env!("OUT_DIR"), "/catalogue.rs"));
}

/// How a built-in file is named in messages: never a path someone's directory could hold.
pub const PREFIX: &str = "(built in)";

/// The catalogue files of one kind (`scenarios` or `images`): every YAML file of `dir`, read
/// with the input limits (a directory without any is an error), or the built-in ones where `dir`
/// is `None`. Each comes with the path that messages name.
pub fn files(dir: Option<&Path>, kind: &str) -> Result<Vec<(PathBuf, String)>, InputError> {
    match dir {
        Some(dir) => {
            let paths = input::yaml_files(dir)?;
            if paths.is_empty() {
                return Err(InputError::new(dir, None, None, format!("no *.yaml files found: expected the {kind} of a catalogue")));
            }
            paths.into_iter().map(|path| input::read_text(&path).map(|text| (path, text))).collect()
        }
        None => Ok(generated::FILES
            .iter()
            .filter(|(path, _)| path.strip_prefix(kind).is_some_and(|rest| rest.starts_with('/')))
            .map(|(path, text)| (Path::new(PREFIX).join(path), (*text).to_string()))
            .collect()),
    }
}

/// Where a catalogue part comes from, as every command that loads one says on stderr.
pub fn describe(dir: Option<&Path>, kind: &str) -> String {
    match dir {
        Some(dir) => format!("{kind} from {}", dir.display()),
        None => format!("{kind} built in"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_catalogue_holds_both_kinds_and_names_them_as_built_in() {
        let scenarios = files(None, "scenarios").unwrap();
        let images = files(None, "images").unwrap();
        assert!(scenarios.iter().any(|(p, _)| p == Path::new("(built in)/scenarios/kep-blog.yaml")), "{scenarios:?}");
        assert!(!images.is_empty() && images.iter().all(|(p, _)| p.starts_with("(built in)/images")));
        assert!(files(None, "scen").unwrap().is_empty(), "a kind is a whole directory name");
    }
}
