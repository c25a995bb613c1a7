//! A private image registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1.
//!
//! sgpc pushes its built images here and the runtime pulls them with CRI `PullImage`: the same
//! path works for containerd, CRI-O and kind nodes, unlike importing into one runtime's store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::{free_port, log_tail, spawn_daemon, stop_child, wait_until};
use crate::image::BuiltImage;

pub const DEFAULT_BINARY: &str = "/usr/bin/docker-registry";

pub struct Registry {
    /// `127.0.0.1:<port>`
    pub host: String,
    child: Child,
    dir: PathBuf,
}

impl Registry {
    /// Starts a registry storing its data under `dir`.
    pub async fn start(binary: &Path, dir: &Path) -> anyhow::Result<Registry> {
        if !binary.exists() {
            anyhow::bail!("registry binary {} not found; install Debian's `docker-registry` or run `make setup`", binary.display());
        }
        std::fs::create_dir_all(dir)?;
        let host = format!("127.0.0.1:{}", free_port()?);
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
                dir.join("data").display()
            ),
        )?;
        let log = dir.join("registry.log");
        let mut command = Command::new(binary);
        command.arg("serve").arg(&config);
        let mut child = spawn_daemon(command, &log)?;
        let ready = wait_until("the registry to answer GET /v2/", Duration::from_secs(20), || answers_v2(&host)).await;
        if let Err(e) = ready {
            let _ = child.kill().await;
            return Err(e.context(format!("registry log:\n{}", log_tail(&log))));
        }
        Ok(Registry { host, child, dir: dir.to_path_buf() })
    }

    /// Pushes an image and returns the reference a runtime pulls it by.
    pub async fn push(&self, image: &BuiltImage) -> anyhow::Result<String> {
        let reference = format!("{}/sgpc/{}:{}", self.host, image.name, image.tag());
        let parsed: Reference = reference.parse().with_context(|| format!("parsing {reference}"))?;
        // oci-client is built without a TLS provider (its default one clashes with kube's);
        // it insists on one even for plain HTTP. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::try_from(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() })
            .context("building the registry client")?;
        client.auth(&parsed, &RegistryAuth::Anonymous, RegistryOperation::Push).await.context("registry auth")?;
        for blob in [&image.layer, &image.config] {
            client.push_blob(&parsed, blob.data.clone(), &blob.digest).await.with_context(|| format!("pushing blob {} of {reference}", blob.digest))?;
        }
        let content_type = http::HeaderValue::from_static(crate::image::MEDIA_MANIFEST);
        client
            .push_manifest_raw(&parsed, image.manifest.data.clone(), content_type)
            .await
            .with_context(|| format!("pushing the manifest of {reference}"))?;
        Ok(reference)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        stop_child(&mut self.child).await?;
        super::remove_tree(&self.dir)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

async fn answers_v2(host: &str) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(host).await else { return false };
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.is_ok() && head.ends_with(b"200")
}
