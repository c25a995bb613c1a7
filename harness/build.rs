//! Compiles the programs sgpc plants in its crafted images (`programs/*.c`) as small static
//! executables, so that no image needs them from a host package. The compiler is `$CC`, else
//! `cc`; the output is reproducible (no build id, stripped), so images stay byte-identical.

use std::path::PathBuf;
use std::process::Command;

const PROGRAMS: &[&str] = &["escalate"];

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
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
