//! Compiles the programs sgpc plants in its crafted images (`programs/*.c`) as small static
//! executables, so that no image needs them from a host package. The compiler is `$CC`, else
//! `cc`; the output is reproducible (no build id, stripped), so images stay byte-identical.
//! Also lists the catalogue (`scenarios/*.yaml`, `images/*.yaml` of the repository) for
//! `include_str!`, so that the binary carries the catalogue it was built with.

use std::path::PathBuf;
use std::process::Command;

const PROGRAMS: &[&str] = &["escalate", "pause", "probe"];

/// The catalogue's directories, relative to the repository root.
const CATALOGUE: &[&str] = &["scenarios", "images"];

/// Writes `catalogue.rs`: `FILES`, every catalogue file as (path relative to the repository, text).
fn embed_catalogue(out_dir: &std::path::Path) {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in CATALOGUE {
        let path = root.join(dir);
        println!("cargo:rerun-if-changed={}", path.display());
        let entries = std::fs::read_dir(&path).unwrap_or_else(|e| panic!("cannot list the catalogue directory {}: {e}", path.display()));
        for entry in entries {
            let file = entry.expect("a directory entry").path();
            if file.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                let name = file.file_name().expect("a file name").to_string_lossy().into_owned();
                files.push((format!("{dir}/{name}"), file.canonicalize().expect("a catalogue file")));
            }
        }
    }
    files.sort();
    let mut code = String::from("pub const FILES: &[(&str, &str)] = &[\n");
    for (relative, absolute) in &files {
        code.push_str(&format!("    ({relative:?}, include_str!({:?})),\n", absolute.display().to_string()));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("catalogue.rs"), code).expect("writing catalogue.rs");
}

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    embed_catalogue(&out_dir);
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    println!("cargo:rerun-if-env-changed=CC");
    for program in PROGRAMS {
        let source = format!("programs/{program}.c");
        println!("cargo:rerun-if-changed={source}");
        let output = out_dir.join(program);
        let status = Command::new(&compiler)
            .args(["-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-Wl,--build-id=none", "-o"])
            .arg(&output)
            .arg(&source)
            .status()
            .unwrap_or_else(|e| panic!("cannot run the C compiler {compiler:?} for {source}: {e}; install Debian's `gcc` and `libc6-dev`"));
        assert!(status.success(), "{compiler} failed to build {source} as a static executable ({status}); static linking needs Debian's `libc6-dev`");
    }
}
