//! `berth demo-image`: builds the demo web app's image (`berth-demo:latest`) from its static
//! binary, through the Docker API (no registry, no `docker` CLI needed).

use std::path::PathBuf;

use anyhow::Context;

/// Flags of `berth demo-image`.
#[derive(clap::Args, Clone, Debug)]
#[group(id = "demo-image-flags")]
pub struct Args {
    /// The statically linked `hello` binary (scripts/build-demo-image.sh builds it).
    #[arg(long)]
    pub binary: PathBuf,
    #[arg(long, default_value = "berth-demo:latest")]
    pub tag: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let docker = berth_runtime_docker::DockerRuntime::connect()
            .context("cannot connect to Docker Engine")?;
        docker
            .build_demo_image(&args.binary, &args.tag)
            .await
            .with_context(|| format!("building {}", args.tag))?;
        eprintln!("built {}", args.tag);
        anyhow::Ok(())
    })
}
