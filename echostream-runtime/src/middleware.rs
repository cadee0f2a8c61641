//! [`Middleware`]: code that sees every application frame going in or out of a session (requests,
//! responses, events, stream openings and stream frames; not the control frames), to pass it on,
//! change it, drop it or fail it. Authentication, logging, metrics and compression live here.

use std::sync::Arc;

use async_trait::async_trait;

use crate::panic::catch_unwind_future;
use crate::proto::v1::Frame;
use crate::session::Session;
use crate::status::Status;

/// A step in every session's inbound and outbound frame path.
///
/// Return `Ok(Some(frame))` to pass the frame on (changed or not), `Ok(None)` to drop it, or
/// `Err(status)` to fail it. What dropping and failing mean depends on the frame:
///
/// | frame | dropped | failed |
/// | --- | --- | --- |
/// | outbound request | the call fails `CANCELLED` at once | the call fails with the status |
/// | inbound request | the caller gets `CANCELLED`; no handler runs | the caller gets the status |
/// | outbound response | the caller gets `CANCELLED` | the caller gets the status instead |
/// | inbound response | the call fails `CANCELLED` | the call fails with the status |
/// | outbound event / stream frame | `emit`/`send` returns `Ok`, the frame is counted as dropped | `emit`/`send` returns the status |
/// | inbound event / stream frame | not delivered, counted | not delivered, counted, logged |
/// | outbound stream opening | `open_stream` fails `CANCELLED` | `open_stream` fails with the status |
/// | inbound stream opening | the stream is refused (stop code `CANCELLED`) | refused with the status's code |
///
/// Inbound frames pass the middleware in registration order, outbound frames in reverse order,
/// so the first registered middleware is the outermost layer on both paths.
#[async_trait]
pub trait Middleware: Send + Sync + 'static {
    /// Sees a frame received from the peer, before it is routed.
    async fn on_frame_inbound(
        &self,
        session: &Session,
        frame: Frame,
    ) -> Result<Option<Frame>, Status> {
        let _ = session;
        Ok(Some(frame))
    }

    /// Sees a frame about to be sent to the peer.
    async fn on_frame_outbound(
        &self,
        session: &Session,
        frame: Frame,
    ) -> Result<Option<Frame>, Status> {
        let _ = session;
        Ok(Some(frame))
    }
}

/// A middleware that panicked fails its frame with `INTERNAL`.
fn panicked(panic: String) -> Result<Option<Frame>, Status> {
    tracing::error!(panic, "middleware panicked");
    Err(Status::internal("middleware panicked"))
}

/// The middleware of an endpoint, in registration order.
#[derive(Clone, Default)]
pub(crate) struct Middlewares {
    layers: Vec<Arc<dyn Middleware>>,
}

impl Middlewares {
    pub(crate) fn push(&mut self, middleware: Arc<dyn Middleware>) {
        self.layers.push(middleware);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Runs an inbound frame through every layer, first registered first.
    pub(crate) async fn inbound(
        &self,
        session: &Session,
        mut frame: Frame,
    ) -> Result<Option<Frame>, Status> {
        for layer in &self.layers {
            let step = catch_unwind_future(layer.on_frame_inbound(session, frame)).await;
            match step.unwrap_or_else(panicked)? {
                Some(next) => frame = next,
                None => return Ok(None),
            }
        }
        Ok(Some(frame))
    }

    /// Runs an outbound frame through every layer, last registered first.
    pub(crate) async fn outbound(
        &self,
        session: &Session,
        mut frame: Frame,
    ) -> Result<Option<Frame>, Status> {
        for layer in self.layers.iter().rev() {
            let step = catch_unwind_future(layer.on_frame_outbound(session, frame)).await;
            match step.unwrap_or_else(panicked)? {
                Some(next) => frame = next,
                None => return Ok(None),
            }
        }
        Ok(Some(frame))
    }
}
