//! A deterministic network simulator under quinn: a UDP socket that loses, delays, jitters,
//! reorders and duplicates datagrams, per direction, from a seeded random source.
//!
//! [`NetSimSocket`] implements [`quinn::AsyncUdpSocket`] around a real UDP socket, so an
//! ordinary quinn [`Endpoint`] runs over it ([`endpoint`] builds one). Use it in tests and
//! benchmarks to see how streams, the jitter buffer and RPCs behave on a bad path, all on
//! loopback. Impairments apply to the datagrams *this* socket sends (`outbound`) and receives
//! (`inbound`), so simulating one side of a connection is enough to impair both directions.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use echostream_runtime::netsim::{self, LinkConfig, NetSimConfig};
//! use std::time::Duration;
//! let link = LinkConfig {
//!     loss: 0.05,
//!     delay: Duration::from_millis(30),
//!     jitter: Duration::from_millis(10),
//!     reorder: 0.10,
//!     ..LinkConfig::default()
//! };
//! let (endpoint, sim) = netsim::endpoint(
//!     "127.0.0.1:0".parse().unwrap(),
//!     NetSimConfig::symmetric(link, 42),
//!     None,
//! )?;
//! // ... connect with `endpoint`, then inspect `sim.stats()`.
//! # Ok(()) }
//! ```
//!
//! Decisions come from the seed in the order datagrams pass, so a given sequence of datagrams
//! meets the same fate on every run. QUIC's own traffic (acks, retransmissions) depends on real
//! timing, so whole runs are reproducible statistically rather than bit for bit.
//!
//! Delay never blocks the caller: delayed outbound datagrams wait in a timer queue served by a
//! tokio task, delayed inbound ones in a queue that `poll_recv` serves with a tokio timer.
//! Segmentation offload is disabled (one datagram per transmit) so that every datagram gets
//! its own decision.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use quinn::udp::{EcnCodepoint, RecvMeta, Transmit, UdpSocketState};
use quinn::{AsyncUdpSocket, Endpoint, EndpointConfig, ServerConfig, TokioRuntime, UdpPoller};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use tokio::io::Interest;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// Impairments of one direction of a link. Probabilities are in `0.0..=1.0` (values outside
/// are clamped, NaN counts as 0).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Fixed one-way delay added to every datagram.
    pub delay: Duration,
    /// Uniform random variation of the delay, ± this much (never below zero delay). Datagrams
    /// keep their order through it, as through a router's queue: one whose draw would overtake
    /// the datagram before it leaves right after it instead. Reordering is
    /// [`LinkConfig::reorder`]'s (a jitter that reorders on its own would make QUIC take most
    /// reordered packets for lost ones and shrink its congestion window, which real paths with
    /// jitter rarely do).
    pub jitter: Duration,
    /// Probability that a datagram is held back by [`LinkConfig::reorder_delay`] more, so that
    /// later datagrams overtake it.
    pub reorder: f64,
    /// How long a reordered datagram is held back.
    pub reorder_delay: Duration,
    /// Probability that a datagram is delivered twice (the copy gets its own delay).
    pub duplicate: f64,
    /// The most datagrams waiting in the delay queue; beyond it they are dropped (counted as
    /// `overflow`), as a router's buffer would.
    pub queue_limit: usize,
}

impl Default for LinkConfig {
    /// A perfect link: nothing lost, delayed or duplicated.
    fn default() -> Self {
        Self {
            loss: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(20),
            duplicate: 0.0,
            queue_limit: 10_000,
        }
    }
}

impl LinkConfig {
    /// Whether this link changes nothing (datagrams then pass straight through).
    pub fn is_perfect(&self) -> bool {
        prob(self.loss) == 0.0
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && prob(self.reorder) == 0.0
            && prob(self.duplicate) == 0.0
    }
}

/// The simulator's configuration: one [`LinkConfig`] per direction and the seed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetSimConfig {
    /// Applied to datagrams this socket sends.
    pub outbound: LinkConfig,
    /// Applied to datagrams this socket receives.
    pub inbound: LinkConfig,
    /// Seed of the random source.
    pub seed: u64,
}

impl NetSimConfig {
    /// The same impairments both ways.
    pub fn symmetric(link: LinkConfig, seed: u64) -> Self {
        Self {
            outbound: link.clone(),
            inbound: link,
            seed,
        }
    }
}

/// What the simulator did to one direction; counters are cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams offered to the link.
    pub datagrams: u64,
    /// Datagrams passed on (duplicates included).
    pub delivered: u64,
    /// Datagrams lost on purpose.
    pub dropped: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Datagrams held back to be overtaken.
    pub held_back: u64,
    /// Datagrams passed on after one offered later (the reordering actually observed).
    pub reordered: u64,
    /// Datagrams dropped because the delay queue was full.
    pub overflow: u64,
    /// Datagrams waiting in the delay queue now (not cumulative).
    pub in_flight: u64,
}

/// Counters of both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetSimStats {
    /// Datagrams this socket sent.
    pub outbound: LinkStats,
    /// Datagrams this socket received.
    pub inbound: LinkStats,
}

fn prob(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

/// A datagram waiting for its time.
#[derive(Debug)]
struct Pending {
    at: Instant,
    /// Offer order, for reorder accounting; a duplicate shares its original's.
    id: u64,
    /// Destination (outbound) or source (inbound).
    addr: SocketAddr,
    ecn: Option<EcnCodepoint>,
    /// Source IP for outbound, destination IP for inbound.
    ip: Option<IpAddr>,
    data: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}
impl Pending {
    fn key(&self) -> (Instant, u64, usize) {
        (self.at, self.id, self.data.len())
    }
}

/// One direction's state.
#[derive(Debug, Default)]
struct Link {
    queue: BinaryHeap<Reverse<Pending>>,
    next_id: u64,
    max_delivered: Option<u64>,
    /// When the latest datagram not held back leaves: the next one does not leave earlier.
    in_order: Option<Instant>,
    stats: LinkStats,
}

impl Link {
    /// Decides the fate of one datagram offered at `now`: the delays of the copies to deliver
    /// (none: lost).
    fn decide(
        &mut self,
        config: &LinkConfig,
        rng: &mut Xoshiro256PlusPlus,
        now: Instant,
    ) -> (u64, [Option<Duration>; 2]) {
        let id = self.next_id;
        self.next_id += 1;
        self.stats.datagrams += 1;
        if rng.random::<f64>() < prob(config.loss) {
            self.stats.dropped += 1;
            return (id, [None, None]);
        }
        let sample = |link: &mut Link, rng: &mut Xoshiro256PlusPlus| {
            let mut delay = config.delay;
            if !config.jitter.is_zero() {
                let j = config.jitter.as_nanos() as f64 * (2.0 * rng.random::<f64>() - 1.0);
                delay = Duration::from_nanos((delay.as_nanos() as f64 + j).max(0.0) as u64);
                // No overtaking through jitter alone.
                if let Some(previous) = link.in_order {
                    delay = delay.max(previous.saturating_duration_since(now));
                }
            }
            if rng.random::<f64>() < prob(config.reorder) {
                link.stats.held_back += 1;
                delay += config.reorder_delay;
            } else {
                link.in_order = Some(now + delay);
            }
            delay
        };
        let first = sample(self, rng);
        let second = if rng.random::<f64>() < prob(config.duplicate) {
            self.stats.duplicated += 1;
            Some(sample(self, rng))
        } else {
            None
        };
        (id, [Some(first), second])
    }

    fn current_stats(&self) -> LinkStats {
        LinkStats {
            in_flight: self.queue.len() as u64,
            ..self.stats
        }
    }

    fn delivered(&mut self, id: u64) {
        self.stats.delivered += 1;
        match self.max_delivered {
            Some(max) if id < max => self.stats.reordered += 1,
            _ => self.max_delivered = Some(id),
        }
    }

    fn enqueue(&mut self, pending: Pending, limit: usize) -> bool {
        if self.queue.len() >= limit {
            self.stats.overflow += 1;
            return false;
        }
        self.queue.push(Reverse(pending));
        true
    }

    fn pop_due(&mut self, now: Instant) -> Option<Pending> {
        if self.queue.peek().is_some_and(|Reverse(p)| p.at <= now) {
            return self.queue.pop().map(|Reverse(p)| p);
        }
        None
    }

    fn next_at(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(p)| p.at)
    }
}

#[derive(Debug)]
struct Sim {
    config: NetSimConfig,
    rng: Xoshiro256PlusPlus,
    outbound: Link,
    inbound: Link,
    /// Wakes `poll_recv` when the earliest delayed inbound datagram is due.
    recv_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

fn lock(sim: &Mutex<Sim>) -> MutexGuard<'_, Sim> {
    sim.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A handle on a running simulator: read its counters, change its impairments.
#[derive(Debug, Clone)]
pub struct NetSim {
    sim: Arc<Mutex<Sim>>,
    wake: Arc<Notify>,
}

impl NetSim {
    /// The counters so far.
    pub fn stats(&self) -> NetSimStats {
        let sim = lock(&self.sim);
        NetSimStats {
            outbound: sim.outbound.current_stats(),
            inbound: sim.inbound.current_stats(),
        }
    }

    /// The current configuration.
    pub fn config(&self) -> NetSimConfig {
        lock(&self.sim).config.clone()
    }

    /// Changes the impairments of both directions from now on (datagrams already delayed keep
    /// their time); the random source goes on from where it was.
    pub fn set_links(&self, outbound: LinkConfig, inbound: LinkConfig) {
        let mut sim = lock(&self.sim);
        sim.config.outbound = outbound;
        sim.config.inbound = inbound;
        drop(sim);
        self.wake.notify_one();
    }
}

#[derive(Debug)]
struct Shared {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
}

impl Shared {
    fn send_now(&self, p: &Pending) -> io::Result<()> {
        let transmit = Transmit {
            destination: p.addr,
            ecn: p.ecn,
            contents: &p.data,
            segment_size: None,
            src_ip: p.ip,
        };
        self.io.try_io(Interest::WRITABLE, || {
            self.state.send((&self.io).into(), &transmit)
        })
    }
}

/// A UDP socket for quinn that impairs traffic as its [`NetSimConfig`] says.
pub struct NetSimSocket {
    shared: Arc<Shared>,
    sim: Arc<Mutex<Sim>>,
    wake: Arc<Notify>,
    sender: AbortHandle,
    /// Buffer for reading the real socket, sized for its receive offload.
    recv_buf: Mutex<Box<[u8]>>,
}

impl fmt::Debug for NetSimSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetSimSocket")
            .field("local_addr", &self.shared.io.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Drop for NetSimSocket {
    fn drop(&mut self) {
        self.sender.abort();
    }
}

impl NetSimSocket {
    /// Binds a UDP socket at `addr` and wraps it. Must be called within a tokio runtime (the
    /// delayed-send task runs on it).
    pub fn bind(addr: SocketAddr, config: NetSimConfig) -> io::Result<(Arc<Self>, NetSim)> {
        Self::wrap(std::net::UdpSocket::bind(addr)?, config)
    }

    /// Wraps an already bound UDP socket. Must be called within a tokio runtime.
    pub fn wrap(
        socket: std::net::UdpSocket,
        config: NetSimConfig,
    ) -> io::Result<(Arc<Self>, NetSim)> {
        let state = UdpSocketState::new((&socket).into())?;
        socket.set_nonblocking(true)?;
        let io = tokio::net::UdpSocket::from_std(socket)?;
        let gro = state.gro_segments().max(1);
        let shared = Arc::new(Shared { io, state });
        let sim = Arc::new(Mutex::new(Sim {
            rng: Xoshiro256PlusPlus::seed_from_u64(config.seed),
            config,
            outbound: Link::default(),
            inbound: Link::default(),
            recv_timer: None,
        }));
        let wake = Arc::new(Notify::new());
        let sender = tokio::spawn(deliver_outbound(
            Arc::clone(&shared),
            Arc::clone(&sim),
            Arc::clone(&wake),
        ))
        .abort_handle();
        let handle = NetSim {
            sim: Arc::clone(&sim),
            wake: Arc::clone(&wake),
        };
        let socket = Arc::new(Self {
            shared,
            sim,
            wake,
            sender,
            recv_buf: Mutex::new(vec![0u8; 65_536 * gro].into_boxed_slice()),
        });
        Ok((socket, handle))
    }

    /// A handle on this socket's simulator.
    pub fn handle(&self) -> NetSim {
        NetSim {
            sim: Arc::clone(&self.sim),
            wake: Arc::clone(&self.wake),
        }
    }

    fn send_one(
        &self,
        destination: SocketAddr,
        ecn: Option<EcnCodepoint>,
        src_ip: Option<IpAddr>,
        data: &[u8],
    ) -> io::Result<()> {
        let now = Instant::now();
        let mut sim = lock(&self.sim);
        let Sim {
            config,
            rng,
            outbound,
            ..
        } = &mut *sim;
        let (id, copies) = outbound.decide(&config.outbound, rng, now);
        let limit = config.outbound.queue_limit;
        let mut queued = false;
        for delay in copies.into_iter().flatten() {
            let pending = Pending {
                at: now + delay,
                id,
                addr: destination,
                ecn,
                ip: src_ip,
                data: data.to_vec(),
            };
            if delay.is_zero() && outbound.queue.is_empty() {
                match self.shared.send_now(&pending) {
                    Ok(()) => {
                        outbound.delivered(id);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            queued |= outbound.enqueue(pending, limit);
        }
        drop(sim);
        if queued {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Reads what the real socket has. On a perfect inbound link with nothing delayed,
    /// datagrams go straight into quinn's `bufs` (the count is returned); otherwise they meet
    /// their fate and wait in the inbound queue (`Ready(Ok(0))`).
    fn read_socket(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        out: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.shared.io.poll_recv_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let mut buf = self.recv_buf.lock().unwrap_or_else(PoisonError::into_inner);
            let mut meta = [RecvMeta::default()];
            let read = self.shared.io.try_io(Interest::READABLE, || {
                let mut bufs = [IoSliceMut::new(&mut buf[..])];
                self.shared
                    .state
                    .recv((&self.shared.io).into(), &mut bufs, &mut meta)
            });
            match read {
                Ok(n) => {
                    let now = Instant::now();
                    let mut sim = lock(&self.sim);
                    let Sim {
                        config,
                        rng,
                        inbound,
                        ..
                    } = &mut *sim;
                    let direct = config.inbound.is_perfect() && inbound.queue.is_empty();
                    let mut handed = 0;
                    for m in &meta[..n] {
                        let stride = if m.stride == 0 { m.len } else { m.stride };
                        for data in buf[..m.len].chunks(stride.max(1)) {
                            if direct && handed < bufs.len().min(out.len()) {
                                let id = inbound.next_id;
                                inbound.next_id += 1;
                                inbound.stats.datagrams += 1;
                                inbound.delivered(id);
                                hand_over(
                                    &mut bufs[handed],
                                    &mut out[handed],
                                    data,
                                    m.addr,
                                    m.ecn,
                                    m.dst_ip,
                                );
                                handed += 1;
                                continue;
                            }
                            let (id, copies) = inbound.decide(&config.inbound, rng, now);
                            for delay in copies.into_iter().flatten() {
                                inbound.enqueue(
                                    Pending {
                                        at: now + delay,
                                        id,
                                        addr: m.addr,
                                        ecn: m.ecn,
                                        ip: m.dst_ip,
                                        data: data.to_vec(),
                                    },
                                    config.inbound.queue_limit,
                                );
                            }
                        }
                    }
                    return Poll::Ready(Ok(handed));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Copies one datagram into a quinn receive slot.
fn hand_over(
    buf: &mut IoSliceMut<'_>,
    meta: &mut RecvMeta,
    data: &[u8],
    addr: SocketAddr,
    ecn: Option<EcnCodepoint>,
    dst_ip: Option<IpAddr>,
) {
    let len = data.len().min(buf.len());
    buf[..len].copy_from_slice(&data[..len]);
    *meta = RecvMeta {
        addr,
        len,
        stride: len,
        ecn,
        dst_ip,
    };
}

impl AsyncUdpSocket for NetSimSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(WritablePoller {
            shared: Arc::clone(&self.shared),
            waiting: None,
        })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let perfect = lock(&self.sim).config.outbound.is_perfect();
        if perfect && transmit.segment_size.is_none() {
            // Straight through, with the real socket's back-pressure; only counted.
            self.shared.io.try_io(Interest::WRITABLE, || {
                self.shared.state.send((&self.shared.io).into(), transmit)
            })?;
            let mut sim = lock(&self.sim);
            let id = sim.outbound.next_id;
            sim.outbound.next_id += 1;
            sim.outbound.stats.datagrams += 1;
            sim.outbound.delivered(id);
            return Ok(());
        }
        // One decision per datagram, even if quinn handed over a batch anyway.
        let segment = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        for data in transmit.contents.chunks(segment) {
            self.send_one(transmit.destination, transmit.ecn, transmit.src_ip, data)?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            // Hand over whatever is due.
            let now = Instant::now();
            let mut sim = lock(&self.sim);
            let mut n = 0;
            while n < bufs.len().min(meta.len()) {
                let Some(p) = sim.inbound.pop_due(now) else {
                    break;
                };
                sim.inbound.delivered(p.id);
                hand_over(&mut bufs[n], &mut meta[n], &p.data, p.addr, p.ecn, p.ip);
                n += 1;
            }
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            let next = sim.inbound.next_at();
            drop(sim);
            // Read the real socket; anything read may be due at once.
            match self.read_socket(cx, bufs, meta) {
                Poll::Ready(Ok(0)) => continue,
                Poll::Ready(Ok(n)) => return Poll::Ready(Ok(n)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
            // Nothing to read: sleep until the earliest delayed datagram is due.
            let Some(at) = next else {
                return Poll::Pending;
            };
            let mut sim = lock(&self.sim);
            let deadline = tokio::time::Instant::from_std(at);
            let timer = sim
                .recv_timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.io.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        1
    }

    fn may_fragment(&self) -> bool {
        self.shared.state.may_fragment()
    }
}

/// Waits for the real socket to become writable (quinn asks after a `WouldBlock`).
struct WritablePoller {
    shared: Arc<Shared>,
    waiting: Option<Pin<Box<dyn Future<Output = io::Result<()>> + Send + Sync>>>,
}

impl fmt::Debug for WritablePoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WritablePoller").finish_non_exhaustive()
    }
}

impl UdpPoller for WritablePoller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let fut = this.waiting.get_or_insert_with(|| {
            let shared = Arc::clone(&this.shared);
            Box::pin(async move { shared.io.writable().await })
        });
        let result = fut.as_mut().poll(cx);
        if result.is_ready() {
            this.waiting = None;
        }
        result
    }
}

/// Sends delayed outbound datagrams when they are due.
async fn deliver_outbound(shared: Arc<Shared>, sim: Arc<Mutex<Sim>>, wake: Arc<Notify>) {
    let mut due = VecDeque::new();
    loop {
        let next = {
            let mut s = lock(&sim);
            let now = Instant::now();
            while let Some(p) = s.outbound.pop_due(now) {
                due.push_back(p);
            }
            s.outbound.next_at()
        };
        while let Some(p) = due.pop_front() {
            loop {
                match shared.send_now(&p) {
                    Ok(()) => {
                        lock(&sim).outbound.delivered(p.id);
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if shared.io.writable().await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // Like a real network, the simulator does not report send failures.
                        tracing::debug!(error = %e, "netsim: delayed send failed");
                        break;
                    }
                }
            }
        }
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

/// Builds a quinn [`Endpoint`] on a simulated socket bound at `addr` (a server when
/// `server_config` is given), with quinn's default endpoint settings. Must be called within a
/// tokio runtime.
pub fn endpoint(
    addr: SocketAddr,
    config: NetSimConfig,
    server_config: Option<ServerConfig>,
) -> io::Result<(Endpoint, NetSim)> {
    let (socket, sim) = NetSimSocket::bind(addr, config)?;
    let endpoint = Endpoint::new_with_abstract_socket(
        EndpointConfig::default(),
        server_config,
        socket,
        Arc::new(TokioRuntime),
    )?;
    Ok((endpoint, sim))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fates of `n` datagrams offered `every` apart.
    fn decide_spaced(
        config: &LinkConfig,
        seed: u64,
        n: usize,
        every: Duration,
    ) -> (Link, Vec<[Option<Duration>; 2]>) {
        let mut link = Link::default();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let start = Instant::now();
        let fates = (0..n)
            .map(|i| link.decide(config, &mut rng, start + every * i as u32).1)
            .collect();
        (link, fates)
    }

    /// The fates of `n` datagrams offered far enough apart that none waits for another.
    fn decide_many(config: &LinkConfig, seed: u64, n: usize) -> (Link, Vec<[Option<Duration>; 2]>) {
        decide_spaced(config, seed, n, Duration::from_millis(100))
    }

    #[test]
    fn jitter_varies_the_delay_but_never_reorders_on_its_own() {
        let config = LinkConfig {
            delay: Duration::from_millis(30),
            jitter: Duration::from_millis(10),
            ..LinkConfig::default()
        };
        // A millisecond apart: most draws would overtake the datagram before.
        let every = Duration::from_millis(1);
        let (_, fates) = decide_spaced(&config, 4, 1_000, every);
        let leaves: Vec<Duration> = fates
            .iter()
            .enumerate()
            .map(|(i, f)| every * i as u32 + f[0].expect("no loss configured"))
            .collect();
        assert!(leaves.windows(2).all(|w| w[0] <= w[1]), "in order");
        let delays: Vec<Duration> = fates.iter().map(|f| f[0].unwrap()).collect();
        assert!(delays.iter().all(|d| *d >= Duration::from_millis(20)));
        let (min, max) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
        assert!(*max - *min >= Duration::from_millis(10), "{min:?}..{max:?}");

        // Reordering is the `reorder` setting's: held-back datagrams are overtaken.
        let config = LinkConfig {
            reorder: 0.1,
            ..config
        };
        let (link, _) = decide_spaced(&config, 4, 1_000, every);
        assert!(link.stats.held_back > 50, "{:?}", link.stats);
    }

    #[test]
    fn the_same_seed_gives_the_same_fates() {
        let config = LinkConfig {
            loss: 0.1,
            delay: Duration::from_millis(30),
            jitter: Duration::from_millis(10),
            reorder: 0.1,
            duplicate: 0.05,
            ..LinkConfig::default()
        };
        let (_, a) = decide_many(&config, 9, 1_000);
        let (_, b) = decide_many(&config, 9, 1_000);
        let (_, c) = decide_many(&config, 10, 1_000);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn rates_and_delays_match_the_configuration() {
        let config = LinkConfig {
            loss: 0.1,
            delay: Duration::from_millis(30),
            jitter: Duration::from_millis(10),
            reorder: 0.2,
            reorder_delay: Duration::from_millis(50),
            duplicate: 0.05,
            ..LinkConfig::default()
        };
        let n = 100_000;
        let (link, fates) = decide_many(&config, 1, n);
        let s = link.stats;
        let rate = |x: u64, of: u64| x as f64 / of as f64;
        assert_eq!(s.datagrams, n as u64);
        assert!((rate(s.dropped, s.datagrams) - 0.1).abs() < 0.005);
        let kept = s.datagrams - s.dropped;
        assert!((rate(s.duplicated, kept) - 0.05).abs() < 0.005);
        assert!((rate(s.held_back, kept + s.duplicated) - 0.2).abs() < 0.01);
        for d in fates.iter().flatten().flatten() {
            let plain = *d >= Duration::from_millis(20) && *d <= Duration::from_millis(40);
            let held = *d >= Duration::from_millis(70) && *d <= Duration::from_millis(90);
            assert!(plain || held, "{d:?}");
        }
    }

    #[test]
    fn nonsense_probabilities_are_clamped_not_panics() {
        for p in [f64::NAN, -1.0, 2.0, f64::INFINITY] {
            let config = LinkConfig {
                loss: p,
                reorder: p,
                duplicate: p,
                ..LinkConfig::default()
            };
            let (link, _) = decide_many(&config, 3, 100);
            let expected_drops = if prob(p) == 1.0 { 100 } else { 0 };
            assert_eq!(link.stats.dropped, expected_drops, "{p}");
        }
        assert!(LinkConfig::default().is_perfect());
        assert!(
            LinkConfig {
                loss: f64::NAN,
                ..LinkConfig::default()
            }
            .is_perfect()
        );
        assert!(
            !LinkConfig {
                jitter: Duration::from_millis(1),
                ..LinkConfig::default()
            }
            .is_perfect()
        );
    }

    #[test]
    fn reordering_is_counted_when_delivered_out_of_offer_order() {
        let mut link = Link::default();
        for id in [0, 2, 1, 3, 3, 5, 4] {
            link.delivered(id);
        }
        assert_eq!(link.stats.reordered, 2);
        assert_eq!(link.stats.delivered, 7);
    }
}
