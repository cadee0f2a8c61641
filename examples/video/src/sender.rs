//! The camera: synthetic video and audio frames of realistic sizes, at their real pace.

use std::time::Duration;

use echostream_runtime::{Bytes, Session, Status, StreamStats};
use tokio::time::{MissedTickBehavior, interval};

use crate::video;

/// Video frames a second.
pub const VIDEO_FPS: u32 = 30;
/// A keyframe every this many video frames (2 s).
pub const KEYFRAME_EVERY: u64 = 60;
/// About the size of a keyframe, in bytes.
pub const KEYFRAME_BYTES: usize = 60_000;
/// About the size of a delta frame, in bytes.
pub const DELTA_BYTES: usize = 5_000;
/// Audio frames a second (20 ms each).
pub const AUDIO_FPS: u32 = 50;
/// The size of an audio frame, in bytes.
pub const AUDIO_BYTES: usize = 200;

/// What the sender sent and what the runtime dropped before sending (congested path).
#[derive(Clone, Copy, Debug, Default)]
pub struct Sent {
    /// The video stream's counters.
    pub video: StreamStats,
    /// The audio stream's counters.
    pub audio: StreamStats,
}

/// Opens the `video` and `audio` streams on `session` and sends frames at their pace for
/// `duration`, then finishes both. Each frame is stamped with the capture time on the sender's
/// clock (`send` does it), which the receiver maps into its own clock.
pub async fn run(session: &Session, duration: Duration) -> Result<Sent, Status> {
    let media = video::MediaClient::new(session.clone());
    let video_out = media.video().await?;
    let audio_out = media.audio().await?;

    let mut video_tick = interval(Duration::from_secs(1) / VIDEO_FPS);
    let mut audio_tick = interval(Duration::from_secs(1) / AUDIO_FPS);
    // A camera that falls behind skips frames; it never sends a burst of old ones.
    video_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    audio_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sizes = Sizes(0x9e37_79b9_7f4a_7c15);
    let (mut video_index, mut audio_index) = (0u64, 0u64);
    let stop = tokio::time::sleep(duration);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = video_tick.tick() => {
                let keyframe = video_index % KEYFRAME_EVERY == 0;
                let size = sizes.around(if keyframe { KEYFRAME_BYTES } else { DELTA_BYTES });
                let frame = video::VideoFrame {
                    index: video_index,
                    keyframe,
                    data: Bytes::from(vec![video_index as u8; size]),
                };
                // Larger than a datagram: the runtime fragments it, and the receiver
                // reassembles it (or counts it lost if a fragment never comes). A frame the
                // path has no room for is dropped and counted, never queued behind: live
                // media would rather skip than lag.
                let _ = video_out.send(&frame).await;
                video_index += 1;
            }
            _ = audio_tick.tick() => {
                let frame = video::AudioFrame {
                    index: audio_index,
                    data: Bytes::from(vec![audio_index as u8; AUDIO_BYTES]),
                };
                let _ = audio_out.send(&frame).await;
                audio_index += 1;
            }
        }
    }
    video_out.finish();
    audio_out.finish();
    Ok(Sent {
        video: video_out.stats(),
        audio: audio_out.stats(),
    })
}

/// Frame sizes that vary by up to ±10 %, as an encoder's do (xorshift).
struct Sizes(u64);

impl Sizes {
    fn around(&mut self, size: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let spread = size / 10;
        size - spread + (self.0 as usize % (2 * spread + 1))
    }
}
