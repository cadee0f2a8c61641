//! 0-RTT: what a session may do before its TLS handshake is confirmed.
//!
//! A client reconnecting to a server it has talked to resumes its TLS session and may send data
//! in its very first flight ("early data"), saving a round trip. Early data can be replayed by an
//! attacker who recorded it, so the runtime only lets through what is safe to replay:
//!
//! * **Client.** The hello goes early (it changes nothing on the server), and so do RPCs whose
//!   caller marked them idempotent ([`CallOptions::idempotent`](crate::CallOptions::idempotent)).
//!   Every other call, every event, every stream waits until the handshake is confirmed. If the
//!   server rejects the early data (it lost the session ticket, e.g. after a restart), the hello
//!   is sent again and the early calls are retried, transparently.
//! * **Server.** A session starts as soon as the client's hello arrives, early or not, and
//!   answers early requests marked idempotent at once (0.5-RTT). A request not so marked that
//!   arrives before the handshake completes (only a misbehaving client sends one) waits for the
//!   handshake; early events and stream openings too. Whether a request came early is decided
//!   without waiting, by whether the TLS handshake is complete when it is read (TLS exporters
//!   only work once it is), so the answer is exact.
//!
//! The server's TLS configuration keeps session tickets in memory and lets each be used once
//! (rustls' stateful resumption), so a replayed flight is not accepted as early data by the same
//! server (RFC 8446 §8.1); "idempotent" covers replays across servers or restarts.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};

use quinn::Connection;
use tokio::sync::watch;

/// Whether a session used 0-RTT early data, as [`Session::early_data`](crate::Session::early_data)
/// tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EarlyData {
    /// No early data: a full handshake, or the client had no session to resume.
    NotAttempted,
    /// The client sent early data; the handshake is not done yet.
    Pending,
    /// Early data was accepted: on the client, the server took it; on the server, the client's
    /// hello (and maybe calls) arrived before the handshake was complete.
    Accepted,
    /// The server rejected the client's early data; what was sent early was sent again.
    Rejected,
}

impl EarlyData {
    fn to_u8(self) -> u8 {
        match self {
            EarlyData::NotAttempted => 0,
            EarlyData::Pending => 1,
            EarlyData::Accepted => 2,
            EarlyData::Rejected => 3,
        }
    }

    fn from_u8(value: u8) -> EarlyData {
        match value {
            1 => EarlyData::Pending,
            2 => EarlyData::Accepted,
            3 => EarlyData::Rejected,
            _ => EarlyData::NotAttempted,
        }
    }
}

/// Where a session's handshake is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Pending,
    Confirmed,
    Failed,
}

/// The handshake state of a session: confirmed or not, and what became of its early data.
#[derive(Debug)]
pub(crate) struct Handshake {
    /// A fast path for the common case: true once confirmed.
    confirmed: AtomicBool,
    phase: watch::Sender<Phase>,
    early: AtomicU8,
}

impl Handshake {
    /// A handshake already confirmed, with or without early data before it.
    pub(crate) fn confirmed(early: EarlyData) -> Handshake {
        Handshake {
            confirmed: AtomicBool::new(true),
            phase: watch::channel(Phase::Confirmed).0,
            early: AtomicU8::new(early.to_u8()),
        }
    }

    /// A handshake still going on.
    pub(crate) fn pending(early: EarlyData) -> Handshake {
        Handshake {
            confirmed: AtomicBool::new(false),
            phase: watch::channel(Phase::Pending).0,
            early: AtomicU8::new(early.to_u8()),
        }
    }

    /// Whether the handshake is confirmed.
    pub(crate) fn is_confirmed(&self) -> bool {
        self.confirmed.load(Relaxed)
    }

    /// What became of early data.
    pub(crate) fn early_data(&self) -> EarlyData {
        EarlyData::from_u8(self.early.load(Relaxed))
    }

    /// The handshake completed; early data ended as `early`.
    pub(crate) fn confirm(&self, early: EarlyData) {
        self.early.store(early.to_u8(), Relaxed);
        self.confirmed.store(true, Relaxed);
        self.phase.send_replace(Phase::Confirmed);
    }

    /// The handshake failed (the connection is gone): waiters give up.
    pub(crate) fn fail(&self) {
        self.phase.send_if_modified(|phase| {
            let pending = *phase == Phase::Pending;
            if pending {
                *phase = Phase::Failed;
            }
            pending
        });
    }

    /// Waits for the handshake: `true` once confirmed, `false` if it failed.
    pub(crate) async fn wait(&self) -> bool {
        if self.is_confirmed() {
            return true;
        }
        let mut phase = self.phase.subscribe();
        matches!(
            phase.wait_for(|p| *p != Phase::Pending).await.map(|p| *p),
            Ok(Phase::Confirmed)
        )
    }
}

/// Whether the TLS handshake of `conn` is complete, without waiting. Exact for data being read
/// now: quinn processes a packet's handshake messages before its application data, and TLS
/// exporters work only once the handshake is complete.
pub(crate) fn handshake_complete(conn: &Connection) -> bool {
    let mut probe = [0u8; 1];
    conn.export_keying_material(&mut probe, b"EXPORTER-echostream-handshake-probe", b"")
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_learn_whether_the_handshake_was_confirmed() {
        let h = std::sync::Arc::new(Handshake::pending(EarlyData::Pending));
        assert!(!h.is_confirmed());
        assert_eq!(h.early_data(), EarlyData::Pending);
        let waiter = tokio::spawn({
            let h = h.clone();
            async move { h.wait().await }
        });
        tokio::task::yield_now().await;
        h.confirm(EarlyData::Rejected);
        assert!(waiter.await.unwrap());
        assert!(h.is_confirmed());
        assert_eq!(h.early_data(), EarlyData::Rejected);
        // Failing after confirmation changes nothing.
        h.fail();
        assert!(h.wait().await);

        let failed = Handshake::pending(EarlyData::NotAttempted);
        failed.fail();
        assert!(!failed.wait().await);
        assert!(Handshake::confirmed(EarlyData::NotAttempted).wait().await);
    }

    #[test]
    fn early_data_round_trips_through_its_number() {
        for e in [
            EarlyData::NotAttempted,
            EarlyData::Pending,
            EarlyData::Accepted,
            EarlyData::Rejected,
        ] {
            assert_eq!(EarlyData::from_u8(e.to_u8()), e);
        }
    }
}
