//! One module per subcommand.
pub mod agent;
pub mod demo_image;
pub mod host_access;
pub mod registry;
pub mod server;
pub mod spot;
pub mod store;
pub mod token;
pub mod up;

/// The soft open-file limit, raised to the hard limit at process start (`None`: unlimited).
static NOFILE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();

/// Raises the open-file limit as far as this process may (one descriptor per connection:
/// the API's, the agents', the metadata endpoint's); call once, first thing.
pub fn raise_nofile_limit() {
    let limit = berth_serve::raise_nofile_limit();
    tracing::debug!(?limit, "open-file limit");
    let _ = NOFILE.set(limit);
}

/// The open-file limit in force after [`raise_nofile_limit`].
pub fn nofile_limit() -> Option<u64> {
    NOFILE.get().copied().flatten()
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
