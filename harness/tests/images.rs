//! Crafted images are byte-reproducible and load in standard tools.

mod support;

use std::path::Path;
use std::process::Command;

fn build_into(out: &Path, extra_env: &[(&str, &str)]) -> String {
    let output = Command::new(support::sgpc_binary())
        .current_dir(support::repo_root())
        .args(["images", "build", "--out"])
        .arg(out)
        .envs(extra_env.iter().copied())
        .output()
        .expect("sgpc runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn archives_are_byte_identical_across_builds() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let listing_a = build_into(a.path(), &[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let listing_b = build_into(b.path(), &[("TZ", "Pacific/Kiritimati"), ("SOURCE_DATE_EPOCH", "1")]);
    let digests = |listing: &str| listing.lines().map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ")).collect::<Vec<_>>();
    assert_eq!(digests(&listing_a), digests(&listing_b));
    let recipes = std::fs::read_dir(support::repo_root().join("images")).unwrap().count();
    let mut archives = 0;
    for entry in std::fs::read_dir(a.path()).unwrap() {
        let name = entry.unwrap().file_name();
        let first = std::fs::read(a.path().join(&name)).unwrap();
        let second = std::fs::read(b.path().join(&name)).unwrap();
        assert!(first == second, "{name:?} differs between builds");
        archives += 1;
    }
    assert_eq!(archives, recipes + 1, "one archive per recipe plus the pause image");
}

fn skopeo_inspect(source: &str) -> serde_json::Value {
    let output = Command::new("skopeo").args(["inspect", "--raw", source]).output().expect("skopeo runs (make setup installs it)");
    assert!(output.status.success(), "skopeo refused {source}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn archives_load_as_oci_and_docker_archives() {
    let out = tempfile::tempdir().unwrap();
    let listing = build_into(out.path(), &[]);
    let line = listing.lines().find(|l| l.starts_with("kep-blog ")).expect("kep-blog is built");
    let digest = line.split_whitespace().nth(1).unwrap();
    let archive = out.path().join("kep-blog.oci.tar");

    let oci = skopeo_inspect(&format!("oci-archive:{}", archive.display()));
    assert_eq!(oci["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let docker = skopeo_inspect(&format!("docker-archive:{}", archive.display()));
    // The probe below, the recipe's /etc above: every crafted image shares the first layer.
    assert_eq!(docker["layers"].as_array().map(Vec::len), Some(2));
    let other = skopeo_inspect(&format!("docker-archive:{}", out.path().join("issue-112879.oci.tar").display()));
    assert_eq!(other["layers"][0], docker["layers"][0], "the probe layer is shared");
    assert_ne!(other["layers"][1], docker["layers"][1], "the /etc layers differ");

    let config = Command::new("skopeo").args(["inspect", "--config"]).arg(format!("oci-archive:{}", archive.display())).output().unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(config["config"]["User"], "1000", "the recipe's USER");
    assert!(digest.starts_with("sha256:"));
}

/// The images hold sgpc's own programs and the recipes' `/etc` files, nothing of the host's
/// (issue #23: before, every image held the host's busybox); the test lists every layer.
#[test]
fn archives_hold_no_host_file() {
    let out = tempfile::tempdir().unwrap();
    build_into(out.path(), &[]);
    support::assert_archives_hold_no_host_file(out.path());
}

/// The pause image runs sgpc's own pause program: it must exit at once on SIGTERM, or every
/// StopPodSandbox of a pod with an infra container waits out the runtime's grace period; and
/// the image holds nothing else.
#[test]
fn the_pause_entrypoint_exits_at_once_on_sigterm() {
    use std::os::unix::fs::PermissionsExt;
    let content = sgpc::image::ImageContent::pause();
    assert_eq!(content.entrypoint, ["/pause"]);
    assert_eq!(content.layers.len(), 1);
    assert_eq!(content.layers[0].len(), 1, "one file, the program");
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("pause");
    std::fs::write(&program, sgpc::image::PAUSE_PROGRAM).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut pause = std::process::Command::new(&program).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let sent = std::time::Instant::now();
    // SAFETY: kill(2) on the child just spawned and not yet reaped.
    unsafe { libc::kill(pause.id() as i32, libc::SIGTERM) };
    let status = pause.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(sent.elapsed() < std::time::Duration::from_secs(2), "took {:?}", sent.elapsed());
}

/// The probe every image runs (`programs/probe.c`), run here as uid 1000 with groups 3000 and
/// 50000: sgpc's own parser reads from it what the kernel gave the process, `id`'s fields and
/// `/proc/self/status` alike, and a file only group 50000 may read; `wait` exits 0 at once on
/// SIGTERM after printing everything; `prepare` plants a volume's token as kubelet's init
/// container must.
#[test]
fn the_probe_prints_what_the_kernel_gave_it() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let probe = dir.path().join("sgpc-probe");
    std::fs::write(&probe, sgpc::image::PROBE_PROGRAM).unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (group_file, private) = (dir.path().join("group-only"), dir.path().join("private"));
    for (file, mode) in [(&group_file, 0o640), (&private, 0o600)] {
        std::fs::write(file, "secret\n").unwrap();
        std::os::unix::fs::chown(file, Some(0), Some(50000)).unwrap();
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let files = format!("{} {}", group_file.display(), private.display());
    let run = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid", "1000", "--regid", "3000", "--groups", "50000,3000", "--"])
            .arg(&probe)
            .args(args)
            .env("SGPC_CASE", "probe/strict")
            .env("SGPC_PROBE_FILES", &files)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("setpriv (util-linux) runs")
    };
    let output = run(&[]).wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let parsed = sgpc::observation::parse_probe(&text, "probe/strict").unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!((parsed.id.0.uid, parsed.id.0.gid, parsed.id.1.clone()), (1000, 3000, vec![3000, 50000]), "{text}");
    assert_eq!(parsed.id.0, parsed.kernel.0, "`id`'s calls and /proc/self/status agree: {text}");
    assert_eq!(parsed.access[&group_file.display().to_string()].0, sgpc::scenario::Access::Allowed, "{text}");
    let (denied, detail) = &parsed.access[&private.display().to_string()];
    assert_eq!(*denied, sgpc::scenario::Access::Denied, "{text}");
    assert!(detail.contains("Permission denied"), "the verdict tells a permission from a missing file by this: {detail}");
    assert!(parsed.uid_map.is_some() && parsed.capabilities.is_some() && parsed.no_new_privs == Some(false), "{text}");
    assert!(sgpc::observation::parse_probe(&text, "other/strict").is_err(), "the case marker is checked");

    let waiting = run(&["wait"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let sent = std::time::Instant::now();
    // SAFETY: kill(2) on the child just spawned and not yet reaped.
    unsafe { libc::kill(waiting.id() as i32, libc::SIGTERM) };
    let output = waiting.wait_with_output().unwrap();
    assert!(output.status.success() && sent.elapsed() < std::time::Duration::from_secs(2), "{output:?} after {:?}", sent.elapsed());
    assert!(sgpc::observation::probe_finished(&String::from_utf8_lossy(&output.stdout)));

    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    let status = Command::new(&probe).args(["prepare", volume.to_str().unwrap(), "token", "secret of a/b; $(touch x)", "50000", "640", "2770"]).status().unwrap();
    assert!(status.success());
    let token = volume.join("token");
    assert_eq!(std::fs::read_to_string(&token).unwrap(), "secret of a/b; $(touch x)\n", "written as given, no shell");
    let (file, dir_meta) = (std::fs::metadata(&token).unwrap(), std::fs::metadata(&volume).unwrap());
    assert_eq!((file.gid(), file.mode() & 0o7777, dir_meta.gid(), dir_meta.mode() & 0o7777), (50000, 0o640, 50000, 0o2770));
    let usage = Command::new(&probe).arg("nonsense").output().unwrap();
    assert_eq!(usage.status.code(), Some(2));

    // 800 groups: a `Groups:` line of 5600 bytes is read whole, not cut into a wrong list.
    let many: Vec<String> = (100_000..100_800).map(|g| g.to_string()).collect();
    let output = Command::new("setpriv").args(["--reuid", "1000", "--regid", "3000", "--groups", &many.join(","), "--"]).arg(&probe).env("SGPC_CASE", "c").output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let parsed = sgpc::observation::parse_probe(&text, "c").unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(parsed.kernel.1.len(), 800);
    assert_eq!(parsed.id.1, parsed.kernel.1);
    assert_eq!(parsed.no_new_privs, Some(false), "the line after Groups: is a line of its own");
}

/// The probe runs exactly the escalation programs sgpc plants (`programs/probe.c` names them).
#[test]
fn the_probe_runs_the_escalation_programs_sgpc_plants() {
    let source = std::fs::read_to_string(support::repo_root().join("harness/programs/probe.c")).unwrap();
    let line = source.lines().find(|l| l.contains("ESCALATION_PROGRAMS[] =")).unwrap();
    let listed: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
    let planted: Vec<String> = sgpc::escalation::Program::ALL.iter().map(|p| p.path()).collect();
    assert_eq!(listed, planted);
}

/// The escalation image's programs, applied by GNU tar (not sgpc's reader): the setgid bit and
/// group survive, and the file capability is what `setcap cap_setgid+ep` writes.
#[test]
fn escalation_programs_keep_their_setgid_bit_and_file_capability() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let out = tempfile::tempdir().unwrap();
    build_into(out.path(), &[]);
    let unpacked = out.path().join("archive");
    std::fs::create_dir(&unpacked).unwrap();
    let archive = out.path().join("escalation.oci.tar");
    let tar = |args: &[&str], dir: &Path| {
        let status = Command::new("tar").args(args).current_dir(dir).status().expect("GNU tar runs");
        assert!(status.success(), "tar {args:?}");
    };
    tar(&["-xf", archive.to_str().unwrap()], &unpacked);
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    let top = manifest[0]["Layers"].as_array().unwrap().last().unwrap().as_str().unwrap().to_string();
    let rootfs = out.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    tar(&["--xattrs", "--xattrs-include=security.*", "--same-owner", "-xpzf", unpacked.join(top).to_str().unwrap()], &rootfs);

    let setgid = std::fs::metadata(rootfs.join("bin/sgpc-setgid")).unwrap();
    assert_eq!((setgid.permissions().mode() & 0o7777, setgid.gid()), (0o2755, 50000));
    let capsetgid = rootfs.join("bin/sgpc-capsetgid");
    let meta = std::fs::metadata(&capsetgid).unwrap();
    assert_eq!((meta.permissions().mode() & 0o7777, meta.gid()), (0o755, 50000));
    let path = std::ffi::CString::new(capsetgid.to_str().unwrap()).unwrap();
    let mut value = [0u8; 64];
    let len = unsafe { libc::getxattr(path.as_ptr(), c"security.capability".as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    assert!(len > 0, "no security.capability: {}", std::io::Error::last_os_error());
    // `setcap cap_setgid+ep FILE` then reading the attribute back (libcap 2.66).
    assert_eq!(hex::encode(&value[..len as usize]), "0100000240000000000000000000000000000000");
}

/// Layered recipes applied by skopeo and umoci, not by sgpc: each image's `/etc/passwd` and
/// `/etc/group` in the unpacked rootfs are what the model reads (`Recipe::passwd_lines`, the
/// OCI image spec's "Applying Changesets" as sgpc implements it).
#[test]
fn layers_applied_by_umoci_give_the_models_etc() {
    let out = tempfile::tempdir().unwrap();
    build_into(out.path(), &[]);
    let recipes = sgpc::image::Recipe::load_dir(&support::repo_root().join("images")).unwrap();
    let layered: Vec<_> = recipes.iter().filter(|r| r.etc_layers.len() > 1).collect();
    assert!(layered.len() >= 4, "the catalogue's layered recipes: {}", layered.len());
    let run = |program: &str, args: &[&str]| {
        let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program} runs (make setup installs it): {e}"));
        assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    for recipe in layered {
        let archive = out.path().join(format!("{}.oci.tar", recipe.name));
        let layout = out.path().join(format!("layout-{}", recipe.name));
        let bundle = out.path().join(format!("bundle-{}", recipe.name));
        run("skopeo", &["copy", "--quiet", &format!("oci-archive:{}", archive.display()), &format!("oci:{}:image", layout.display())]);
        run("umoci", &["unpack", "--image", &format!("{}:image", layout.display()), bundle.to_str().unwrap()]);
        for (file, model) in [("passwd", &recipe.passwd_lines), ("group", &recipe.group_lines)] {
            let unpacked = std::fs::read_to_string(bundle.join("rootfs/etc").join(file)).ok();
            let model = model.as_ref().map(|lines| lines.iter().map(|l| format!("{l}\n")).collect::<String>());
            assert_eq!(unpacked, model, "{}: /etc/{file} as umoci applied the layers vs the model", recipe.name);
        }
        let leftovers: Vec<_> = std::fs::read_dir(bundle.join("rootfs/etc")).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().starts_with(".wh.")).collect();
        assert!(leftovers.is_empty(), "{}: whiteouts left in the rootfs: {leftovers:?}", recipe.name);
    }
}
