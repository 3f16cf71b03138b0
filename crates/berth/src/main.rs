//! `berth`: one binary, one file per subcommand under `cmd/`.
#![forbid(unsafe_code)]

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth", version, about = "Run Amazon ECS workloads on your own machines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: the ECS API (AWS JSON 1.1, SigV4) over an embedded store.
    Server(cmd::server::ServerArgs),
    /// Run the agent: register this host as a container instance, run its tasks on Docker.
    Agent(cmd::agent::Args),
    /// Run a control plane and an agent in one process (a laptop, CI).
    Up(cmd::up::Args),
    /// Manage join tokens: agents on other hosts exchange one for their own instance key.
    Token(cmd::token::Args),
    /// Fault injection: interrupt FARGATE_SPOT tasks as AWS does when it reclaims Spot
    /// capacity (`berth spot interrupt`).
    Spot(cmd::spot::Args),
    /// The image registry's housekeeping: `berth registry gc` collects unreferenced blobs
    /// now.
    Registry(cmd::registry::Args),
    /// Build the demo web app's image (berth-demo:latest) from its static binary.
    DemoImage(cmd::demo_image::Args),
    /// The state store: `berth store copy` moves every record between SQLite and etcd.
    Store(cmd::store::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    cmd::raise_nofile_limit();
    match cli.command {
        Command::Server(args) => cmd::server::run(args),
        Command::Agent(args) => cmd::agent::run(args),
        Command::Up(args) => cmd::up::run(args),
        Command::Token(args) => cmd::token::run(args),
        Command::Spot(args) => cmd::spot::run(args),
        Command::Registry(args) => cmd::registry::run(args),
        Command::DemoImage(args) => cmd::demo_image::run(args),
        Command::Store(args) => cmd::store::run(args),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
