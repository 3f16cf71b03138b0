//! [`Runtime::events`](berth_runtime::Runtime::events) on Docker: the Engine's `/events`
//! stream, filtered on the engine's side to container events `start`, `die`, `oom`,
//! `health_status` and `destroy` of containers carrying the wanted labels.
//!
//! Contract (the trait's, kept this way):
//! * When the stream is first polled it reads the engine's clock (`/info`'s `SystemTime`), and
//!   subscribes with `since` one second before it, then yields
//!   [`RuntimeEvent::Subscribed`]. The engine replays the events it still holds from `since`
//!   on (it keeps the last 256 in memory), so nothing that happens after that clock reading
//!   is missed even though the engine registers the subscription a little later, and clock
//!   skew between this host and a remote engine does not matter.
//! * A failed clock reading, an engine error, an undecodable line or the end of the
//!   connection ends the stream (an `Err` item, then `None`; or `None` when the engine closed
//!   it cleanly).
//! * Actions this crate does not know are skipped; `health_status: <status>` becomes
//!   [`ContainerEventKind::Health`].

use std::collections::HashMap;

use berth_runtime::{
    ContainerEvent, ContainerEventKind, EventStream, HealthStatus, ObjectKind, RuntimeEvent,
};
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::EventsOptions;
use futures_util::stream::{BoxStream, StreamExt};

use crate::DockerRuntime;

/// The container actions subscribed to.
pub const ACTIONS: [&str; 5] = ["start", "die", "oom", "health_status", "destroy"];

/// The events stream of `rt` for containers carrying every one of `labels`.
pub(crate) fn stream(rt: &DockerRuntime, labels: &[(String, String)]) -> EventStream {
    enum Stage {
        Subscribe(DockerRuntime, HashMap<String, Vec<String>>),
        Live(BoxStream<'static, Result<EventMessage, bollard::errors::Error>>, DockerRuntime),
        Done,
    }
    let mut filters = crate::label_filters(labels).unwrap_or_default();
    filters.insert("type".into(), vec!["container".into()]);
    filters.insert("event".into(), ACTIONS.iter().map(|a| a.to_string()).collect());
    let first = Stage::Subscribe(rt.clone(), filters);
    futures_util::stream::unfold(first, |stage| async move {
        match stage {
            Stage::Subscribe(rt, filters) => {
                let info = match rt.docker.info().await {
                    Ok(info) => info,
                    Err(e) => {
                        return Some((
                            Err(rt.err("events", ObjectKind::Container, "", e)),
                            Stage::Done,
                        ));
                    }
                };
                let opts = EventsOptions {
                    since: Some(since(info.system_time.as_deref())),
                    until: None,
                    filters: Some(filters),
                };
                let events = rt.docker.events(Some(opts)).boxed();
                Some((Ok(RuntimeEvent::Subscribed), Stage::Live(events, rt)))
            }
            Stage::Live(mut events, rt) => loop {
                match events.next().await? {
                    Ok(msg) => {
                        if let Some(event) = event_from(&msg) {
                            return Some((
                                Ok(RuntimeEvent::Container(event)),
                                Stage::Live(events, rt),
                            ));
                        }
                    }
                    Err(e) => {
                        return Some((
                            Err(rt.err("events", ObjectKind::Container, "", e)),
                            Stage::Done,
                        ));
                    }
                }
            },
            Stage::Done => None,
        }
    })
    .boxed()
}

/// `since` for a subscription made now: one second before the engine's clock reading
/// (`SystemTime`, RFC 3339), as `seconds.nanoseconds`. Without a reading, this host's clock
/// less five seconds.
fn since(system_time: Option<&str>) -> String {
    let parsed = system_time.and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    });
    let (now, margin) = match parsed {
        Some(t) => (t, time::Duration::seconds(1)),
        None => (time::OffsetDateTime::now_utc(), time::Duration::seconds(5)),
    };
    let t = now - margin;
    format!("{}.{:09}", t.unix_timestamp(), t.nanosecond())
}

/// The container event a message reports, `None` for anything else.
pub fn event_from(msg: &EventMessage) -> Option<ContainerEvent> {
    if msg.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let id = msg.actor.as_ref()?.id.clone().filter(|id| !id.is_empty())?;
    let action = msg.action.as_deref()?;
    let kind = match action {
        "start" => ContainerEventKind::Start,
        "die" => ContainerEventKind::Die,
        "oom" => ContainerEventKind::Oom,
        "destroy" => ContainerEventKind::Destroy,
        other => match other.strip_prefix("health_status:").map(str::trim)? {
            "healthy" => ContainerEventKind::Health(HealthStatus::Healthy),
            "unhealthy" => ContainerEventKind::Health(HealthStatus::Unhealthy),
            "starting" => ContainerEventKind::Health(HealthStatus::Starting),
            _ => return None,
        },
    };
    Some(ContainerEvent { id, kind })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn msg(typ: EventMessageTypeEnum, action: &str, id: &str) -> EventMessage {
        EventMessage {
            typ: Some(typ),
            action: Some(action.into()),
            actor: Some(EventActor { id: Some(id.into()), attributes: None }),
            ..Default::default()
        }
    }

    #[test]
    fn container_actions_map_to_event_kinds() {
        let c = EventMessageTypeEnum::CONTAINER;
        let kind = |m: EventMessage| event_from(&m).map(|e| e.kind);
        assert_eq!(kind(msg(c, "start", "a")), Some(ContainerEventKind::Start));
        assert_eq!(kind(msg(c, "die", "a")), Some(ContainerEventKind::Die));
        assert_eq!(kind(msg(c, "oom", "a")), Some(ContainerEventKind::Oom));
        assert_eq!(kind(msg(c, "destroy", "a")), Some(ContainerEventKind::Destroy));
        assert_eq!(
            kind(msg(c, "health_status: healthy", "a")),
            Some(ContainerEventKind::Health(HealthStatus::Healthy))
        );
        assert_eq!(
            kind(msg(c, "health_status: unhealthy", "a")),
            Some(ContainerEventKind::Health(HealthStatus::Unhealthy))
        );
        assert_eq!(
            kind(msg(c, "health_status: starting", "a")),
            Some(ContainerEventKind::Health(HealthStatus::Starting))
        );
        assert_eq!(kind(msg(c, "exec_die", "a")), None);
        assert_eq!(kind(msg(c, "start", "")), None);
        assert_eq!(kind(msg(EventMessageTypeEnum::IMAGE, "delete", "a")), None);
        assert_eq!(event_from(&msg(c, "die", "abc")).unwrap().id, "abc");
    }

    #[test]
    fn since_is_the_engine_clock_less_a_second() {
        assert_eq!(since(Some("2026-01-01T00:00:10.5Z")), "1767225609.500000000");
        let fallback: f64 = since(Some("garbage")).parse().unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
        assert!((now - 7.0..=now - 4.0).contains(&fallback));
    }
}
