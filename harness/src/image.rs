//! Crafted images: recipes (`images/*.yaml`) and the deterministic OCI archive builder.
//!
//! A recipe plants `/etc/passwd` and `/etc/group` lines and sets the image's `USER`; the payload is
//! always sgpc's own static probe (`programs/probe.c`, [`PROBE_PROGRAM`]), nothing from the host.
//! The same recipe gives the same bytes and digests on every build: every tar header is fixed
//! (mtime 0, owner 0:0), JSON keys are sorted, and no timestamp is recorded.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

use crate::etc::{self, GroupEntry, PasswdEntry};
use crate::input::{self, InputError};

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Where every crafted image holds the probe.
pub const PROBE_PATH: &str = "/bin/sgpc-probe";

/// Applets linked to busybox in critest's image ([`ImageContent::with_busybox`]): critest's specs
/// run `sh -c 'id -G; sleep'` in it.
const CRITEST_APPLETS: &[&str] = &["sh", "id", "sleep"];

/// Name of the pause image sgpc builds and pins as the sandbox image.
pub const PAUSE_IMAGE: &str = "pause";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRecipe {
    name: String,
    #[serde(default)]
    description: String,
    user: Option<String>,
    /// The `USER` deliberately names a user (or group) the image's files lack.
    #[serde(default)]
    unknown_user_intended: bool,
    passwd: Option<Vec<Spanned<RawLine>>>,
    group: Option<Vec<Spanned<RawLine>>>,
    escalation: Option<RawEscalation>,
    /// Layers above the recipe's own, lowest first.
    #[serde(default)]
    layers: Vec<RawEtcLayer>,
}

/// A layer above the recipe's own: what it does to `/etc` (OCI image spec, "Representing
/// Changes": an opaque whiteout, whiteouts, then files that replace the lower ones).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcLayer {
    #[serde(default)]
    opaque: bool,
    #[serde(default)]
    delete: Vec<Spanned<String>>,
    passwd: Option<Vec<Spanned<RawLine>>>,
    group: Option<Vec<Spanned<RawLine>>>,
}

/// The files of `/etc` a recipe plants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EtcFile {
    Passwd,
    Group,
}

impl EtcFile {
    pub const ALL: [EtcFile; 2] = [EtcFile::Passwd, EtcFile::Group];

    pub fn name(self) -> &'static str {
        match self {
            EtcFile::Passwd => "passwd",
            EtcFile::Group => "group",
        }
    }
}

/// One layer's changes to `/etc`, as planted: `.wh..wh..opq` when `opaque` (every entry of the
/// lower layers' `/etc` hidden), `.wh.<name>` for each deleted file, then the files it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EtcLayer {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub opaque: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<EtcFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passwd_lines: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_lines: Option<Vec<String>>,
}

impl EtcLayer {
    fn lines(&self, file: EtcFile) -> &Option<Vec<String>> {
        match file {
            EtcFile::Passwd => &self.passwd_lines,
            EtcFile::Group => &self.group_lines,
        }
    }
}

/// `escalation: {gid: N}`: the image carries [`crate::escalation::Program`]s owned by group N.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalation {
    gid: Spanned<i64>,
}

/// A planted line: plain text, or `{line: ..., malformed: true}` for edge-case images.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a line of text, or {line: TEXT, malformed: true}")]
enum RawLine {
    Plain(String),
    Marked(MarkedLine),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkedLine {
    line: String,
    malformed: bool,
}

/// A validated image recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub description: String,
    pub source: PathBuf,
    /// The image config's `User`, as written (`1000`, `alice`, `1000:3000`); `None` is root.
    pub user: Option<String>,
    /// `/etc/passwd` lines as the image's layers give them, applied as the OCI image spec's
    /// "Applying Changesets" defines; `None` means the image has no such file.
    pub passwd_lines: Option<Vec<String>>,
    pub group_lines: Option<Vec<String>>,
    /// The well-formed entries of those files, as a runtime reads them (malformed lines skipped).
    pub passwd: Option<Vec<PasswdEntry>>,
    pub group: Option<Vec<GroupEntry>>,
    /// The recipe's `/etc` layers as planted, lowest first: its own, then `layers`.
    pub etc_layers: Vec<EtcLayer>,
    /// The group that owns the image's escalation programs, if it carries them.
    pub escalation_gid: Option<u32>,
}

impl Recipe {
    pub fn load(path: &Path) -> Result<Recipe, InputError> {
        Recipe::parse(path, &input::read_text(path)?)
    }

    /// Parses recipe text that came from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Recipe, InputError> {
        let raw: RawRecipe = input::parse_yaml(path, text)?;
        if !is_image_name(&raw.name) {
            return Err(InputError::new(
                path,
                None,
                Some("name"),
                format!("{:?} is not a valid image name: use lower-case letters, digits and '-'", raw.name),
            ));
        }
        if let Some(c) = raw.description.chars().find(|c| input::is_unprintable(*c)) {
            return Err(InputError::new(path, None, Some("description"), format!("contains the control character {c:?}: write plain text")));
        }
        /// Far below overlayfs' limit of lower directories; enough for any case.
        const MAX_LAYERS: usize = 16;
        if raw.layers.len() > MAX_LAYERS {
            return Err(InputError::new(path, None, Some("layers"), format!("{} layers: expected at most {MAX_LAYERS}", raw.layers.len())));
        }
        let mut etc_layers = vec![etc_layer(path, "", false, Vec::new(), raw.passwd, raw.group)?];
        for (index, layer) in raw.layers.into_iter().enumerate() {
            let prefix = format!("layers[{index}].");
            etc_layers.push(etc_layer(path, &prefix, layer.opaque, layer.delete, layer.passwd, layer.group)?);
        }
        let passwd_lines = applied(&etc_layers, EtcFile::Passwd);
        let group_lines = applied(&etc_layers, EtcFile::Group);
        // Every line was checked in its layer; these are the entries of the files that remain.
        let passwd = entries(passwd_lines.as_deref(), etc::parse_passwd);
        let group = entries(group_lines.as_deref(), etc::parse_group);
        if let Some(user) = &raw.user {
            check_user(path, user, raw.unknown_user_intended, passwd.as_deref().unwrap_or_default())?;
        }
        let escalation_gid = raw
            .escalation
            .map(|e| {
                u32::try_from(e.gid.value).ok().filter(|g| *g <= crate::identity::MAX_ID).ok_or_else(|| {
                    InputError::new(path, Some(e.gid.referenced.line()), Some("escalation.gid"), format!("{} is no gid: expected 0..={}", e.gid.value, crate::identity::MAX_ID))
                })
            })
            .transpose()?;
        Ok(Recipe {
            name: raw.name,
            description: raw.description,
            source: path.to_path_buf(),
            user: raw.user,
            passwd_lines,
            group_lines,
            passwd,
            group,
            etc_layers,
            escalation_gid,
        })
    }

    /// The image's `/etc/group` as runtimes read it leniently, to say where a group came from.
    pub fn lenient_group_lines(&self) -> Vec<etc::GroupLine> {
        etc::lenient_group_lines(self.group_lines.as_deref().unwrap_or_default())
    }

    /// Loads every recipe of a directory; image names must be unique.
    pub fn load_dir(dir: &Path) -> Result<Vec<Recipe>, InputError> {
        Recipe::from_files(crate::builtin::files(Some(dir), "images")?)
    }

    /// Parses recipe files (`(path, text)`, [`crate::builtin::files`]); names are unique.
    pub fn from_files(files: Vec<(PathBuf, String)>) -> Result<Vec<Recipe>, InputError> {
        let mut recipes: Vec<Recipe> = Vec::new();
        for (path, text) in files {
            let recipe = Recipe::parse(&path, &text)?;
            if let Some(other) = recipes.iter().find(|r| r.name == recipe.name) {
                return Err(InputError::new(
                    &path,
                    None,
                    Some("name"),
                    format!("image {:?} is already defined in {}", recipe.name, other.source.display()),
                ));
            }
            recipes.push(recipe);
        }
        Ok(recipes)
    }
}

/// An image `USER` (OCI image spec, config `User`: `user`, `uid`, `user:group`, `uid:gid`)
/// whose names the image's own files cannot resolve makes every container of the image fail
/// to start; a recipe must say that it means it.
fn check_user(path: &Path, user: &str, intended: bool, passwd: &[PasswdEntry]) -> Result<(), InputError> {
    let error = |message: String| InputError::new(path, None, Some("user"), message);
    if let Some(c) = user.chars().find(|c| input::is_unprintable(*c) || c.is_whitespace()) {
        return Err(error(format!("{user:?} contains {c:?}: expected `user`, `uid`, `user:group` or `uid:gid`")));
    }
    // Only the part before `:` reaches a runtime through kubelet (`ImageUser::of_config`).
    let unknown_user = match crate::identity::ImageUser::of_config(Some(user)) {
        crate::identity::ImageUser::Uid(uid) if !(0..=i64::from(crate::identity::MAX_ID)).contains(&uid) => {
            return Err(error(format!("{user:?}: uid {uid} is no uid (expected 0..={})", crate::identity::MAX_ID)));
        }
        crate::identity::ImageUser::Uid(_) => false,
        crate::identity::ImageUser::Name(name) => !passwd.iter().any(|e| e.name == name),
    };
    match (unknown_user, intended) {
        (true, false) => Err(error(format!(
            "{user:?} names a user that the recipe's passwd lacks, so no container of this image can start; add it, or set `unknownUserIntended: true` if that is the point"
        ))),
        (false, true) => Err(error(format!("{user:?} resolves in the recipe's files, but `unknownUserIntended` says it should not"))),
        _ => Ok(()),
    }
}

/// Why a malformed line cannot be planted: readers read it in ways the model does not follow.
/// `/etc/passwd` has one reading in the model (glibc fills a line's missing fields, Go readers
/// take what is there); a GID with a sign or beyond 4294967294 becomes different gids (glibc's
/// `strtoul` clamps to 4294967295, Go's `Atoi` then `uint32` wraps).
fn unmodelled_malformation(is_passwd: bool, text: &str) -> Option<&'static str> {
    if is_passwd {
        return Some("a malformed /etc/passwd line is read differently by different readers, and the model reads /etc/passwd one way; leave it out");
    }
    let gid = text.split(':').nth(2)?.trim_matches(|c: char| c.is_ascii_whitespace());
    let digits = gid.strip_prefix(['+', '-']).unwrap_or(gid);
    let numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    let valid = numeric && digits == gid && gid.parse::<u32>().is_ok_and(|g| g <= crate::identity::MAX_ID);
    (numeric && !valid).then_some("its GID is a number with a sign or beyond 4294967294, which readers turn into different gids (glibc clamps, Go wraps); write a GID that is no number at all")
}

fn is_image_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

/// One `/etc` layer of a recipe, checked; `prefix` is the field path of the layer (`layers[0].`).
fn etc_layer(
    path: &Path,
    prefix: &str,
    opaque: bool,
    delete: Vec<Spanned<String>>,
    passwd: Option<Vec<Spanned<RawLine>>>,
    group: Option<Vec<Spanned<RawLine>>>,
) -> Result<EtcLayer, InputError> {
    let passwd_lines = parse_lines(path, &format!("{prefix}passwd"), EtcFile::Passwd, passwd, etc::parse_passwd)?;
    let group_lines = parse_lines(path, &format!("{prefix}group"), EtcFile::Group, group, etc::parse_group)?;
    let mut deleted = Vec::new();
    for (index, name) in delete.iter().enumerate() {
        let field = format!("{prefix}delete[{index}]");
        let error = |message: String| InputError::new(path, Some(name.referenced.line()), Some(&field), message);
        let file = EtcFile::ALL.into_iter().find(|f| f.name() == name.value).ok_or_else(|| error(format!("{:?}: expected passwd or group", name.value)))?;
        if deleted.contains(&file) {
            return Err(error(format!("{:?} is deleted twice", name.value)));
        }
        // OCI image spec: a whiteout applies only to lower layers, so a layer that deletes and
        // holds the same file means nothing a reader agrees on.
        let held = match file {
            EtcFile::Passwd => passwd_lines.is_some(),
            EtcFile::Group => group_lines.is_some(),
        };
        if held || opaque {
            return Err(error(format!("{:?}: this layer also {}; a whiteout only hides lower layers' files (OCI image spec, \"Whiteouts\")", name.value, if held { "holds the file" } else { "is opaque, which hides it already" })));
        }
        deleted.push(file);
    }
    Ok(EtcLayer { opaque, delete: deleted, passwd_lines, group_lines })
}

/// The entries of a file's lines: comments, blank lines and malformed lines are none.
fn entries<T, E>(lines: Option<&[String]>, parse: fn(&str) -> Result<T, E>) -> Option<Vec<T>> {
    lines.map(|lines| lines.iter().filter(|l| !etc::is_layout_line(l)).filter_map(|l| parse(l).ok()).collect())
}

/// The lines of one file once every layer is applied, lowest first (OCI image spec, "Applying
/// Changesets"): an opaque layer hides every lower file, a whiteout the one it names, and a file
/// replaces the lower one whole.
pub fn applied(layers: &[EtcLayer], file: EtcFile) -> Option<Vec<String>> {
    layers.iter().fold(None, |lower, layer| match layer.lines(file) {
        Some(lines) => Some(lines.clone()),
        None if layer.opaque || layer.delete.contains(&file) => None,
        None => lower,
    })
}

fn parse_lines<T, E: std::fmt::Display>(
    path: &Path,
    field: &str,
    file: EtcFile,
    raw: Option<Vec<Spanned<RawLine>>>,
    parse: fn(&str) -> Result<T, E>,
) -> Result<Option<Vec<String>>, InputError> {
    let Some(raw) = raw else { return Ok(None) };
    let is_passwd = file == EtcFile::Passwd;
    let mut lines = Vec::new();
    for (index, spanned) in raw.into_iter().enumerate() {
        let line_no = Some(spanned.referenced.line());
        let field = format!("{field}[{index}]");
        let (text, marked_malformed) = match spanned.value {
            RawLine::Plain(text) => (text, false),
            RawLine::Marked(MarkedLine { line, malformed }) => (line, malformed),
        };
        if marked_malformed {
            if let Some(why) = unmodelled_malformation(is_passwd, &text) {
                return Err(InputError::new(path, line_no, Some(&field), format!("{text:?}: {why}")));
            }
        }
        if let Some(c) = etc::forbidden_character(&text) {
            return Err(InputError::new(path, line_no, Some(&field), format!("{text:?} contains {c:?}, a control character or a non-ASCII blank; only a final \\r (a CRLF file) may be planted")));
        }
        if etc::is_layout_line(&text) && !marked_malformed {
            // A comment or blank line: planted as it is. `/etc/group`'s readings of it are
            // modelled (see `etc::Reading`); `/etc/passwd` has one reading, so a commented-out
            // entry there (which some readers take as an entry) is refused.
            if is_passwd && text.contains(':') {
                return Err(InputError::new(path, line_no, Some(&field), format!("{text:?} looks like a commented-out entry, which some readers of /etc/passwd take as an entry; write a comment without ':'")));
            }
            // Some readers take a commented-out group line as an entry: its GID must be one.
            if let Some(why) = unmodelled_malformation(false, &text) {
                return Err(InputError::new(path, line_no, Some(&field), format!("{text:?}: {why}")));
            }
            lines.push(text);
            continue;
        }
        match (parse(&text), marked_malformed) {
            (Ok(_), false) => {}
            (Err(e), false) => {
                return Err(InputError::new(
                    path,
                    line_no,
                    Some(&field),
                    format!("{text:?}: {e} (mark it `malformed: true` if that is intended)"),
                ))
            }
            (Ok(_), true) => {
                return Err(InputError::new(
                    path,
                    line_no,
                    Some(&field),
                    format!("{text:?} is marked malformed but parses as a valid line"),
                ))
            }
            (Err(_), true) => {}
        }
        lines.push(text);
    }
    Ok(Some(lines))
}

/// A file in an image layer.
#[derive(Debug, Clone)]
pub enum LayerEntry {
    Dir { path: String },
    File { path: String, mode: u32, data: Vec<u8> },
    /// A file owned `root:<gid>` with extended attributes (PAX `SCHILY.xattr.` records, as
    /// containerd's and containers/storage's unpackers read them).
    OwnedFile { path: String, mode: u32, gid: u32, xattrs: Vec<(String, Vec<u8>)>, data: Vec<u8> },
    Symlink { path: String, target: String },
}

impl LayerEntry {
    /// Where the entry sits in the image, relative to its root.
    pub fn path(&self) -> &str {
        match self {
            LayerEntry::Dir { path } | LayerEntry::File { path, .. } | LayerEntry::OwnedFile { path, .. } | LayerEntry::Symlink { path, .. } => path,
        }
    }
}

/// What goes into an image, before it is serialised.
#[derive(Debug, Clone)]
pub struct ImageContent {
    pub name: String,
    /// The layers, bottom first. Crafted images share their first layer (busybox), so a
    /// registry and a runtime hold it once however many images a discovery builds.
    pub layers: Vec<Vec<LayerEntry>>,
    pub user: Option<String>,
    pub entrypoint: Vec<String>,
}

/// The sandbox image's program: `programs/pause.c`, compiled static by `build.rs`.
pub const PAUSE_PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// Every crafted image's program: `programs/probe.c`, compiled static by `build.rs`.
pub const PROBE_PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe"));

impl ImageContent {
    /// The crafted image of a recipe: the probe, planted `/etc` files.
    pub fn from_recipe(recipe: &Recipe) -> ImageContent {
        let base = vec![
            LayerEntry::Dir { path: "bin".into() },
            LayerEntry::File { path: PROBE_PATH.trim_start_matches('/').into(), mode: 0o755, data: PROBE_PROGRAM.to_vec() },
        ];
        let mut layers = recipe.etc_layers.iter().map(etc_entries);
        let mut entries = layers.next().unwrap_or_default();
        entries.push(LayerEntry::Dir { path: "tmp".into() });
        if let Some(gid) = recipe.escalation_gid {
            for program in crate::escalation::Program::ALL {
                let path = program.path().trim_start_matches('/').to_string();
                let data = crate::escalation::PROGRAM_BYTES.to_vec();
                entries.push(LayerEntry::OwnedFile { path, mode: program.mode(), gid, xattrs: program.xattrs(), data });
            }
        }
        ImageContent {
            name: recipe.name.clone(),
            layers: [base, entries].into_iter().chain(layers).collect(),
            user: recipe.user.clone(),
            entrypoint: vec![PROBE_PATH.into(), "wait".into()],
        }
    }

    /// The image with a host's static busybox and the applets critest runs added as a layer of
    /// its own: critest's image only, never a case's.
    pub fn with_busybox(mut self, busybox: &Path) -> anyhow::Result<ImageContent> {
        let data = std::fs::read(busybox).map_err(|e| anyhow::anyhow!("cannot read {} ({e}); critest's image needs Debian's `busybox-static`", busybox.display()))?;
        let mut layer = vec![LayerEntry::Dir { path: "bin".into() }, LayerEntry::File { path: "bin/busybox".into(), mode: 0o755, data }];
        layer.extend(CRITEST_APPLETS.iter().map(|applet| LayerEntry::Symlink { path: format!("bin/{applet}"), target: "busybox".into() }));
        self.layers.push(layer);
        Ok(self)
    }

    /// The sandbox ("pause") image: sgpc's own pause program, nothing from the host.
    pub fn pause() -> ImageContent {
        ImageContent {
            name: PAUSE_IMAGE.into(),
            layers: vec![vec![LayerEntry::File { path: "pause".into(), mode: 0o755, data: PAUSE_PROGRAM.to_vec() }]],
            user: None,
            entrypoint: vec!["/pause".into()],
        }
    }
}

/// The tar entries of one `/etc` layer: the directory, the opaque whiteout and the whiteouts
/// first (the OCI image spec asks whiteouts to come before their siblings), then the files.
fn etc_entries(layer: &EtcLayer) -> Vec<LayerEntry> {
    let whiteout = |name: &str| LayerEntry::File { path: format!("etc/{name}"), mode: 0o644, data: Vec::new() };
    let mut entries = vec![LayerEntry::Dir { path: "etc".into() }];
    if layer.opaque {
        entries.push(whiteout(".wh..wh..opq"));
    }
    entries.extend(layer.delete.iter().map(|file| whiteout(&format!(".wh.{}", file.name()))));
    for file in EtcFile::ALL {
        if let Some(lines) = layer.lines(file) {
            let data = lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes();
            entries.push(LayerEntry::File { path: format!("etc/{}", file.name()), mode: 0o644, data });
        }
    }
    entries
}

/// A content-addressed blob.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: &'static str,
    pub digest: String,
    /// Shared, not copied, by every push of it.
    pub data: bytes::Bytes,
}

impl Blob {
    fn new(media_type: &'static str, data: Vec<u8>) -> Blob {
        Blob { media_type, digest: sha256_digest(&data), data: data.into() }
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.data.len()})
    }

    fn archive_path(&self) -> String {
        format!("blobs/sha256/{}", self.digest.trim_start_matches("sha256:"))
    }
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The digests that name the bytes sgpc built. A runtime reports the image a container runs as
/// an image id (the config digest: OCI image spec, "Image ID") or a repository digest
/// (`repo@<manifest digest>`); either one pins every byte, through the config's `diff_ids`.
/// CRI-O writes image ids as bare hex, without the `sha256:` algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub manifest: String,
    pub config: String,
}

impl Digests {
    /// Whether a reference a runtime reports names exactly these bytes.
    pub fn named_by(&self, reported: &str) -> bool {
        let bare_config = self.config.strip_prefix("sha256:").filter(|hex| !hex.is_empty());
        reported == self.config
            || reported == self.manifest
            || bare_config == Some(reported)
            || reported.strip_suffix(self.manifest.as_str()).is_some_and(|repo| repo.ends_with('@'))
    }
}

/// A built image: its blobs, ready to be pushed or written as an OCI archive.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub name: String,
    /// Bottom first.
    pub layers: Vec<Blob>,
    pub config: Blob,
    pub manifest: Blob,
}

impl BuiltImage {
    pub fn digests(&self) -> Digests {
        Digests { manifest: self.manifest.digest.clone(), config: self.config.digest.clone() }
    }

    /// The tag sgpc uses for this image: a prefix of its manifest digest, so that a changed
    /// recipe never reuses a stale image in a long-lived runtime.
    pub fn tag(&self) -> String {
        self.manifest.digest.trim_start_matches("sha256:")[..12].to_string()
    }

    /// Writes an archive that `ctr images import`, `skopeo`, `docker load` and
    /// `kind load image-archive` accept: an OCI layout plus a docker `manifest.json`.
    pub fn write_archive(&self, path: &Path, repository: &str) -> anyhow::Result<()> {
        let reference = format!("{repository}/{}:{}", self.name, self.tag());
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [{
                "mediaType": MEDIA_MANIFEST,
                "digest": self.manifest.digest,
                "size": self.manifest.data.len(),
                "annotations": {
                    "io.containerd.image.name": reference,
                    "org.opencontainers.image.ref.name": self.tag(),
                },
            }],
        });
        let docker_manifest = json!([{
            "Config": self.config.archive_path(),
            "RepoTags": [reference],
            "Layers": self.layers.iter().map(Blob::archive_path).collect::<Vec<_>>(),
        }]);
        let mut files: Vec<(String, Vec<u8>)> = vec![
            ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ("index.json".into(), serde_json::to_vec(&index)?),
            ("manifest.json".into(), serde_json::to_vec(&docker_manifest)?),
        ];
        for blob in self.layers.iter().chain([&self.config, &self.manifest]) {
            files.push((blob.archive_path(), blob.data.to_vec()));
        }
        let mut entries = vec![
            LayerEntry::Dir { path: "blobs".into() },
            LayerEntry::Dir { path: "blobs/sha256".into() },
        ];
        entries.extend(files.into_iter().map(|(path, data)| LayerEntry::File { path, mode: 0o644, data }));
        let tar = write_tar(&entries)?;
        write_replacing(path, &tar)
    }
}

/// Writes `bytes` to a new file beside `path`, then renames it over `path`: a symlink planted
/// there is replaced, never followed, and a failure leaves no partial file.
pub fn write_replacing(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut partial = tempfile::NamedTempFile::new_in(parent).map_err(|e| anyhow::anyhow!("cannot create a file in {}: {e}", parent.display()))?;
    partial.write_all(bytes).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    partial.as_file().set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    partial.persist(path).map_err(|e| anyhow::anyhow!("cannot create {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Builds the pause image and every recipe and writes each as `<out>/<name>.oci.tar`, tagged
/// `<repository>/<name>:<tag>`.
pub fn write_archives(recipes: &[Recipe], out: &Path, repository: &str) -> anyhow::Result<Vec<(BuiltImage, PathBuf)>> {
    let mut contents = vec![ImageContent::pause()];
    for recipe in recipes {
        contents.push(ImageContent::from_recipe(recipe));
    }
    let built = contents.iter().map(build).collect::<anyhow::Result<Vec<_>>>()?;
    let paths = write_built_archives(&built, out, repository)?;
    Ok(built.into_iter().zip(paths).collect())
}

/// Writes images already built as `<out>/<name>.oci.tar`, tagged under `repository`.
pub fn write_built_archives(built: &[BuiltImage], out: &Path, repository: &str) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
    built
        .iter()
        .map(|image| {
            let path = out.join(format!("{}.oci.tar", image.name));
            image.write_archive(&path, repository)?;
            Ok(path)
        })
        .collect()
}

fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Serialises an image into its layer, config and manifest blobs.
pub fn build(content: &ImageContent) -> anyhow::Result<BuiltImage> {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for entries in &content.layers {
        let tar = write_tar(entries)?;
        let diff_id = sha256_digest(&tar);
        layers.push(compressed_layer(&diff_id, &tar)?);
        diff_ids.push(diff_id);
    }

    let mut image_config = BTreeMap::new();
    image_config.insert("Env", json!(["PATH=/bin:/usr/bin:/sbin:/usr/sbin"]));
    image_config.insert("Entrypoint", json!(content.entrypoint));
    if let Some(user) = &content.user {
        image_config.insert("User", json!(user));
    }
    let config = json!({
        "architecture": oci_architecture(),
        "os": "linux",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = Blob::new(MEDIA_CONFIG, serde_json::to_vec(&config)?);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    let manifest = Blob::new(MEDIA_MANIFEST, serde_json::to_vec(&manifest)?);
    Ok(BuiltImage { name: content.name.clone(), layers, config, manifest })
}

/// The gzip of a layer tar. Gzip is deterministic here (mtime 0, fixed level), so the busybox
/// layer every crafted image shares is compressed once per process and reused by its digest.
fn compressed_layer(diff_id: &str, tar: &[u8]) -> anyhow::Result<Blob> {
    static SHARED: std::sync::OnceLock<std::sync::Mutex<BTreeMap<String, Blob>>> = std::sync::OnceLock::new();
    const WORTH_KEEPING: usize = 64 * 1024;
    let shared = SHARED.get_or_init(Default::default);
    if let Some(blob) = shared.lock().ok().and_then(|m| m.get(diff_id).cloned()) {
        return Ok(blob);
    }
    let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::default());
    gz.write_all(tar)?;
    let blob = Blob::new(MEDIA_LAYER, gz.finish()?);
    if tar.len() >= WORTH_KEEPING {
        if let Ok(mut map) = shared.lock() {
            map.insert(diff_id.to_string(), blob.clone());
        }
    }
    Ok(blob)
}

fn write_tar(entries: &[LayerEntry]) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            LayerEntry::Dir { path } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, format!("{path}/"), std::io::empty())?;
            }
            LayerEntry::File { path, mode, data } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, data.as_slice())?;
            }
            LayerEntry::OwnedFile { path, mode, gid, xattrs, data } => {
                let records: Vec<(String, &[u8])> = xattrs.iter().map(|(name, value)| (format!("SCHILY.xattr.{name}"), value.as_slice())).collect();
                builder.append_pax_extensions(records.iter().map(|(key, value)| (key.as_str(), *value)))?;
                header.set_gid(u64::from(*gid));
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, data.as_slice())?;
            }
            LayerEntry::Symlink { path, target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, path, target)?;
            }
        }
    }
    Ok(builder.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe_from(text: &str) -> Result<Recipe, InputError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.yaml");
        std::fs::write(&path, text).unwrap();
        Recipe::load(&path)
    }

    #[test]
    fn recipe_lines_are_parsed() {
        let r = recipe_from(
            "name: t\nuser: \"1000\"\npasswd:\n  - \"alice:x:1000:1000::/:/bin/sh\"\ngroup:\n  - \"g:x:50000:alice\"\n",
        )
        .unwrap();
        assert_eq!(r.passwd.unwrap()[0].uid, 1000);
        assert_eq!(r.group.unwrap()[0].members, vec!["alice"]);
    }

    #[test]
    fn malformed_line_names_file_line_and_field() {
        let err = recipe_from("name: t\ngroup:\n  - \"g:x:1:\"\n  - \"broken\"\n").unwrap_err();
        assert_eq!(err.line, Some(4));
        assert_eq!(err.field.as_deref(), Some("group[1]"));
        assert!(err.to_string().contains("r.yaml:4: field `group[1]`"), "{err}");
    }

    #[test]
    fn marked_malformed_line_is_planted_but_not_parsed() {
        let r = recipe_from("name: t\ngroup:\n  - {line: \"broken\", malformed: true}\n").unwrap();
        assert_eq!(r.group_lines.unwrap(), vec!["broken"]);
        assert!(r.group.unwrap().is_empty());
    }

    #[test]
    fn control_characters_in_lines_are_rejected_but_crlf_is_planted() {
        let err = recipe_from("name: t\ngroup:\n  - \"g:x:50000:alice\\0\"\n").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("group[0]"));
        assert!(err.to_string().contains("control character"), "{err}");
        let r = recipe_from("name: t\ngroup:\n  - \"g:x:50000:alice\\r\"\n").unwrap();
        assert_eq!(r.group_lines.unwrap(), vec!["g:x:50000:alice\r"]);
    }

    #[test]
    fn user_the_files_lack_is_rejected_unless_intended() {
        let err = recipe_from("name: t\nuser: ghost\npasswd: [\"root:x:0:0::/:/bin/sh\"]\n").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("user"));
        assert!(err.to_string().contains("unknownUserIntended"), "{err}");
        // The group part never reaches a runtime through kubelet: no reason to refuse it.
        assert!(recipe_from("name: t\nuser: \"root:nogroup\"\npasswd: [\"root:x:0:0::/:/bin/sh\"]\n").is_ok());
        assert!(recipe_from("name: t\nuser: ghost\nunknownUserIntended: true\n").is_ok());
        assert!(recipe_from("name: t\nuser: \"1000:3000\"\n").is_ok(), "numeric ids need no files");
        assert!(recipe_from("name: t\nuser: root\nunknownUserIntended: true\npasswd: [\"root:x:0:0::/:/bin/sh\"]\n").is_err());
    }

    #[test]
    fn layers_apply_as_the_oci_image_spec_says() {
        let base = "name: t\npasswd: [\"a:x:1:1::/:/bin/sh\"]\ngroup: [\"g:x:5:a\"]\n";
        let deleted = recipe_from(&format!("{base}layers:\n  - delete: [group]\n")).unwrap();
        assert_eq!((deleted.group_lines.clone(), deleted.passwd_lines.as_ref().map(Vec::len)), (None, Some(1)));
        let replaced = recipe_from(&format!("{base}layers:\n  - group: [\"h:x:6:a\"]\n  - passwd: [\"a:x:1:7::/:/bin/sh\"]\n")).unwrap();
        assert_eq!(replaced.group.unwrap()[0].gid, 6);
        assert_eq!(replaced.passwd.unwrap()[0].gid, 7);
        let opaque = recipe_from(&format!("{base}layers:\n  - opaque: true\n    group: [\"h:x:6:\"]\n")).unwrap();
        assert_eq!((opaque.passwd_lines, opaque.group_lines), (None, Some(vec!["h:x:6:".to_string()])));
        let restored = recipe_from(&format!("{base}layers:\n  - delete: [group]\n  - group: [\"h:x:6:\"]\n")).unwrap();
        assert_eq!(restored.group_lines, Some(vec!["h:x:6:".to_string()]), "a file above a whiteout is the file");
        let built = ImageContent::from_recipe(&deleted);
        assert_eq!(built.layers.len(), 3, "the probe, the recipe's own layer, the whiteout layer");
        assert!(built.layers[2].iter().any(|e| matches!(e, LayerEntry::File { path, data, .. } if path == "etc/.wh.group" && data.is_empty())));
    }

    #[test]
    fn a_layer_that_deletes_what_it_holds_is_refused_with_its_field() {
        let base = "name: t\ngroup: [\"g:x:5:\"]\nlayers:\n";
        let err = recipe_from(&format!("{base}  - delete: [group]\n    group: [\"h:x:6:\"]\n")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("layers[0].delete[0]"), "{err}");
        let err = recipe_from(&format!("{base}  - opaque: true\n    delete: [passwd]\n")).unwrap_err();
        assert!(err.to_string().contains("opaque"), "{err}");
        let err = recipe_from(&format!("{base}  - delete: [shadow]\n")).unwrap_err();
        assert!(err.to_string().contains("expected passwd or group"), "{err}");
        let err = recipe_from(&format!("{base}  - group: [\"broken\"]\n")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("layers[0].group[0]"), "{err}");
        let err = recipe_from("name: t\nescalation: {gid: 4294967295}\n").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("escalation.gid"), "{err}");
    }

    #[test]
    fn unknown_field_is_rejected() {
        let err = recipe_from("name: t\nusr: root\n").unwrap_err();
        assert!(err.to_string().contains("usr"), "{err}");
    }

    #[test]
    fn only_the_built_digests_name_the_image() {
        let d = Digests { manifest: "sha256:aa".into(), config: "sha256:cc".into() };
        assert!(d.named_by("sha256:cc"));
        assert!(d.named_by("cc"), "CRI-O's bare image id");
        assert!(!d.named_by("aa"), "a bare manifest digest is no image id");
        assert!(d.named_by("127.0.0.1:5000/sgpc/x@sha256:aa"));
        assert!(!d.named_by("127.0.0.1:5000/sgpc/x:aa"));
        assert!(!d.named_by("127.0.0.1:5000/sgpc/x@sha256:aab"));
        assert!(!d.named_by("sha256:bb"));
        assert!(!d.named_by(""));
    }

    #[test]
    fn built_image_is_deterministic_and_well_formed() {
        let content = ImageContent {
            name: "t".into(),
            layers: vec![vec![
                LayerEntry::Dir { path: "etc".into() },
                LayerEntry::File { path: "etc/group".into(), mode: 0o644, data: b"g:x:1:\n".to_vec() },
            ]],
            user: Some("1000".into()),
            entrypoint: vec!["/bin/sh".into()],
        };
        let a = build(&content).unwrap();
        let b = build(&content).unwrap();
        assert_eq!(a.manifest.digest, b.manifest.digest);
        let manifest: serde_json::Value = serde_json::from_slice(&a.manifest.data).unwrap();
        assert_eq!(manifest["layers"][0]["digest"], a.layers[0].digest);
        assert_eq!(manifest["config"]["digest"], a.config.digest);
        let config: serde_json::Value = serde_json::from_slice(&a.config.data).unwrap();
        assert_eq!(config["config"]["User"], "1000");
    }
}

/// An image as the run used it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub name: String,
    /// What the runtime is asked to run: the repository at the manifest digest.
    pub reference: String,
    pub manifest_digest: String,
    pub config_digest: String,
}

impl ImageRecord {
    pub fn digests(&self) -> Digests {
        Digests { manifest: self.manifest_digest.clone(), config: self.config_digest.clone() }
    }
}
