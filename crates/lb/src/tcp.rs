//! The TCP listener (NLB): each accepted connection goes to a target of the default forward
//! action's group (weighted between groups, round robin within one, same health rules as
//! HTTP) and bytes are copied both ways until either side closes. A target that refuses the
//! connection is ejected and the next one is tried, so a client is refused only when no
//! registered target accepts. A connection counts as in flight on its target while it lives
//! (draining targets keep their open connections).

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};

use crate::engine::Shared;
use crate::group::InFlight;
use crate::table::{Route, Table, weighted};

pub(crate) async fn serve(listener: TcpListener, table: Arc<ArcSwap<Table>>, shared: Arc<Shared>) {
    loop {
        let (mut client, _peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "load balancer accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let table = table.load_full();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Route::Forward { groups, total, .. } = &**table.default_route() else { return };
            let Some(group) = weighted(groups, *total, shared.rng.next()) else { return };
            let mut excluded = Vec::new();
            while let Some(target) = group.pick(None, &excluded) {
                match tokio::time::timeout(shared.connect_timeout, TcpStream::connect(target.addr))
                    .await
                {
                    Ok(Ok(mut upstream)) => {
                        let _ = upstream.set_nodelay(true);
                        let _guard = InFlight::new(target);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        return;
                    }
                    _ => {
                        target.eject();
                        excluded.push(target.addr);
                        if excluded.len() >= group.registered() {
                            return;
                        }
                    }
                }
            }
        });
    }
}
