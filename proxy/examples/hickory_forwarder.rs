//! A minimal forwarding proxy built on hickory-server 0.26 (`Server` + a `RequestHandler`), kept
//! only as the measured counterpart of docs/proxy-hickory.md: is hickory-server's server side fit
//! for a byte-transparent proxy? (bench/hickory-transparency.sh measures it.)
//!
//! ```text
//! hickory_forwarder --listen 127.0.0.1:5300 --upstream 127.0.0.1:53 [--timeout-ms 2000]
//! ```
//!
//! Both a UDP socket and a TCP listener are registered with hickory-server's `Server`. For every
//! request the handler forwards the client's raw bytes (`Request::as_slice()`, ID untouched) to
//! the upstream: over UDP if the client came over UDP, over TCP if it came over TCP, and again
//! over TCP when the UDP answer has TC=1. The upstream's answer is then decoded and handed back
//! through the only response path hickory-server offers, `ResponseHandler::send_response` with a
//! `MessageResponse` built by `MessageResponseBuilder` from the upstream's own header (ID restored),
//! question section, answers, authorities, additionals and EDNS. hickory-server re-encodes that.
//! One deliberate change: to a UDP client, the OPT's payload size is capped at the client's own
//! (hickory-server truncates at the size in the OPT it writes, so an upstream's larger size would
//! let it send more than the client accepts).
//!
//! `--raw-udp-replies` (a diagnostic, off by default) sends UDP answers around hickory-server's
//! response path: the upstream's bytes go to the client through a duplicate of the listening
//! socket, so hickory-server only receives and decodes the queries. TCP is unchanged (the
//! accepted connections are hickory-server's alone).
//!
//! It is made as fast as the API allows: a 2-worker multi-thread runtime, upstream UDP sockets
//! (connected, each with its own receive buffer) and TCP connections kept in pools and reused, the
//! upstream answer decoded in place from the receive buffer, a 4 MiB receive buffer asked for on
//! the listening UDP socket, no logging subscriber. An upstream that does not answer within the
//! timeout gets the client a SERVFAIL.

use std::{
    env,
    future::Future,
    io,
    net::SocketAddr,
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use hickory_server::{
    net::{runtime::Time, xfer::Protocol},
    proto::{
        op::{Header, HeaderCounts, Message, ResponseCode},
        serialize::binary::{BinDecodable, BinDecoder},
    },
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::{MessageResponseBuilder, Queries},
    Server,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
};

/// Largest UDP answer accepted from the upstream.
const UDP_BUF: usize = 65_535;
/// Idle timeout of client TCP connections (hickory-server's `register_listener` argument).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Receive buffer asked for on the listening UDP socket (the kernel caps it at rmem_max).
const UDP_RCVBUF: usize = 4 << 20;
/// Per-connection response buffer (hickory-server's `register_listener` argument).
const TCP_RESPONSE_BUFFER: usize = 128;

/// Upstream sockets, reused from one request to the next. A socket or connection is owned by
/// one request at a time, so an answer never has to be matched with a request across tasks.
struct Upstream {
    addr: SocketAddr,
    timeout: Duration,
    udp: Mutex<Vec<(UdpSocket, Vec<u8>)>>,
    tcp: Mutex<Vec<TcpStream>>,
}

impl Upstream {
    fn take_udp(&self) -> Option<(UdpSocket, Vec<u8>)> {
        self.udp.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put_udp(&self, sock: (UdpSocket, Vec<u8>)) {
        self.udp
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sock);
    }

    fn take_tcp(&self) -> Option<TcpStream> {
        self.tcp.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put_tcp(&self, conn: TcpStream) {
        self.tcp
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }

    async fn new_udp(&self) -> io::Result<(UdpSocket, Vec<u8>)> {
        let bind: SocketAddr = if self.addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let sock = UdpSocket::bind(bind).await?;
        sock.connect(self.addr).await?;
        Ok((sock, vec![0; UDP_BUF]))
    }

    /// Sends `query` over UDP; returns the socket and the length of the answer in its buffer.
    /// Datagrams whose ID is not the query's (a late answer to an earlier query) are skipped.
    async fn udp_exchange(&self, query: &[u8]) -> io::Result<((UdpSocket, Vec<u8>), usize)> {
        let (sock, mut buf) = match self.take_udp() {
            Some(s) => s,
            None => self.new_udp().await?,
        };
        sock.send(query).await?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let len = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "upstream UDP timeout"))??;
            if len >= 12 && buf[..2] == query[..2] {
                return Ok(((sock, buf), len));
            }
        }
    }

    /// One query and its answer on `conn` (2-byte length framing).
    async fn tcp_round(&self, conn: &mut TcpStream, query: &[u8]) -> io::Result<Vec<u8>> {
        let len = u16::try_from(query.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        let exchange = async {
            conn.write_all(&framed).await?;
            loop {
                let mut len = [0u8; 2];
                conn.read_exact(&mut len).await?;
                let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
                conn.read_exact(&mut answer).await?;
                if answer.len() >= 12 && answer[..2] == query[..2] {
                    return Ok(answer);
                }
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "upstream TCP timeout"))?
    }

    /// Sends `query` over TCP, on a pooled connection if there is one (retried once on a fresh
    /// connection if the pooled one fails: the upstream may have closed it while idle).
    async fn tcp_exchange(&self, query: &[u8]) -> io::Result<Vec<u8>> {
        if let Some(mut conn) = self.take_tcp() {
            if let Ok(answer) = self.tcp_round(&mut conn, query).await {
                self.put_tcp(conn);
                return Ok(answer);
            }
        }
        let mut conn = tokio::time::timeout(self.timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "upstream TCP connect timeout")
            })??;
        conn.set_nodelay(true)?;
        let answer = self.tcp_round(&mut conn, query).await?;
        self.put_tcp(conn);
        Ok(answer)
    }
}

struct Forwarder {
    upstream: Arc<Upstream>,
    /// `--raw-udp-replies`: a second handle (dup'ed fd) on the UDP socket hickory-server listens
    /// on, to send the upstream's bytes to UDP clients around hickory-server's response path.
    raw_udp: Option<UdpSocket>,
}

impl Forwarder {
    /// The `--raw-udp-replies` path: the upstream's answer, as it is (TC included, no retry),
    /// straight to the client; hickory-server only sees the header, for its `ResponseInfo`.
    async fn udp_raw(&self, raw: &UdpSocket, request: &Request) -> Result<ResponseInfo, String> {
        let ((sock, buf), len) = self
            .upstream
            .udp_exchange(request.as_slice())
            .await
            .map_err(|e| e.to_string())?;
        let sent = raw.send_to(&buf[..len], request.src()).await;
        let header = Header::read(&mut BinDecoder::new(&buf[..len]));
        self.upstream.put_udp((sock, buf));
        sent.map_err(|e| e.to_string())?;
        header.map(ResponseInfo::from).map_err(|e| e.to_string())
    }
}

/// Decodes the upstream's answer and sends it to the client through hickory-server's response
/// path: the upstream's header (with the client's ID), its question section (re-read into
/// `Queries`, which keeps the original bytes), its three record sections and its EDNS.
async fn relay<R: ResponseHandler>(
    request: &Request,
    answer: &[u8],
    mut response_handle: R,
) -> Result<ResponseInfo, String> {
    let mut decoder = BinDecoder::new(answer);
    let header = Header::read(&mut decoder).map_err(|e| e.to_string())?;
    let counts = header.counts;
    let mut metadata = header.metadata;
    let op = metadata.op_code;
    let queries =
        Queries::read(&mut decoder, usize::from(counts.queries)).map_err(|e| e.to_string())?;
    let (answers, _, _) =
        Message::read_records(&mut decoder, usize::from(counts.answers), false, op)
            .map_err(|e| e.to_string())?;
    let (authorities, _, _) =
        Message::read_records(&mut decoder, usize::from(counts.authorities), false, op)
            .map_err(|e| e.to_string())?;
    let (additionals, mut edns, _) =
        Message::read_records(&mut decoder, usize::from(counts.additionals), true, op)
            .map_err(|e| e.to_string())?;
    // hickory-server truncates a UDP answer at the payload size of the OPT record it writes, not
    // at the client's: keeping the upstream's OPT as it is could send a client more than it
    // advertised (after a retry over TCP, or when the re-encoding comes out longer). Capped.
    if request.protocol() == Protocol::Udp {
        if let Some(edns) = edns.as_mut() {
            if edns.max_payload() > request.max_payload() {
                edns.set_max_payload(request.max_payload());
            }
        }
    }
    if let Some(edns) = &edns {
        metadata.response_code =
            ResponseCode::from(edns.rcode_high(), metadata.response_code.low());
    }
    metadata.id = request.metadata.id;
    let response = MessageResponseBuilder::new(&queries, edns.as_ref()).build(
        metadata,
        answers.iter(),
        authorities.iter(),
        std::iter::empty(),
        additionals.iter(),
    );
    response_handle
        .send_response(response)
        .await
        .map_err(|e| e.to_string())
}

async fn servfail<R: ResponseHandler>(request: &Request, mut response_handle: R) -> ResponseInfo {
    let response = MessageResponseBuilder::new(&request.queries, request.edns.as_ref())
        .error_msg(&request.metadata, ResponseCode::ServFail);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => {
            let mut metadata = request.metadata;
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

impl RequestHandler for Forwarder {
    // Written out rather than with `#[async_trait]` (which the trait is declared with): the same
    // boxed-future signature, without a dev-dependency on the async-trait crate.
    fn handle_request<'a, 'b, 'f, R, T>(
        &'a self,
        request: &'b Request,
        response_handle: R,
    ) -> std::pin::Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'f>>
    where
        R: ResponseHandler + 'f,
        T: Time + 'f,
        'a: 'f,
        'b: 'f,
    {
        Box::pin(async move {
            let query = request.as_slice();
            let up = &self.upstream;
            let result = if let (Some(raw), Protocol::Udp) = (&self.raw_udp, request.protocol()) {
                self.udp_raw(raw, request).await
            } else if request.protocol() == Protocol::Udp {
                match up.udp_exchange(query).await {
                    Ok(((sock, buf), len)) => {
                        // TC=1: ask again over TCP.
                        if buf[2] & 0x02 != 0 {
                            up.put_udp((sock, buf));
                            match up.tcp_exchange(query).await {
                                Ok(answer) => {
                                    relay(request, &answer, response_handle.clone()).await
                                }
                                Err(e) => Err(e.to_string()),
                            }
                        } else {
                            let r = relay(request, &buf[..len], response_handle.clone()).await;
                            up.put_udp((sock, buf));
                            r
                        }
                    }
                    Err(e) => Err(e.to_string()),
                }
            } else {
                match up.tcp_exchange(query).await {
                    Ok(answer) => relay(request, &answer, response_handle.clone()).await,
                    Err(e) => Err(e.to_string()),
                }
            };
            match result {
                Ok(info) => info,
                Err(_) => servfail(request, response_handle).await,
            }
        })
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: hickory_forwarder --listen ADDR:PORT --upstream ADDR:PORT [--timeout-ms N] \
         [--raw-udp-replies]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut listen: Option<SocketAddr> = None;
    let mut upstream: Option<SocketAddr> = None;
    let mut timeout = Duration::from_millis(2000);
    let mut raw_udp_replies = false;
    let mut args = env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--raw-udp-replies" {
            raw_udp_replies = true;
            continue;
        }
        let value = args.next();
        match (arg.as_str(), value) {
            ("--listen", Some(v)) => listen = v.parse().ok(),
            ("--upstream", Some(v)) => upstream = v.parse().ok(),
            ("--timeout-ms", Some(v)) => match v.parse() {
                Ok(ms) => timeout = Duration::from_millis(ms),
                Err(_) => return usage(),
            },
            _ => return usage(),
        }
    }
    let (Some(listen), Some(upstream)) = (listen, upstream) else {
        return usage();
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hickory_forwarder: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: io::Result<()> = runtime.block_on(async move {
        let udp = UdpSocket::from_std(bind_udp(listen)?)?;
        // `into_std` leaves the socket non-blocking, and `try_clone` shares that with the dup.
        let (udp, raw_udp) = if raw_udp_replies {
            let std = udp.into_std()?;
            let raw = UdpSocket::from_std(std.try_clone()?)?;
            (UdpSocket::from_std(std)?, Some(raw))
        } else {
            (udp, None)
        };
        let forwarder = Forwarder {
            upstream: Arc::new(Upstream {
                addr: upstream,
                timeout,
                udp: Mutex::new(Vec::new()),
                tcp: Mutex::new(Vec::new()),
            }),
            raw_udp,
        };
        let mut server = Server::new(forwarder);
        server.register_socket(udp);
        server.register_listener(
            TcpListener::bind(listen).await?,
            TCP_IDLE,
            TCP_RESPONSE_BUFFER,
        );
        eprintln!("hickory_forwarder: listening on {listen} (udp+tcp), upstream {upstream}");
        tokio::select! {
            r = server.block_until_done() => r.map_err(|e| io::Error::other(e.to_string())),
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = sigterm() => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hickory_forwarder: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The listening UDP socket, non-blocking, with a large receive buffer (NSD asks for one too):
/// the kernel's default (208 KiB) drops datagrams of a burst before any proxy code sees them.
fn bind_udp(listen: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(listen),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: a smaller buffer than asked for is not an error.
    let _ = socket.set_recv_buffer_size(UDP_RCVBUF);
    socket.set_nonblocking(true)?;
    socket.bind(&listen.into())?;
    Ok(socket.into())
}

async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
