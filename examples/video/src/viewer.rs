//! The viewer: plays the two streams out and measures how they play.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use echostream_runtime::clock::ClockEstimate;
use echostream_runtime::{Played, ReceiveStats, Session, StreamInfo, async_trait};

use crate::video;

/// The receiver's implementation of `Media`. Frames reach the handlers from the jitter
/// buffers the schema asks for (`jitter_ms = 120`): in order, at their playout time.
#[derive(Default)]
pub struct Viewer {
    state: Mutex<ViewerState>,
}

#[derive(Default)]
struct ViewerState {
    session: Option<Session>,
    video: Track,
    audio: Track,
    keyframes: u64,
}

/// One stream as played.
#[derive(Default)]
struct Track {
    /// The received stream, whose statistics the runtime keeps.
    stream: Option<StreamInfo>,
    /// Capture-to-play latency of the latest played frame, in microseconds, on the receiver's
    /// clock (the capture time mapped from the sender's clock with the estimated offset).
    latency_us: Option<i64>,
}

impl Track {
    fn stats(&self) -> ReceiveStats {
        self.stream
            .as_ref()
            .map(StreamInfo::stats)
            .unwrap_or_default()
    }
}

/// Everything the viewer reports, at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    /// The video stream's jitter buffer statistics.
    pub video: ReceiveStats,
    /// The audio stream's jitter buffer statistics.
    pub audio: ReceiveStats,
    /// Video keyframes played.
    pub keyframes: u64,
    /// The offset of the sender's clock from the receiver's, once measured.
    pub clock: Option<ClockEstimate>,
    /// Capture-to-play latency of the latest played video frame (µs).
    pub video_latency_us: Option<i64>,
    /// Capture-to-play latency of the latest played audio frame (µs).
    pub audio_latency_us: Option<i64>,
}

impl Report {
    /// The A/V skew: how much later after capture the latest video frame played than the latest
    /// audio frame (µs; positive: video behind audio). Equal to the difference of their play
    /// times minus the difference of their capture times; lip sync wants it within ±45 ms.
    pub fn skew_us(&self) -> Option<i64> {
        Some(self.video_latency_us? - self.audio_latency_us?)
    }
}

impl Viewer {
    /// What the viewer knows now.
    pub fn report(&self) -> Report {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Report {
            video: state.video.stats(),
            audio: state.audio.stats(),
            keyframes: state.keyframes,
            clock: state.session.as_ref().and_then(Session::clock_sync),
            video_latency_us: state.video.latency_us,
            audio_latency_us: state.audio.latency_us,
        }
    }

    /// Records a played frame of `track`: its capture time, mapped into the local clock, and
    /// when it played.
    fn played(
        &self,
        session: &Session,
        track: fn(&mut ViewerState) -> &mut Track,
        timestamp: u64,
        playout: Instant,
    ) {
        // The wall-clock time (receiver's clock) at which the frame was due to play.
        let late_by = Instant::now().saturating_duration_since(playout);
        let played_at = session.clock().now_micros() as i64 - late_by.as_micros() as i64;
        // `peer ≈ local + offset`: the capture time on the receiver's clock.
        let offset = session.clock_sync().map_or(0, |c| c.offset_micros);
        let captured_at = timestamp as i64 - offset;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.session.get_or_insert_with(|| session.clone());
        track(&mut state).latency_us = Some(played_at - captured_at);
    }

    fn opened(
        &self,
        session: &Session,
        stream: &StreamInfo,
        track: fn(&mut ViewerState) -> &mut Track,
    ) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.session = Some(session.clone());
        track(&mut state).stream = Some(stream.clone());
    }
}

#[async_trait]
impl video::Media for Viewer {
    async fn on_video_open(&self, session: &Session, stream: &StreamInfo) {
        self.opened(session, stream, |s| &mut s.video);
    }

    async fn video(
        &self,
        session: &Session,
        _stream: &StreamInfo,
        frame: Played<video::VideoFrame>,
    ) {
        // A decoder would get `frame.payload` here; `frame.lost_before` > 0 tells it to
        // conceal, or to wait for the next keyframe.
        if frame.payload.keyframe {
            self.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keyframes += 1;
        }
        self.played(session, |s| &mut s.video, frame.timestamp, frame.playout);
    }

    async fn on_audio_open(&self, session: &Session, stream: &StreamInfo) {
        self.opened(session, stream, |s| &mut s.audio);
    }

    async fn audio(
        &self,
        session: &Session,
        _stream: &StreamInfo,
        frame: Played<video::AudioFrame>,
    ) {
        self.played(session, |s| &mut s.audio, frame.timestamp, frame.playout);
    }
}

/// Milliseconds, signed, from microseconds.
fn ms(us: i64) -> String {
    format!("{:+.1} ms", us as f64 / 1000.0)
}

/// One stream's line of the report.
fn stream_line(name: &str, s: &ReceiveStats) -> String {
    format!(
        "{name}  received {}  played {}  lost {}  late {}  duplicate {}  reordered {}  incomplete {}  buffered {}  delay {:.1} ms  target {} ms  jitter {:.1} ms",
        s.received,
        s.played,
        s.lost,
        s.late,
        s.duplicate,
        s.reordered,
        s.incomplete,
        s.buffered,
        s.current_delay.as_secs_f64() * 1000.0,
        s.target_delay.as_millis(),
        s.jitter.as_secs_f64() * 1000.0,
    )
}

impl Report {
    /// The report as lines of text, each prefixed with `prefix`.
    pub fn render(&self, prefix: &str) -> String {
        let pad = " ".repeat(prefix.len());
        let mut out = String::new();
        let _ = writeln!(out, "{prefix} {}", stream_line("video", &self.video));
        let _ = writeln!(out, "{pad} {}", stream_line("audio", &self.audio));
        let clock = match self.clock {
            Some(c) => format!(
                "offset {} ±{:.1} ms, rtt {:.1} ms{}",
                ms(c.offset_micros),
                c.error.as_secs_f64() * 1000.0,
                c.rtt.as_secs_f64() * 1000.0,
                if c.synced { ", synced" } else { ", syncing" }
            ),
            None => "offset not measured yet".to_owned(),
        };
        let skew = match (self.skew_us(), self.video_latency_us, self.audio_latency_us) {
            (Some(skew), Some(v), Some(a)) => format!(
                "A/V skew {} (video played {} after capture, audio {})",
                ms(skew),
                ms(v),
                ms(a)
            ),
            _ => "A/V skew not measured yet".to_owned(),
        };
        let _ = writeln!(out, "{pad} clock  {clock}  {skew}");
        out
    }
}
