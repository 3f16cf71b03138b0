//! The `awslogs` log driver (issue #15), without Docker's awslogs driver (which would call the
//! real CloudWatch): the container runs with the engine's local log driver, and a shipper
//! follows its output ([`Runtime::follow_logs`]) and sends it to the server's log store
//! ([`berth_agent_protocol::LOGS_PATH`]).
//!
//! Contract:
//! * [`target`] reads a container definition's `logConfiguration` (pure): `awslogs-group`
//!   (required), `awslogs-stream-prefix` (stream `PREFIX/CONTAINER-NAME/TASK-ID`, as ECS
//!   names it; without a prefix the stream is the Docker container id, as on EC2),
//!   `awslogs-create-group`, `mode` and `max-buffer-size` (accepted: the engine's local driver
//!   buffers on disk, so a container never blocks on the shipper and no line is dropped);
//!   `awslogs-region` must be the instance's region (one endpoint serves every region, but a
//!   task's logs stay in its region);
//! * before the container starts, [`Shipper::ensure`] makes the group (with
//!   `awslogs-create-group: true`) and the stream exist; a missing group fails the start as
//!   ECS reports it ([`missing_group_reason`]);
//! * lines are shipped in order, at least every [`FLUSH_EVERY`] or [`MAX_BATCH_LINES`] lines,
//!   each shipment carrying the stream's [`Cursor`] after its last line (Docker's timestamp
//!   of it and how many lines with that timestamp are shipped), which the server stores with
//!   the events in one transaction: a restarted agent resumes from the stored cursor, so
//!   nothing is lost or shipped twice. Failed shipments are retried (with backoff) until they
//!   succeed or the agent stops;
//! * a follow the engine closes or breaks while the container runs, or that stops delivering
//!   while the container's log still grows (the [`watch`] watchdog, against Docker 20.10's
//!   json-file follower stalling under a fast writer), is opened again from the cursor;
//! * only the driver's start makes the stream: a stream (or group) deleted while its
//!   container writes is not made again, and the lines meanwhile are dropped, as Docker's
//!   awslogs driver drops the batches PutLogEvents refuses with ResourceNotFoundException;
//!   a stream made again by someone else receives the lines from then on.

use std::sync::Arc;
use std::time::Duration;

use berth_agent_protocol::{LogLine, LogShipment};
use berth_runtime::Runtime;
use berth_wire::ecs::ContainerDefinition;
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::client::ClientError;
use crate::control::ControlPlane;

mod watch;
pub use watch::Cursor;
use watch::{CHECK_EVERY, Check, Dedupe, Watchdog};

/// A shipment goes out at least this often while lines arrive.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// At most this many lines per shipment.
pub const MAX_BATCH_LINES: usize = 2000;
/// At most this many bytes of JSON-encoded messages per shipment (the server's body cap is
/// 1 MiB).
pub const MAX_BATCH_BYTES: usize = 768 * 1024;
/// CloudWatch's largest event; longer lines are cut.
pub const MAX_EVENT_BYTES: usize = 256 * 1024 - 26;

/// Where a container's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    /// `None`: the Docker container id (known once created).
    pub stream: Option<String>,
    pub create_group: bool,
}

impl Target {
    /// The stream for container `docker_id`.
    pub fn stream_for(&self, docker_id: &str) -> String {
        self.stream.clone().unwrap_or_else(|| docker_id.to_string())
    }
}

/// The `awslogs` target of container `def` of task `task_id` in `region`; `Ok(None)`: the
/// container does not use `awslogs`.
pub fn target(
    def: &ContainerDefinition,
    task_id: &str,
    region: &str,
) -> Result<Option<Target>, String> {
    let Some(lc) = &def.log_configuration else { return Ok(None) };
    if lc.log_driver.map(|d| d.as_str().to_string()).as_deref() != Some("awslogs") {
        return Ok(None);
    }
    let opts = lc.options.clone().unwrap_or_default();
    let name = def.name.clone().unwrap_or_default();
    let group = opts
        .get("awslogs-group")
        .filter(|g| !g.is_empty())
        .ok_or_else(|| {
            format!("container {name}: the awslogs log driver needs the option awslogs-group")
        })?
        .clone();
    if let Some(r) = opts.get("awslogs-region")
        && r != region
    {
        return Err(format!(
            "container {name}: awslogs-region {r} is not the region of this instance ({region}); Berth keeps a task's logs in its own region"
        ));
    }
    let stream = opts
        .get("awslogs-stream-prefix")
        .filter(|p| !p.is_empty())
        .map(|p| format!("{p}/{name}/{task_id}"));
    let create_group =
        opts.get("awslogs-create-group").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Ok(Some(Target { group, stream, create_group }))
}

/// The `stoppedReason` of a task whose container logs to a group that does not exist (ECS's
/// words for it).
pub fn missing_group_reason(message: &str) -> String {
    format!(
        "CannotStartContainerError: Error response from daemon: failed to initialize logging driver: failed to create Cloudwatch log stream: ResourceNotFoundException: {message}"
    )
}

/// The shipments of one instance's tasks.
pub struct Shipper {
    pub control: Arc<dyn ControlPlane>,
    pub cluster: String,
    pub instance_arn: String,
}

impl Shipper {
    /// A shipment to `stream`; `start`: the driver's start, which makes the stream (and, if
    /// the target says so, the group) when missing.
    fn shipment(&self, task_arn: &str, target: &Target, stream: &str, start: bool) -> LogShipment {
        LogShipment {
            container_instance_arn: self.instance_arn.clone(),
            cluster: self.cluster.clone(),
            task_arn: task_arn.to_string(),
            log_group: target.group.clone(),
            log_stream: stream.to_string(),
            create_group: start && target.create_group,
            create_stream: start,
            events: vec![],
            cursor: None,
        }
    }

    /// The driver's start: makes the group (if asked) and stream exist; answers the stored
    /// cursor.
    pub async fn ensure(
        &self,
        task_arn: &str,
        target: &Target,
        stream: &str,
    ) -> Result<Cursor, ClientError> {
        let ack = self.control.ship_logs(&self.shipment(task_arn, target, stream, true)).await?;
        Ok(Cursor::parse(ack.cursor.as_deref()))
    }

    /// The stored cursor of an existing stream (a restarted agent resuming).
    async fn resume_at(
        &self,
        task_arn: &str,
        target: &Target,
        stream: &str,
    ) -> Result<Cursor, ClientError> {
        let ack = self.control.ship_logs(&self.shipment(task_arn, target, stream, false)).await?;
        Ok(Cursor::parse(ack.cursor.as_deref()))
    }

    /// Follows container `id` from `start` (`None`: from the cursor the server holds, asked
    /// until it answers) and ships its lines until its output ends.
    pub async fn follow(
        self: Arc<Self>,
        runtime: Arc<dyn Runtime>,
        id: String,
        task_arn: String,
        target: Target,
        start: Option<Cursor>,
    ) {
        let stream = target.stream_for(&id);
        let mut cursor = match start {
            Some(c) => c,
            None => {
                let mut backoff = Duration::from_millis(200);
                loop {
                    match self.resume_at(&task_arn, &target, &stream).await {
                        Ok(c) => break c,
                        Err(ClientError::Aws { code, message, .. })
                            if code == "ResourceNotFoundException" =>
                        {
                            tracing::warn!(group = %target.group, stream, %message, "cannot resume shipping logs");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(group = %target.group, stream, error = %e, "cannot reach the log store; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            }
        };
        let mut backoff = Duration::from_millis(200);
        let mut stream_missing = false;
        loop {
            let mut lines = runtime.follow_logs(&id, cursor.follow_from());
            let mut dedupe = Dedupe::new(&cursor);
            let mut received_ns = cursor.ts_ns;
            let mut watchdog = Watchdog::new(Instant::now());
            let mut checks = tokio::time::interval_at(Instant::now() + CHECK_EVERY, CHECK_EVERY);
            checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut batch: Vec<LogLine> = vec![];
            let mut batch_cursor = cursor;
            let mut bytes = 0usize;
            let mut deadline = Instant::now() + FLUSH_EVERY;
            let ended = loop {
                let next = tokio::select! {
                    l = lines.next() => Next::Line(l),
                    _ = tokio::time::sleep_until(deadline), if !batch.is_empty() => Next::Flush,
                    _ = checks.tick() => Next::Check,
                };
                let flush = match next {
                    Next::Line(Some(Ok(line))) => {
                        watchdog.heard(Instant::now());
                        received_ns = received_ns.max(line.timestamp_ns);
                        if !dedupe.admit(line.timestamp_ns) {
                            continue;
                        }
                        let text = event_text(line.text);
                        bytes += serde_json::to_string(&text).map_or(text.len(), |s| s.len()) + 40;
                        batch.push(LogLine {
                            timestamp: line.timestamp_ns / 1_000_000,
                            message: text,
                        });
                        batch_cursor.advance(line.timestamp_ns);
                        if batch.len() == 1 {
                            deadline = Instant::now() + FLUSH_EVERY;
                        }
                        batch.len() >= MAX_BATCH_LINES || bytes >= MAX_BATCH_BYTES
                    }
                    Next::Line(Some(Err(e))) => {
                        tracing::debug!(container = %id, error = %e, "log stream broke; following again");
                        break Ended::Broke(e);
                    }
                    Next::Line(None) => break Ended::Closed,
                    Next::Flush => true,
                    Next::Check => {
                        if watchdog.check(Instant::now()) == Check::Probe {
                            match runtime.last_log_timestamp(&id).await {
                                Ok(latest) => {
                                    if watchdog.probed(Instant::now(), received_ns, latest) {
                                        break Ended::Stalled;
                                    }
                                }
                                Err(e) => {
                                    tracing::debug!(container = %id, error = %e, "cannot probe the container's log");
                                    watchdog.heard(Instant::now());
                                }
                            }
                        }
                        false
                    }
                };
                if flush {
                    let events = std::mem::take(&mut batch);
                    self.ship(
                        &task_arn,
                        &target,
                        &stream,
                        events,
                        batch_cursor,
                        &mut stream_missing,
                    )
                    .await;
                    cursor = batch_cursor;
                    bytes = 0;
                    watchdog.heard(Instant::now());
                }
            };
            if !batch.is_empty() {
                self.ship(&task_arn, &target, &stream, batch, batch_cursor, &mut stream_missing)
                    .await;
                cursor = batch_cursor;
            }
            match ended {
                // Docker 20.10's json-file follower may stop delivering while the container
                // writes on (see `watch`): follow again from the cursor, at once.
                Ended::Stalled => {
                    tracing::info!(container = %id, "log stream stalled while the container writes; following again");
                }
                // The engine ended the stream: the output is over only if the container is.
                // (Docker may close a follow stream of a running container, e.g. when its
                // reader falls behind a fast writer; following again from the cursor
                // loses nothing and repeats nothing.)
                Ended::Closed => match runtime.inspect(&id).await {
                    Ok(Some(c)) if c.state == berth_runtime::ContainerState::Running => {
                        tracing::debug!(container = %id, "log stream ended while running; following again");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                    _ => return,
                },
                Ended::Broke(berth_runtime::RuntimeError::NotFound { .. }) => return,
                Ended::Broke(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Ships one batch, retrying until the server takes it, or drops it if its stream (or
    /// group) is gone: Docker's awslogs driver logs PutLogEvents' ResourceNotFoundException
    /// and goes on with its next batch; the stream is made only at the driver's start.
    /// `missing` remembers the stream was found gone (warned about once per spell).
    async fn ship(
        &self,
        task_arn: &str,
        target: &Target,
        stream: &str,
        events: Vec<LogLine>,
        cursor: Cursor,
        missing: &mut bool,
    ) {
        let mut s = self.shipment(task_arn, target, stream, false);
        s.events = events;
        s.cursor = Some(cursor.text());
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.control.ship_logs(&s).await {
                Ok(_) => {
                    *missing = false;
                    return;
                }
                Err(ClientError::Aws { code, message, .. })
                    if code == "ResourceNotFoundException" =>
                {
                    if !*missing {
                        tracing::warn!(group = %target.group, stream, %message, "the log stream is gone: its container's lines are dropped until it exists again");
                    }
                    *missing = true;
                    return;
                }
                Err(e) => {
                    tracing::warn!(group = %target.group, stream, error = %e, "shipping logs failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// What the follower waited for.
enum Next {
    Line(Option<Result<berth_runtime::LogLine, berth_runtime::RuntimeError>>),
    Flush,
    Check,
}

/// Why a follow stream was left.
enum Ended {
    /// The engine closed it.
    Closed,
    Broke(berth_runtime::RuntimeError),
    /// The watchdog found it stalled.
    Stalled,
}

/// A line as a CloudWatch event's message: cut to [`MAX_EVENT_BYTES`], never empty.
fn event_text(mut text: String) -> String {
    if text.len() > MAX_EVENT_BYTES {
        let mut cut = MAX_EVENT_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    // An empty line is not an event CloudWatch accepts.
    if text.is_empty() {
        text.push(' ');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_agent_protocol::LogShipmentAck;
    use berth_runtime::ContainerSpec;
    use berth_runtime::fake::FakeRuntime;
    use std::sync::Mutex;

    /// The server's side of the shipments: events and the cursor stored together; the
    /// first `fail` shipments with events are refused (a server that is down).
    #[derive(Default)]
    struct Sink {
        groups: Mutex<Vec<String>>,
        streams: Mutex<Vec<String>>,
        events: Mutex<Vec<String>>,
        cursor: Mutex<Option<String>>,
        fail: Mutex<u32>,
    }

    #[async_trait::async_trait]
    impl ControlPlane for Sink {
        async fn register(
            &self,
            _: &berth_wire::ecs::RegisterContainerInstanceRequest,
        ) -> Result<berth_wire::ecs::RegisterContainerInstanceResponse, ClientError> {
            unreachable!()
        }
        async fn poll(
            &self,
            _: &berth_agent_protocol::PollRequest,
        ) -> Result<berth_agent_protocol::PollResponse, ClientError> {
            unreachable!()
        }
        async fn report(&self, _: &berth_agent_protocol::TaskReport) -> Result<(), ClientError> {
            unreachable!()
        }
        async fn ship_logs(&self, s: &LogShipment) -> Result<LogShipmentAck, ClientError> {
            let mut groups = self.groups.lock().unwrap();
            if !groups.contains(&s.log_group) {
                if !s.create_group {
                    return Err(ClientError::Aws {
                        code: "ResourceNotFoundException".into(),
                        message: "The specified log group does not exist.".into(),
                        status: 400,
                    });
                }
                groups.push(s.log_group.clone());
            }
            let mut streams = self.streams.lock().unwrap();
            if !streams.contains(&s.log_stream) {
                if !s.create_stream {
                    return Err(ClientError::Aws {
                        code: "ResourceNotFoundException".into(),
                        message: "The specified log stream does not exist.".into(),
                        status: 400,
                    });
                }
                streams.push(s.log_stream.clone());
            }
            if !s.events.is_empty() {
                let mut fail = self.fail.lock().unwrap();
                if *fail > 0 {
                    *fail -= 1;
                    return Err(ClientError::Transport {
                        endpoint: "x".into(),
                        message: "down".into(),
                    });
                }
            }
            self.events.lock().unwrap().extend(s.events.iter().map(|e| e.message.clone()));
            let mut cursor = self.cursor.lock().unwrap();
            if s.cursor.is_some() {
                cursor.clone_from(&s.cursor);
            }
            Ok(LogShipmentAck { cursor: cursor.clone() })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lines_are_shipped_in_order_once_across_failures_and_restarts() {
        let rt = Arc::new(FakeRuntime::new());
        rt.add_image("app");
        let id = rt
            .create(&ContainerSpec {
                name: "a".into(),
                image: "app:latest".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        rt.start(&id).await.unwrap();
        let sink = Arc::new(Sink::default());
        *sink.fail.lock().unwrap() = 2;
        let shipper = Arc::new(Shipper {
            control: sink.clone(),
            cluster: "c".into(),
            instance_arn: "i".into(),
        });
        let target =
            Target { group: "g".into(), stream: Some("p/a/t".into()), create_group: false };
        assert!(matches!(
            shipper.ensure("t", &target, "p/a/t").await,
            Err(ClientError::Aws { code, .. }) if code == "ResourceNotFoundException"
        ));
        let target = Target { create_group: true, ..target };
        assert_eq!(shipper.ensure("t", &target, "p/a/t").await.unwrap(), Cursor::default());
        for i in 0..5 {
            rt.push_log(&id, &format!("line {i}"), i % 2 == 1);
        }
        // The first follower ships what there is (through two refused shipments) and is
        // then cut off, as a killed agent is.
        let first = tokio::spawn(shipper.clone().follow(
            rt.clone(),
            id.clone(),
            "t".into(),
            target.clone(),
            Some(Cursor::default()),
        ));
        while sink.events.lock().unwrap().len() < 5 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        first.abort();
        // Lines written while no agent runs, then the container ends.
        rt.push_log(&id, "line 5", false);
        rt.push_log(&id, "", false);
        rt.exit(&id, 0);
        // The restarted agent resumes from the stored cursor and finishes once all is shipped.
        shipper.clone().follow(rt.clone(), id.clone(), "t".into(), target, None).await;
        let want: Vec<String> =
            (0..6).map(|i| format!("line {i}")).chain([" ".to_string()]).collect();
        assert_eq!(*sink.events.lock().unwrap(), want);
    }

    /// A running container, a sink and a shipper whose group and stream exist.
    async fn running() -> (Arc<FakeRuntime>, String, Arc<Sink>, Arc<Shipper>, Target) {
        let rt = Arc::new(FakeRuntime::new());
        rt.add_image("app");
        let spec =
            ContainerSpec { name: "a".into(), image: "app:latest".into(), ..Default::default() };
        let id = rt.create(&spec).await.unwrap();
        rt.start(&id).await.unwrap();
        let sink = Arc::new(Sink::default());
        let shipper = Arc::new(Shipper {
            control: sink.clone(),
            cluster: "c".into(),
            instance_arn: "i".into(),
        });
        let target = Target { group: "g".into(), stream: Some("p/a/t".into()), create_group: true };
        shipper.ensure("t", &target, "p/a/t").await.unwrap();
        (rt, id, sink, shipper, target)
    }

    /// Waits (on the paused clock) until the sink holds `n` events; fails after a minute.
    async fn shipped(sink: &Sink, n: usize) -> Vec<String> {
        tokio::time::timeout(Duration::from_secs(60), async {
            while sink.events.lock().unwrap().len() < n {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} events not shipped: {:?}", sink.events.lock().unwrap()));
        sink.events.lock().unwrap().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn a_follow_that_stalls_while_the_container_writes_is_opened_again_from_the_cursor() {
        let (rt, id, sink, shipper, target) = running().await;
        let follower = tokio::spawn(shipper.clone().follow(
            rt.clone(),
            id.clone(),
            "t".into(),
            target,
            Some(Cursor::default()),
        ));
        for i in 0..3 {
            rt.push_log(&id, &format!("line {i}"), false);
        }
        shipped(&sink, 3).await;
        // The engine's follow stops delivering; the container writes on.
        rt.stall_follows(&id);
        let stalled_at = Instant::now();
        for i in 3..6 {
            rt.push_log(&id, &format!("line {i}"), false);
        }
        shipped(&sink, 6).await;
        assert!(
            Instant::now() - stalled_at >= watch::STALL_AFTER,
            "re-opened only after a quiet spell"
        );
        rt.exit(&id, 0);
        follower.await.unwrap();
        let want: Vec<String> = (0..6).map(|i| format!("line {i}")).collect();
        assert_eq!(*sink.events.lock().unwrap(), want, "nothing lost, nothing twice");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_deleted_while_its_container_writes_is_not_made_again() {
        let (rt, id, sink, shipper, target) = running().await;
        let follower = tokio::spawn(shipper.clone().follow(
            rt.clone(),
            id.clone(),
            "t".into(),
            target,
            Some(Cursor::default()),
        ));
        rt.push_log(&id, "before", false);
        shipped(&sink, 1).await;
        // DeleteLogStream.
        sink.streams.lock().unwrap().clear();
        sink.events.lock().unwrap().clear();
        rt.push_log(&id, "while deleted", false);
        tokio::time::sleep(FLUSH_EVERY * 4).await;
        assert!(sink.streams.lock().unwrap().is_empty(), "the follower made the stream again");
        assert!(sink.events.lock().unwrap().is_empty());
        // CreateLogStream by someone: the lines from then on land.
        sink.streams.lock().unwrap().push("p/a/t".into());
        rt.push_log(&id, "after", false);
        assert_eq!(shipped(&sink, 1).await, ["after"]);
        rt.exit(&id, 0);
        follower.await.unwrap();
        assert_eq!(*sink.events.lock().unwrap(), ["after"]);
    }

    fn def(options: serde_json::Value) -> ContainerDefinition {
        serde_json::from_value(serde_json::json!({
            "name": "web", "image": "x",
            "logConfiguration": {"logDriver": "awslogs", "options": options}
        }))
        .unwrap()
    }

    #[test]
    fn awslogs_options_name_the_group_and_stream_as_ecs_does() {
        let t = |o| target(&def(o), "abc123", "us-east-1");
        assert_eq!(
            t(
                serde_json::json!({"awslogs-group": "/ecs/web", "awslogs-stream-prefix": "app", "awslogs-region": "us-east-1"})
            ),
            Ok(Some(Target {
                group: "/ecs/web".into(),
                stream: Some("app/web/abc123".into()),
                create_group: false
            }))
        );
        assert_eq!(
            t(
                serde_json::json!({"awslogs-group": "g", "awslogs-create-group": "true", "mode": "non-blocking", "max-buffer-size": "4m"})
            ),
            Ok(Some(Target { group: "g".into(), stream: None, create_group: true }))
        );
        assert!(t(serde_json::json!({})).unwrap_err().contains("awslogs-group"));
        assert!(
            t(serde_json::json!({"awslogs-group": "g", "awslogs-region": "eu-west-1"}))
                .unwrap_err()
                .contains("eu-west-1")
        );
        let json_file: ContainerDefinition = serde_json::from_value(serde_json::json!({
            "name": "web", "logConfiguration": {"logDriver": "json-file"}
        }))
        .unwrap();
        assert_eq!(target(&json_file, "t", "us-east-1"), Ok(None));
        assert_eq!(
            Target { group: "g".into(), stream: None, create_group: false }.stream_for("d1"),
            "d1"
        );
    }
}
