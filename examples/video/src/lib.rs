//! The video example: a synthetic camera ([`sender`]) streams 30 fps video and 50 fps audio
//! as datagrams to a viewer ([`viewer`]) that plays both out through jitter buffers and
//! reports, once a second, what happened to the frames, the clock offset between the two
//! peers, and the audio/video skew.

pub mod sender;
pub mod viewer;

/// The code generated from `schemas/video.echo` by `build.rs`.
pub mod schema {
    echostream_runtime::include_schemas!();
}

pub use schema::video::v1 as video;
