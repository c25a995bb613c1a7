//! A private image registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1.
//!
//! sgpc pushes its built images here and the runtime pulls them with CRI `PullImage`: the same
//! path works for containerd, CRI-O and kind nodes, unlike importing into one runtime's store.
//!
//! Any local user can reach a port on 127.0.0.1, so the registry requires credentials made for
//! the run (htpasswd, bcrypt), kept in files only root can read, and images are pulled by
//! manifest digest: a tag someone else pushes is never what runs.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::{free_port, log_tail, spawn_daemon, stop_child, wait_until};
use crate::image::{Blob, BuiltImage};

pub const DEFAULT_BINARY: &str = "/usr/bin/docker-registry";

/// One request to the registry, a layer upload included (they are small, and local).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The account a registry accepts: made for one run, never written outside its directory.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

impl Credentials {
    /// 128 random bits each, from the kernel.
    fn generate() -> anyhow::Result<Credentials> {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes)).context("reading /dev/urandom")?;
        Ok(Credentials { username: format!("sgpc-{}", hex::encode(&bytes[..16])), password: hex::encode(&bytes[16..]) })
    }
}

pub struct Registry {
    /// `127.0.0.1:<port>`
    pub host: String,
    pub credentials: Credentials,
    child: Child,
    dir: PathBuf,
}

/// Writes a file only its owner can read (0600), refusing to reuse an existing one.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

impl Registry {
    /// Starts a registry storing its data under `dir`.
    pub async fn start(binary: &Path, dir: &Path) -> anyhow::Result<Registry> {
        if !binary.exists() {
            anyhow::bail!("registry binary {} not found; install Debian's `docker-registry` or run `make setup`", binary.display());
        }
        std::fs::DirBuilder::new().mode(0o700).create(dir).with_context(|| format!("creating {}", dir.display()))?;
        let host = format!("127.0.0.1:{}", free_port()?);
        let credentials = Credentials::generate()?;
        let htpasswd = dir.join("htpasswd");
        // The lowest cost: the password is 128 random bits, and the registry checks the hash on
        // every request.
        let hash = bcrypt::hash(&credentials.password, 4).context("hashing the registry password")?;
        write_private(&htpasswd, &format!("{}:{hash}\n", credentials.username))?;
        let config = dir.join("config.yml");
        write_private(
            &config,
            &format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\nauth:\n  htpasswd:\n    realm: sgpc\n    path: {}\n",
                dir.join("data").display(),
                htpasswd.display()
            ),
        )?;
        let log = dir.join("registry.log");
        let mut command = Command::new(binary);
        command.arg("serve").arg(&config);
        let mut child = spawn_daemon(command, &log)?;
        let ready = wait_until("the registry to refuse an anonymous GET /v2/ (401)", Duration::from_secs(20), || refuses_anonymous(&host)).await;
        if let Err(e) = ready {
            let _ = child.kill().await;
            return Err(e.context(format!("registry log:\n{}", log_tail(&log))));
        }
        Ok(Registry { host, credentials, child, dir: dir.to_path_buf() })
    }

    /// Pushes an image under its tag and returns the reference a runtime pulls it by: the
    /// repository at the manifest's digest, which no later push can change.
    pub async fn push(&self, image: &BuiltImage) -> anyhow::Result<String> {
        self.push_as(image, &format!("sgpc/{}", image.name), &image.tag()).await?;
        Ok(format!("{}/sgpc/{}@{}", self.host, image.name, image.manifest.digest))
    }

    /// Pushes an image as `repository:tag`: each blob, then the manifest.
    pub async fn push_as(&self, image: &BuiltImage, repository: &str, tag: &str) -> anyhow::Result<()> {
        for blob in image.layers.iter().chain([&image.config]) {
            self.push_blob(repository, blob).await.with_context(|| format!("pushing blob {} of {}/{repository}:{tag}", blob.digest, self.host))?;
        }
        let path = format!("/v2/{repository}/manifests/{tag}");
        self.send(http::Method::PUT, &path, Some(crate::image::MEDIA_MANIFEST), image.manifest.data.clone(), http::StatusCode::CREATED)
            .await
            .with_context(|| format!("pushing the manifest of {}/{repository}:{tag}", self.host))?;
        Ok(())
    }

    /// A monolithic blob upload (OCI distribution-spec, "Pushing a blob monolithically": `POST`
    /// an upload, then `PUT` its location with `?digest=`).
    async fn push_blob(&self, repository: &str, blob: &Blob) -> anyhow::Result<()> {
        let started = self.send(http::Method::POST, &format!("/v2/{repository}/blobs/uploads/"), None, bytes::Bytes::new(), http::StatusCode::ACCEPTED).await?;
        let location = started.headers().get(http::header::LOCATION).and_then(|l| l.to_str().ok()).context("the upload has no Location")?;
        // distribution answers with an absolute URL; only one on this registry is followed.
        let path = location.strip_prefix(&format!("http://{}", self.host)).unwrap_or(location);
        anyhow::ensure!(path.starts_with('/') && !path.starts_with("//"), "the upload's Location {location:?} is not on {}", self.host);
        let separator = if path.contains('?') { '&' } else { '?' };
        let digest = blob.digest.replace(':', "%3A");
        let stored = self.send(http::Method::PUT, &format!("{path}{separator}digest={digest}"), Some("application/octet-stream"), blob.data.clone(), http::StatusCode::CREATED).await?;
        // distribution names what it stored; absent, the 201 stands.
        let named = stored.headers().get("docker-content-digest").map(|d| d.to_str().unwrap_or("(not text)"));
        anyhow::ensure!(named.is_none_or(|d| d == blob.digest), "the registry stored {} as {named:?}", blob.digest);
        Ok(())
    }

    /// One request over a connection of its own, plain HTTP/1.1 with the run's credentials,
    /// within [`REQUEST_TIMEOUT`]; any status but `expected` is an error carrying the start of
    /// the registry's answer.
    async fn send(&self, method: http::Method, path: &str, content_type: Option<&str>, body: bytes::Bytes, expected: http::StatusCode) -> anyhow::Result<http::Response<()>> {
        let what = format!("{method} {path}");
        tokio::time::timeout(REQUEST_TIMEOUT, self.send_now(method, path, content_type, body, expected)).await.map_err(|_| anyhow::anyhow!("{what}: no answer within {REQUEST_TIMEOUT:?}"))?
    }

    async fn send_now(&self, method: http::Method, path: &str, content_type: Option<&str>, body: bytes::Bytes, expected: http::StatusCode) -> anyhow::Result<http::Response<()>> {
        use base64::Engine as _;
        use http_body_util::BodyExt as _;
        let stream = tokio::net::TcpStream::connect(&self.host).await.with_context(|| format!("connecting to {}", self.host))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.context("HTTP handshake")?;
        let driver = tokio::spawn(connection);
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.credentials.username, self.credentials.password));
        let mut request = http::Request::builder().method(method.clone()).uri(path).header(http::header::HOST, &self.host).header(http::header::AUTHORIZATION, format!("Basic {credentials}"));
        if let Some(content_type) = content_type {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        let request = request.body(http_body_util::Full::new(body)).with_context(|| format!("building {method} {path}"))?;
        let response = sender.send_request(request).await.with_context(|| format!("{method} {path}"))?;
        let (head, body) = response.into_parts();
        // Only an error's answer is read, and only its start.
        let said = if head.status == expected { bytes::Bytes::new() } else { http_body_util::Limited::new(body, 4096).collect().await.map(|b| b.to_bytes()).unwrap_or_default() };
        driver.abort();
        anyhow::ensure!(head.status == expected, "{method} {path}: {} (expected {expected}): {}", head.status, String::from_utf8_lossy(&said[..said.len().min(512)]));
        Ok(http::Response::from_parts(head, ()))
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        stop_child(&mut self.child).await?;
        super::remove_tree_async(self.dir.clone()).await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Whether the registry answers, and demands credentials: `GET /v2/` without them is 401.
async fn refuses_anonymous(host: &str) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(host).await else { return false };
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.is_ok() && head.ends_with(b"401")
}
