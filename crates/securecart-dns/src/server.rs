//! The server: UDP and TCP on one address, answering from the responder in force. A
//! reload swaps the responder; queries being answered finish with the one they started
//! with, and no socket closes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::wire::{Responder, Transport};

/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most TCP connections served at once (RFC 7766 asks servers to bound them).
const MAX_TCP_CONNECTIONS: usize = 1_000;

/// A bound DNS server.
#[derive(Debug)]
pub struct DnsServer {
    udp: std::net::UdpSocket,
    tcp: TcpListener,
    responder: Arc<ArcSwap<Responder>>,
    counts: Arc<QueryCounts>,
    udp_batch_wait: Duration,
}

/// How long a UDP worker waits for queries to gather after answering a batch of several
/// (see [`DnsServer::with_udp_batch_wait`]).
pub const UDP_BATCH_WAIT: Duration = Duration::from_micros(100);

/// The response codes counted apart: the header's sixteen and BADVERS (16).
const CODES: usize = 17;

/// Queries answered, by transport and response code, and queries given no answer.
#[derive(Debug, Default)]
pub struct QueryCounts {
    udp: [AtomicU64; CODES],
    tcp: [AtomicU64; CODES],
    dropped: AtomicU64,
}

/// A response's code. The header holds its low four bits; an extended code such as
/// BADVERS (16) has its high bits in the OPT record, and this server sends one only with
/// the question and an OPT record without options, so only such a response is read
/// further.
fn response_code(response: &[u8]) -> Option<usize> {
    let low = usize::from(response.get(3)? & 0x0f);
    let counts = response.get(6..12)?;
    if low != 0 || counts != [0, 0, 0, 0, 0, 1] || response.len() < 12 + 11 {
        return Some(low);
    }
    let opt = &response[response.len() - 11..];
    if opt[..3] == [0, 0, 41] && opt[9..] == [0, 0] {
        return Some((usize::from(opt[5]) << 4 | low).min(CODES - 1));
    }
    Some(low)
}

impl QueryCounts {
    fn record(&self, transport: Transport, response: Option<&[u8]>) {
        let Some(code) = response.and_then(response_code) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let by_code = match transport {
            Transport::Udp => &self.udp,
            Transport::Tcp => &self.tcp,
        };
        by_code[code].fetch_add(1, Ordering::Relaxed);
    }

    /// The answers so far: (transport, response code, count), for the codes seen.
    pub fn answered(&self) -> Vec<(Transport, u8, u64)> {
        [(Transport::Udp, &self.udp), (Transport::Tcp, &self.tcp)]
            .into_iter()
            .flat_map(|(transport, by_code)| {
                (0..CODES as u8).filter_map(move |code| {
                    let count = by_code[usize::from(code)].load(Ordering::Relaxed);
                    (count > 0).then_some((transport, code, count))
                })
            })
            .collect()
    }

    /// Queries given no answer (responses, messages too short to carry an id, and UDP
    /// datagrams longer than a query may be).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Answers over UDP leave with the don't-fragment bit and are sized by the interface's
/// MTU, never by a path MTU an ICMP message claims (`IP_PMTUDISC_PROBE`), as RFC 9715
/// recommends: nobody can make the server fragment its answers, so no forged fragment can
/// be spliced into one. An answer is at most [`MAX_UDP_PAYLOAD`] bytes (1,232, the size
/// RFC 9715 names), which fits the paths DNS uses; where a path is narrower still, the
/// answer is lost rather than fragmented, and resolvers ask again over TCP or for less.
/// The kernel also skips the IP identifier it draws for each datagram it may fragment.
/// An IPv6 socket takes both options: bound to `[::]`, it answers IPv4 clients too, and
/// their datagrams follow the IPv4 one.
///
/// [`MAX_UDP_PAYLOAD`]: crate::wire::MAX_UDP_PAYLOAD
fn send_unfragmented(socket: &std::net::UdpSocket) -> std::io::Result<()> {
    use rustix::net::sockopt::{
        Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery, set_ip_mtu_discover, set_ipv6_mtu_discover,
    };
    match socket.local_addr()? {
        SocketAddr::V4(_) => set_ip_mtu_discover(socket, Ipv4PathMtuDiscovery::PROBE)?,
        SocketAddr::V6(_) => {
            set_ipv6_mtu_discover(socket, Ipv6PathMtuDiscovery::PROBE)?;
            set_ip_mtu_discover(socket, Ipv4PathMtuDiscovery::PROBE)?;
        }
    }
    Ok(())
}

impl DnsServer {
    /// Binds UDP and TCP on `address` (port 0: a free port, the same for both).
    pub async fn bind(address: SocketAddr, responder: Responder) -> std::io::Result<Self> {
        let tcp = TcpListener::bind(address).await?;
        let udp = std::net::UdpSocket::bind(tcp.local_addr()?)?;
        send_unfragmented(&udp)?;
        Ok(Self {
            udp,
            tcp,
            responder: Arc::new(ArcSwap::from_pointee(responder)),
            counts: Arc::default(),
            udp_batch_wait: UDP_BATCH_WAIT,
        })
    }

    /// How long a UDP worker waits, after answering a batch of more than one query (so
    /// that queries come faster than it wakes for them), before it receives again
    /// ([`UDP_BATCH_WAIT`] by default; zero: never). Under load, the queries that arrive
    /// meanwhile are then received, answered and sent in one batch, with a system call each
    /// way and one wake-up, rather than a few at a time; a query waits that long more at
    /// most, and only while queries come in batches (one at a time, none waits).
    ///
    /// Measured with dnsperf on this project's machine (one worker, 200 queries
    /// outstanding, weighted records; 2026-11-28): waiting 100 µs made the batches five
    /// times larger (29 queries per `recvmmsg` against 6, and a fifth of the context
    /// switches), took the server's CPU per query from 4.6 to 4.2 µs (medians of eight
    /// runs), and the average latency from 0.33 to 0.42 ms; at 60,000 queries a second
    /// offered, from 7.5 to 6.2 µs, with 0.2 ms of latency against 0.07. Most of a query's
    /// cost is the kernel's work on each datagram, which batching does not change. A long
    /// wait at a high rate holds many queries in the socket's receive buffer: past its
    /// size, the kernel drops them (100 µs at 180,000 queries a second is 18 queries).
    pub fn with_udp_batch_wait(mut self, wait: Duration) -> Self {
        self.udp_batch_wait = wait;
        self
    }

    /// The queries answered so far.
    pub fn query_counts(&self) -> Arc<QueryCounts> {
        Arc::clone(&self.counts)
    }

    /// The address it answers on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Where a reload puts the new responder.
    pub fn responder(&self) -> Arc<ArcSwap<Responder>> {
        Arc::clone(&self.responder)
    }

    /// Answers until `shutdown` completes: `udp_workers` threads read the UDP socket, the
    /// runtime serves TCP. Then the TCP connections still open are closed.
    pub async fn serve(
        self,
        udp_workers: usize,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        self.udp.set_read_timeout(Some(UDP_STOP_CHECK))?;
        let mut workers = Vec::new();
        for index in 0..udp_workers.max(1) {
            let socket = self.udp.try_clone()?;
            let responder = Arc::clone(&self.responder);
            let stop = Arc::clone(&stop);
            let counts = Arc::clone(&self.counts);
            let wait = self.udp_batch_wait;
            workers.push(
                std::thread::Builder::new()
                    .name(format!("dns-udp-{index}"))
                    .spawn(move || serve_udp(&socket, &responder, &counts, &stop, wait))?,
            );
        }
        let tcp = tokio::spawn(serve_tcp(
            self.tcp,
            Arc::clone(&self.responder),
            Arc::clone(&self.counts),
        ));
        shutdown.await;
        tcp.abort();
        // Its connections' tasks go with it, before `serve` returns.
        let _ = tcp.await;
        stop.store(true, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await
        .map_err(std::io::Error::other)
    }
}

/// How many datagrams one system call receives or sends.
const BATCH: usize = 32;

/// The longest UDP query read, in bytes.
const UDP_QUERY_BUFFER: usize = 4_096;

/// How often a UDP worker blocked in a receive looks whether it should stop.
const UDP_STOP_CHECK: Duration = Duration::from_millis(200);

/// One UDP worker thread: blocking `recvmmsg` takes up to [`BATCH`] queries (returning as
/// soon as one is there) and one `sendmmsg` sends their answers, as Knot DNS and NSD do, so
/// that under load the system calls cost a fraction of a query each and no event loop
/// stands between the socket and the answers. After a batch of more than one query and
/// fewer than [`BATCH`] (a full batch: more are waiting), it waits `batch_wait` for more to
/// gather (see [`DnsServer::with_udp_batch_wait`]).
fn serve_udp(
    socket: &std::net::UdpSocket,
    responder: &ArcSwap<Responder>,
    counts: &QueryCounts,
    stop: &AtomicBool,
    batch_wait: Duration,
) {
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{
        ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
    };

    let fd = socket.as_raw_fd();
    // A query longer than its buffer arrives cut short (`MSG_TRUNC`) and is dropped, not
    // read as the shorter message it would look like; queries are far shorter.
    let mut buffers = vec![[0u8; UDP_QUERY_BUFFER]; BATCH];
    let mut receiving = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut sending = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    // The batch's queries: each one's place (its buffer), length and client.
    let mut queries: Vec<(usize, usize, SockaddrStorage)> = Vec::with_capacity(BATCH);
    // Each query's answer is written into the buffer of its place in the batch, kept
    // from one batch to the next; `answers` lists those to send, and to whom.
    let mut written: Vec<Vec<u8>> = vec![Vec::new(); BATCH];
    let mut answers: Vec<(usize, SockaddrStorage)> = Vec::with_capacity(BATCH);
    // How many queries the last receive took.
    let mut last = 0;
    while !stop.load(Ordering::Relaxed) {
        if !batch_wait.is_zero() && (2..BATCH).contains(&last) {
            #[allow(
                clippy::disallowed_methods,
                reason = "a UDP worker is a thread of its own, outside the runtime"
            )]
            std::thread::sleep(batch_wait);
        }
        last = 0;
        queries.clear();
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                .iter_mut()
                .map(|buffer| [IoSliceMut::new(buffer)])
                .collect();
            match recvmmsg(
                fd,
                &mut receiving,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => {
                    // Each query keeps its place in the batch: its buffer's index.
                    for (slot, message) in results.enumerate() {
                        match message.address {
                            Some(address) if !message.flags.contains(MsgFlags::MSG_TRUNC) => {
                                queries.push((slot, message.bytes, address));
                            }
                            _ => counts.record(Transport::Udp, None),
                        }
                    }
                }
                // The receive timeout: time to look at the stop flag.
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(error) => {
                    // An ICMP error from an earlier send, and the like: keep serving.
                    tracing::debug!(%error, "UDP receive failed");
                    continue;
                }
            }
        }
        last = queries.len();
        let responder = responder.load();
        answers.clear();
        for &(slot, length, client) in &queries {
            let buffer = &buffers[slot];
            let address = client
                .as_sockaddr_in()
                .map(|address| IpAddr::V4(address.ip()))
                .or_else(|| {
                    client
                        .as_sockaddr_in6()
                        .map(|address| IpAddr::V6(address.ip()))
                })
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            let answer = &mut written[slot];
            // A query that made the responder panic (a bug) goes unanswered, and the worker
            // serves on: the thread has no task runtime to catch it, as TCP's have.
            let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                responder.respond_into(&buffer[..length], Transport::Udp, address, answer)
            }))
            .unwrap_or_else(|_| {
                tracing::error!(client = %address, "answering a query panicked; it is dropped");
                false
            });
            counts.record(Transport::Udp, answered.then_some(answer.as_slice()));
            if answered {
                answers.push((slot, client));
            }
        }
        let mut sent = 0;
        while sent < answers.len() {
            let pending = &answers[sent..];
            let slices: Vec<[IoSlice<'_>; 1]> = pending
                .iter()
                .map(|&(slot, _)| [IoSlice::new(&written[slot])])
                .collect();
            let addresses: Vec<Option<SockaddrStorage>> =
                pending.iter().map(|(_, client)| Some(*client)).collect();
            let no_control: [ControlMessage<'_>; 0] = [];
            match sendmmsg(
                fd,
                &mut sending,
                &slices,
                &addresses,
                no_control,
                MsgFlags::empty(),
            ) {
                Ok(results) => match results.count() {
                    0 => break,
                    count => sent += count,
                },
                Err(nix::errno::Errno::EINTR) => {}
                Err(error) => {
                    // The first pending answer's client is unreachable, say: skip it.
                    tracing::debug!(%error, "UDP send failed");
                    sent += 1;
                }
            }
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    responder: Arc<ArcSwap<Responder>>,
    counts: Arc<QueryCounts>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS));
    // The connections' tasks: when the server stops (this future is dropped), so do they,
    // and their connections close.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let responder = Arc::clone(&responder);
        let counts = Arc::clone(&counts);
        connections.spawn(async move {
            if let Err(error) = serve_tcp_connection(stream, client.ip(), &responder, &counts).await
            {
                tracing::debug!(%error, %client, "TCP connection ended");
            }
            drop(permit);
        });
    }
}

/// Answers the length-prefixed queries of one TCP connection in turn (RFC 7766).
async fn serve_tcp_connection(
    mut stream: TcpStream,
    client: IpAddr,
    responder: &ArcSwap<Responder>,
    counts: &QueryCounts,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut query = Vec::new();
    loop {
        let mut length = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut length)).await {
            Err(_) => return Ok(()),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(result) => result?,
        };
        query.resize(usize::from(u16::from_be_bytes(length)), 0);
        tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut query))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let response = responder.load().respond(&query, Transport::Tcp, client);
        counts.record(Transport::Tcp, response.as_deref());
        let Some(response) = response else {
            continue;
        };
        let Ok(response_length) = u16::try_from(response.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&response_length.to_be_bytes());
        framed.extend_from_slice(&response);
        stream.write_all(&framed).await?;
    }
}

#[cfg(test)]
mod code_tests {
    use super::response_code;

    /// A response: header with `flags` and the counts, the question `a.` A IN, then `tail`.
    fn response(flags: [u8; 2], counts: [u8; 6], tail: &[u8]) -> Vec<u8> {
        let mut message = vec![0x01, 0x02, flags[0], flags[1], 0, 1];
        message.extend_from_slice(&counts);
        message.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        message.extend_from_slice(tail);
        message
    }

    #[test]
    fn extended_codes_are_read_from_the_opt_record() {
        let opt = |extended: u8| [0, 0, 41, 0x04, 0xd0, extended, 0, 0, 0, 0, 0];
        let cases = [
            (
                response([0x84, 0x00], [0, 0, 0, 0, 0, 1], &opt(1)),
                Some(16),
            ),
            (response([0x84, 0x00], [0, 0, 0, 0, 0, 1], &opt(0)), Some(0)),
            (
                response([0x84, 0x03], [0, 0, 0, 1, 0, 1], &[0; 30]),
                Some(3),
            ),
            (response([0x84, 0x05], [0, 0, 0, 0, 0, 0], &[]), Some(5)),
            (vec![0x01, 0x02, 0x84], None),
        ];
        for (message, expected) in cases {
            assert_eq!(response_code(&message), expected, "{message:?}");
        }
    }

    /// UDP answers are sent with the don't-fragment bit, by the interface's MTU, over
    /// IPv4 and IPv6 alike, and to IPv4 clients of a dual-stack IPv6 socket.
    #[test]
    fn udp_sockets_send_answers_unfragmented() {
        use rustix::net::sockopt::{
            Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery, ip_mtu_discover, ipv6_mtu_discover,
        };
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        super::send_unfragmented(&v4).expect("set");
        assert_eq!(
            ip_mtu_discover(&v4).expect("get"),
            Ipv4PathMtuDiscovery::PROBE
        );
        // (Where the machine has IPv6.)
        let Ok(v6) = std::net::UdpSocket::bind("[::1]:0") else {
            return;
        };
        super::send_unfragmented(&v6).expect("set");
        assert_eq!(
            ipv6_mtu_discover(&v6).expect("get"),
            Ipv6PathMtuDiscovery::PROBE
        );
        assert_eq!(
            ip_mtu_discover(&v6).expect("get"),
            Ipv4PathMtuDiscovery::PROBE
        );
    }
}
