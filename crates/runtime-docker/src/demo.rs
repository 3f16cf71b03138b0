//! Building images through the Docker API, and Berth's own demo image `berth-demo:latest`
//! (no registry is reachable where Berth is tested, so Berth carries its own image).
//!
//! Contract:
//! * [`DockerRuntime::build_image`] uses the engine's classic builder (no BuildKit, no
//!   `docker` CLI); the context is an in-memory tar or a directory tarred in memory. A build
//!   step's error is [`RuntimeError::Engine`] with op `build` and the builder's message.
//! * The demo image is [`DEMO_DOCKERFILE`] (`crates/demo-app/Dockerfile`: `FROM scratch`, the
//!   static `hello` binary as `/hello`, `EXPOSE 8080`, label `berth.demo=1`, no HEALTHCHECK)
//!   plus a label `berth.demo.binary-sha256` naming the binary it holds, so
//!   [`DockerRuntime::ensure_demo_image`] rebuilds only when the binary changed and then
//!   removes the image it replaced, unless another tag still names it or a container uses
//!   it (the classic builder's cache gives equal contexts equal image ids, so one image may
//!   carry several tags).
//! * [`build_static_binary`] runs cargo (`RUSTFLAGS=-C target-feature=+crt-static`, release,
//!   the host's `*-unknown-linux-gnu` target, debug info off and stripped) in a target
//!   directory of the caller's choosing, so it never contends with the caller's own build.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_runtime::{ImageInfo, ObjectKind, Runtime, RuntimeError};
use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::{DockerRuntime, map_error};

/// The demo image's tag.
pub const DEMO_IMAGE: &str = "berth-demo:latest";
/// The demo image's Dockerfile.
pub const DEMO_DOCKERFILE: &str = include_str!("../../demo-app/Dockerfile");
/// Label naming the SHA-256 of the `hello` binary inside the demo image.
pub const DEMO_BINARY_LABEL: &str = "berth.demo.binary-sha256";

/// How long one image build may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// A build context.
#[derive(Debug, Clone)]
pub enum BuildContext {
    /// An uncompressed tar holding a `Dockerfile` and what it copies.
    Tar(Vec<u8>),
    /// A directory holding a `Dockerfile`; tarred in memory (symlinks kept as links).
    Dir(PathBuf),
}

fn io_err(op: &'static str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Engine { op, message: e.to_string() }
}

/// A tar of regular files `(name, mode, contents)` with fixed metadata (mtime 0, root-owned).
pub fn tar_of(files: &[(&str, u32, &[u8])]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, mode, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data)?;
    }
    b.into_inner()
}

fn tar_dir(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir)?;
    b.into_inner()
}

async fn read_file(path: &Path) -> Result<Vec<u8>, RuntimeError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::read(owned))
        .await
        .map_err(|e| io_err("build", e))?
        .map_err(|e| io_err("build", format!("cannot read {}: {e}", path.display())))
}

impl DockerRuntime {
    /// Builds `context` into an image tagged `tag`, with `labels` added.
    pub async fn build_image(
        &self,
        tag: &str,
        context: BuildContext,
        labels: &BTreeMap<String, String>,
    ) -> Result<ImageInfo, RuntimeError> {
        let tar = match context {
            BuildContext::Tar(t) => t,
            BuildContext::Dir(dir) => tokio::task::spawn_blocking(move || tar_dir(&dir))
                .await
                .map_err(|e| io_err("build", e))?
                .map_err(|e| io_err("build", format!("cannot tar the build context: {e}")))?,
        };
        let opts = BuildImageOptions {
            t: Some(tag.to_string()),
            rm: true,
            forcerm: true,
            labels: (!labels.is_empty())
                .then(|| labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            ..Default::default()
        };
        let docker = self.with_at_least(BUILD_TIMEOUT);
        let mut stream = docker.build_image(opts, None, Some(bollard::body_full(tar.into())));
        let mut log = String::new();
        while let Some(item) = stream.next().await {
            let info =
                item.map_err(|e| map_error("build", ObjectKind::Image, tag, BUILD_TIMEOUT, e))?;
            if let Some(detail) = info.error_detail {
                let message = detail.message.unwrap_or_else(|| "build failed".into());
                return Err(RuntimeError::Engine {
                    op: "build",
                    message: format!("{message}\n{log}"),
                });
            }
            if let Some(s) = info.stream {
                log.push_str(&s);
            }
        }
        tracing::debug!(tag, log = %log, "image built");
        self.image(tag).await?.ok_or_else(|| RuntimeError::Engine {
            op: "build",
            message: format!("{tag} missing after the build\n{log}"),
        })
    }

    /// Builds the demo image from a static `hello` binary, tagged `tag`.
    pub async fn build_demo_image(
        &self,
        binary: &Path,
        tag: &str,
    ) -> Result<ImageInfo, RuntimeError> {
        let bin = read_file(binary).await?;
        self.build_demo_image_from_bytes(&bin, tag).await
    }

    async fn build_demo_image_from_bytes(
        &self,
        bin: &[u8],
        tag: &str,
    ) -> Result<ImageInfo, RuntimeError> {
        let digest = hex::encode(Sha256::digest(bin));
        let tar =
            tar_of(&[("Dockerfile", 0o644, DEMO_DOCKERFILE.as_bytes()), ("hello", 0o755, bin)])
                .map_err(|e| io_err("build", e))?;
        let labels = BTreeMap::from([(DEMO_BINARY_LABEL.to_string(), digest)]);
        self.build_image(tag, BuildContext::Tar(tar), &labels).await
    }

    /// The demo image `tag`, built from `binary` unless it already holds exactly that binary.
    /// The image this replaces is removed unless still tagged elsewhere or in use.
    pub async fn ensure_demo_image(
        &self,
        binary: &Path,
        tag: &str,
    ) -> Result<ImageInfo, RuntimeError> {
        let bin = read_file(binary).await?;
        let digest = hex::encode(Sha256::digest(&bin));
        let existing = self.image(tag).await?;
        if let Some(img) = &existing
            && img.labels.get(DEMO_BINARY_LABEL) == Some(&digest)
        {
            return Ok(img.clone());
        }
        let built = self.build_demo_image_from_bytes(&bin, tag).await?;
        if let Some(old) = existing
            && old.id != built.id
            && let Err(e) = self.remove_image(&old.id).await
        {
            tracing::info!(image = %old.id, error = %e, "kept the replaced demo image");
        }
        Ok(built)
    }
}

/// The target triple [`build_static_binary`] builds for: this machine's architecture, glibc.
pub fn host_triple() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// Builds the statically linked `hello` binary of the workspace at `workspace_root` into
/// `target_dir` (keep it apart from other builds) and returns its path.
pub fn build_static_binary(workspace_root: &Path, target_dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let triple = host_triple();
    let out = Command::new(&cargo)
        .current_dir(workspace_root)
        .args(["build", "--release", "-p", "berth-demo", "--bin", "hello", "--target", &triple])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
        .output()
        .map_err(|e| format!("cannot run {cargo:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "static build of hello failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(target_dir.join(triple).join("release").join("hello"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_dockerfile_is_scratch_with_label_and_no_healthcheck() {
        let lines: Vec<&str> = DEMO_DOCKERFILE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines,
            [
                "FROM scratch",
                "COPY hello /hello",
                "EXPOSE 8080",
                "LABEL berth.demo=\"1\"",
                "ENTRYPOINT [\"/hello\"]"
            ]
        );
    }

    #[test]
    fn tars_hold_the_files() {
        let t = tar_of(&[("Dockerfile", 0o644, b"FROM scratch\n"), ("hello", 0o755, b"\x7fELF")])
            .unwrap();
        let mut a = tar::Archive::new(t.as_slice());
        let entries: Vec<(String, u32, u64)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().mode().unwrap(), e.size())
            })
            .collect();
        assert_eq!(entries, vec![("Dockerfile".into(), 0o644, 13), ("hello".into(), 0o755, 4)]);
    }
}
