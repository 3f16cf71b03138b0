//! `berth-demo-image [--binary PATH] [--tag TAG]`: builds the statically linked `hello`
//! (unless `--binary` names one) and the image `berth-demo:latest` (or TAG) through the Docker
//! API, rebuilding the image only when the binary changed. Prints the image id. Used by
//! `scripts/build-demo-image.sh`; needs no `docker` CLI.
//!
//! The static build goes to `$CARGO_TARGET_DIR/demo-static` (default `target/demo-static` in
//! this workspace), apart from every other build.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use berth_runtime_docker::{DEMO_IMAGE, DockerRuntime, demo};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut binary: Option<PathBuf> = None;
    let mut tag = DEMO_IMAGE.to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--binary", Some(v)) => binary = Some(v.into()),
            ("--tag", Some(v)) => tag = v,
            _ => {
                eprintln!("usage: berth-demo-image [--binary PATH] [--tag TAG]");
                return ExitCode::from(2);
            }
        }
    }
    let binary = match binary {
        Some(b) => b,
        None => {
            let root = workspace_root();
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .map(|t| if t.is_relative() { root.join(t) } else { t })
                .unwrap_or_else(|| root.join("target"))
                .join("demo-static");
            eprintln!("building the static hello binary in {}", target.display());
            match demo::build_static_binary(&root, &target) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let connected = async {
        let rt = DockerRuntime::connect()?;
        rt.ping().await?;
        Ok::<_, berth_runtime::RuntimeError>(rt)
    };
    let rt = match connected.await {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot reach the Docker Engine: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.ensure_demo_image(&binary, &tag).await {
        Ok(img) => {
            eprintln!("{tag} holds {}", binary.display());
            println!("{}", img.id);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot build {tag}: {e}");
            ExitCode::FAILURE
        }
    }
}
