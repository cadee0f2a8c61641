//! The EchoStream demo: a server and a client in one process, talking over QUIC on 127.0.0.1
//! with the code generated from `schemas/demo.echo`. It shows an rpc each way, events each way,
//! a live camera stream of datagrams played out through the jitter buffer (over the network
//! simulator, so that some frames are lost, late or reordered) with its statistics, and the
//! clock offset and round trip the two peers measured; then it exits.
//!
//! Run it with `cargo run -p echostream-demo`. The binary is a thin wrapper around [`run`].

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use echostream_runtime::clock::{OffsetClock, SystemClock};
use echostream_runtime::netsim::{LinkConfig, NetSimConfig};
use echostream_runtime::tls::{ClientTls, ServerTls};
use echostream_runtime::{
    Bytes, Client, Played, ReceiveStats, Server, Session, Status, StreamEnd, StreamInfo,
    async_trait,
};
use tokio::sync::mpsc;

/// The code generated from `schemas/demo.echo` by `build.rs`.
pub mod schema {
    echostream_runtime::include_schema!("demo.v1");
}

use schema::{Answer, Chat, Join, Question, VideoFrame, Welcome};

/// Frames per second of the camera stream.
const FPS: u32 = 50;
/// How long the camera streams.
const STREAM_TIME: Duration = Duration::from_secs(2);
/// A keyframe every this many frames (one a second), deltas between.
const KEYFRAME_EVERY: u32 = 50;
const KEYFRAME_BYTES: usize = 12_000;
const DELTA_BYTES: usize = 1_200;
/// How far ahead of the server's the client's wall clock runs, on purpose, so that clock sync
/// has something to find.
const CLIENT_CLOCK_AHEAD: Duration = Duration::from_millis(250);
/// The longest any one step may wait before the demo gives up with an error.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// The path between the two peers, simulated on the client's socket (both directions): a
/// little loss, 15 ms ± 10 ms of delay each way, and now and then a datagram held back 70 ms,
/// longer than the camera's 60 ms jitter buffer waits.
pub fn path() -> LinkConfig {
    LinkConfig {
        loss: 0.02,
        delay: Duration::from_millis(15),
        jitter: Duration::from_millis(10),
        reorder: 0.02,
        reorder_delay: Duration::from_millis(70),
        ..LinkConfig::default()
    }
}

/// What the demo measured, for callers that want the numbers rather than the printout.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Camera frames sent by the client.
    pub frames_sent: u64,
    /// What the server's jitter buffer did with them.
    pub camera: ReceiveStats,
    /// The client's clock minus the server's, as the server estimated it, in microseconds.
    pub clock_offset_micros: Option<i64>,
    /// The session's smoothed round-trip time, as the server measured it.
    pub rtt: Option<Duration>,
}

/// The demo failed: a step timed out or a call returned an error.
#[derive(Debug)]
pub struct DemoError(String);

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DemoError {}

impl From<Status> for DemoError {
    fn from(status: Status) -> Self {
        DemoError(format!("call failed: {status}"))
    }
}

impl From<echostream_runtime::Error> for DemoError {
    fn from(error: echostream_runtime::Error) -> Self {
        DemoError(error.to_string())
    }
}

impl From<echostream_runtime::tls::TlsError> for DemoError {
    fn from(error: echostream_runtime::tls::TlsError) -> Self {
        DemoError(error.to_string())
    }
}

/// Awaits `future`, or fails naming `what` after [`STEP_TIMEOUT`].
async fn step<F: Future>(what: &str, future: F) -> Result<F::Output, DemoError> {
    tokio::time::timeout(STEP_TIMEOUT, future)
        .await
        .map_err(|_| DemoError(format!("timed out after {STEP_TIMEOUT:?}: {what}")))
}

/// The server's implementation of `Studio`.
struct Studio {
    viewers: AtomicU32,
    /// The sessions of viewers who joined, so the demo can call them back.
    joined: mpsc::UnboundedSender<Session>,
    chats: mpsc::UnboundedSender<Chat>,
    camera: Arc<Camera>,
}

/// What the server's camera handler saw.
#[derive(Default)]
struct Camera {
    played: AtomicU64,
    keyframes: AtomicU64,
    /// The stream, kept for its statistics once it ends.
    stream: Mutex<Option<StreamInfo>>,
    ended: Mutex<Option<StreamEnd>>,
}

#[async_trait]
impl schema::Studio for Studio {
    async fn join(&self, session: &Session, request: Join) -> Result<Welcome, Status> {
        if request.name.is_empty() {
            return Err(Status::invalid_argument("join needs a name"));
        }
        let viewers = self.viewers.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = self.joined.send(session.clone());
        Ok(Welcome {
            text: format!("welcome to the studio, {}", request.name),
            viewers,
        })
    }

    async fn chat(&self, _session: &Session, event: Chat) {
        let _ = self.chats.send(event);
    }

    async fn on_camera_open(&self, _session: &Session, stream: &StreamInfo) {
        *self.camera.stream.lock().unwrap() = Some(stream.clone());
    }

    async fn camera(&self, _session: &Session, _stream: &StreamInfo, frame: Played<VideoFrame>) {
        self.camera.played.fetch_add(1, Ordering::Relaxed);
        if frame.payload.keyframe {
            self.camera.keyframes.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn on_camera_end(&self, _session: &Session, _stream: &StreamInfo, end: StreamEnd) {
        *self.camera.ended.lock().unwrap() = Some(end);
    }
}

/// The client's implementation of `Viewer`.
struct Viewer {
    notices: mpsc::UnboundedSender<Chat>,
}

#[async_trait]
impl schema::Viewer for Viewer {
    async fn confirm(&self, _session: &Session, request: Question) -> Result<Answer, Status> {
        Ok(Answer {
            // A viewer says yes to any question it was actually asked.
            yes: !request.text.is_empty(),
            text: "rolling".into(),
        })
    }

    async fn notice(&self, _session: &Session, event: Chat) {
        let _ = self.notices.send(event);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn signed_ms(micros: i64) -> String {
    format!("{:+.1} ms", micros as f64 / 1e3)
}

fn heading(n: u32, title: &str) {
    println!();
    println!("{n}. {title}");
}

/// Runs the whole demo, printing as it goes, and returns what it measured.
pub async fn run() -> Result<Summary, DemoError> {
    let started = Instant::now();
    println!(
        "EchoStream demo: a server and a client in this process, one QUIC connection on 127.0.0.1"
    );
    println!(
        "Schema: demo/schemas/demo.echo (service Studio on the server, service Viewer on the client)"
    );
    println!();

    // The server: a fresh self-signed certificate, the generated `Studio` service.
    let (joined_tx, mut joined) = mpsc::unbounded_channel();
    let (chats_tx, mut chats) = mpsc::unbounded_channel();
    let camera = Arc::new(Camera::default());
    let studio = Studio {
        viewers: AtomicU32::new(0),
        joined: joined_tx,
        chats: chats_tx,
        camera: camera.clone(),
    };
    let tls = ServerTls::self_signed(["localhost"])?;
    let server = step(
        "the server binds",
        Server::builder()
            .tls(tls)
            .service(schema::StudioServer::new(studio))
            .bind("127.0.0.1:0"),
    )
    .await??;
    let fingerprint = server.fingerprint().to_string();
    println!(
        "  server  listening on {}, TLS 1.3 with a self-signed certificate",
        server.local_addr()
    );
    println!(
        "          sha-256 {}…",
        fingerprint.get(..23).unwrap_or(&fingerprint)
    );

    // The client: pins that certificate, serves `Viewer`, runs on the network simulator, and
    // its wall clock is wrong on purpose.
    let (notices_tx, mut notices) = mpsc::unbounded_channel();
    let link = path();
    let client = step(
        "the client starts",
        Client::builder()
            .tls(ClientTls::pinned(server.fingerprint()))
            .service(schema::ViewerServer::new(Viewer {
                notices: notices_tx,
            }))
            .netsim(NetSimConfig::symmetric(link.clone(), 7))
            .clock(Arc::new(OffsetClock::new(
                SystemClock,
                CLIENT_CLOCK_AHEAD.as_micros() as i64,
            )))
            .build(),
    )
    .await??;
    let connect_start = Instant::now();
    let to_server = step(
        "the client connects",
        client.connect(server.local_addr(), "localhost"),
    )
    .await??;
    println!(
        "  client  connected in {}, pinning that certificate; its UDP socket runs on the network simulator:",
        ms(connect_start.elapsed())
    );
    println!(
        "          {:.0}% loss, {} ± {} delay each way, {:.0}% of datagrams held back {}",
        link.loss * 100.0,
        ms(link.delay),
        ms(link.jitter),
        link.reorder * 100.0,
        ms(link.reorder_delay)
    );
    println!(
        "          and its wall clock runs {} ahead of the server's on purpose",
        ms(CLIENT_CLOCK_AHEAD)
    );

    // 1. The client calls the server.
    heading(1, "RPC, client → server");
    let studio = schema::StudioClient::new(to_server.clone());
    let t = Instant::now();
    let welcome = step("Studio.join", studio.join(Join { name: "ann".into() })).await??;
    println!(
        "   Studio.join {{ name: \"ann\" }}  →  \"{}\" ({} viewer)   in {}",
        welcome.text,
        welcome.viewers,
        ms(t.elapsed())
    );
    let refused = step("Studio.join without a name", studio.join(Join::default())).await?;
    match refused {
        Err(status) => println!(
            "   Studio.join {{ name: \"\" }}     →  error {:?}: {}",
            status.code(),
            status.message()
        ),
        Ok(welcome) => {
            return Err(DemoError(format!(
                "join without a name was accepted: {welcome:?}"
            )));
        }
    }

    // 2. The server calls the client, on the session of the viewer who joined.
    heading(2, "RPC, server → client");
    let to_client = step("the server sees the join", joined.recv())
        .await?
        .ok_or_else(|| DemoError("the server stopped".into()))?;
    let viewer = schema::ViewerClient::new(to_client.clone());
    let t = Instant::now();
    let answer = step(
        "Viewer.confirm",
        viewer.confirm(Question {
            text: "start your camera?".into(),
        }),
    )
    .await??;
    println!(
        "   Viewer.confirm {{ text: \"start your camera?\" }}  →  yes: {}, \"{}\"   in {}",
        answer.yes,
        answer.text,
        ms(t.elapsed())
    );

    // 3. Events: fire and forget, in order per sender.
    heading(3, "Events, both ways");
    let lines = ["hello everyone", "camera coming up", "can you see me?"];
    for text in lines {
        studio
            .chat(Chat {
                from: "ann".into(),
                text: text.into(),
            })
            .await?;
    }
    for _ in lines {
        let chat = step("Studio.chat arrives", chats.recv())
            .await?
            .ok_or_else(|| DemoError("the server stopped".into()))?;
        println!(
            "   client → server  Studio.chat    {}: {}",
            chat.from, chat.text
        );
    }
    viewer
        .notice(Chat {
            from: "studio".into(),
            text: "ann is live".into(),
        })
        .await?;
    let notice = step("Viewer.notice arrives", notices.recv())
        .await?
        .ok_or_else(|| DemoError("the client stopped".into()))?;
    println!(
        "   server → client  Viewer.notice  {}: {}",
        notice.from, notice.text
    );

    // Playout times come from the sender's timestamps once the clocks are synced: wait for it
    // (pings go out every 50 ms at first).
    step("clock sync", async {
        while !to_client.clock_sync().is_some_and(|c| c.synced) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;

    // 4. A live stream of datagrams through the jitter buffer.
    let frames = u64::from(FPS) * STREAM_TIME.as_secs();
    heading(
        4,
        &format!(
            "Datagram stream, client → server: Studio.camera, {frames} frames at {FPS} fps, played out through a 60 ms jitter buffer"
        ),
    );
    println!(
        "   (a {} KB keyframe each second, {} KB deltas between; keyframes go as several datagrams)",
        KEYFRAME_BYTES / 1000,
        DELTA_BYTES as f64 / 1000.0
    );
    let sender = step("the camera stream opens", studio.camera()).await??;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / FPS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let stream_start = Instant::now();
    let mut sent = 0u64;
    let mut refused = 0u64;
    for index in 0..frames as u32 {
        tick.tick().await;
        let keyframe = index % KEYFRAME_EVERY == 0;
        let len = if keyframe {
            KEYFRAME_BYTES
        } else {
            DELTA_BYTES
        };
        let frame = VideoFrame {
            index,
            keyframe,
            data: Bytes::from(vec![index as u8; len]),
        };
        // A live sender never waits: a frame the path cannot take now is dropped (counted).
        match sender.send(&frame).await {
            Ok(()) => sent += 1,
            Err(_) => refused += 1,
        }
        if (index + 1) % (FPS / 2) == 0 {
            println!(
                "   {:>4.1} s  sent {:>3}  played {:>3}",
                stream_start.elapsed().as_secs_f64(),
                sent,
                camera.played.load(Ordering::Relaxed)
            );
        }
    }
    // Let the last frames arrive and play (jitter buffer plus the slowest path), then finish.
    tokio::time::sleep(Duration::from_millis(250)).await;
    sender.finish();
    step("the camera stream ends", async {
        while camera.ended.lock().unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await?;
    let info = camera
        .stream
        .lock()
        .unwrap()
        .clone()
        .ok_or_else(|| DemoError("the camera stream never opened".into()))?;
    let stats = info.stats();
    println!(
        "   sent        {:>4}   refused by the sender {}",
        sent, refused
    );
    println!(
        "   received    {:>4}   played    {:>4}   keyframes played {}",
        stats.received,
        stats.played,
        camera.keyframes.load(Ordering::Relaxed)
    );
    println!(
        "   lost        {:>4}   late      {:>4}   reordered {:>4}   duplicate {}   incomplete {}",
        stats.lost, stats.late, stats.reordered, stats.duplicate, stats.incomplete
    );
    println!(
        "   jitter buffer target {}, last frame waited {} in it; interarrival jitter {}",
        ms(stats.target_delay),
        ms(stats.current_delay),
        ms(stats.jitter),
    );
    println!(
        "   played on the sender's timestamps mapped into the server's clock: {}",
        if stats.clock_synced { "yes" } else { "no" }
    );
    if let Some(sim) = client.netsim() {
        let s = sim.stats();
        println!(
            "   network simulator: {} datagrams out, {} lost, {} held back; {} in, {} lost",
            s.outbound.datagrams,
            s.outbound.dropped,
            s.outbound.held_back,
            s.inbound.datagrams,
            s.inbound.dropped
        );
    }

    // 5. The clocks, as each side sees the other.
    heading(5, "Clock sync (ping/pong on the session)");
    let server_view = to_client.clock_sync();
    let client_view = to_server.clock_sync();
    if let Some(c) = server_view {
        println!(
            "   server sees the client's clock {} ± {} (best ping's rtt {}){}",
            signed_ms(c.offset_micros),
            ms(c.error),
            ms(c.rtt),
            if c.synced { "" } else { " (not synced yet)" }
        );
    }
    if let Some(c) = client_view {
        println!(
            "   client sees the server's clock {} ± {} (best ping's rtt {}){}",
            signed_ms(c.offset_micros),
            ms(c.error),
            ms(c.rtt),
            if c.synced { "" } else { " (not synced yet)" }
        );
    }
    if let Some(rtt) = to_client.rtt() {
        println!("   smoothed rtt of the session {}", ms(rtt));
    }
    println!(
        "   (the client's clock was set {} ahead: the estimate should be close to it)",
        ms(CLIENT_CLOCK_AHEAD)
    );

    client.close().await;
    server.shutdown(Duration::from_millis(500)).await;
    println!();
    println!(
        "Done in {:.1} s. Next: README.md's quick start, docs/idl.md for the schema language.",
        started.elapsed().as_secs_f64()
    );
    Ok(Summary {
        frames_sent: sent,
        camera: stats,
        clock_offset_micros: server_view.map(|c| c.offset_micros),
        rtt: to_client.rtt(),
    })
}
