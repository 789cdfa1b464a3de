//! The Frame Streams server: binds unix and TCP sockets, serves each sender in its own task.
//! Frames go straight from the read buffer to the pipeline's non-blocking handoff, so a slow pipeline never stalls a sender.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dnsensor_core::pipeline::{Batcher, Handoff};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::convert::{observation_from_frame, Outcome};
use crate::fstrm::{
    control_bytes, ControlFrame, ControlType, Decoder, Frame, FrameError, DEFAULT_MAX_FRAME_BYTES,
    DNSTAP_CONTENT_TYPE,
};
use crate::stats::DnstapStats;
use crate::Listen;

/// How much to read at a time; frames are split off this buffer, so it is also the unit in which
/// read memory is shared with observations still in the pipeline.
const READ_CHUNK: usize = 64 * 1024;

/// The mode of the unix sockets: a resolver that shares our group can connect.
const SOCKET_MODE: u32 = 0o660;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sockets to listen on; at least one.
    pub listen: Vec<Listen>,
    /// Also record CLIENT_RESPONSE messages (segment Client, no bailiwick). Off by default: only
    /// the recursive segment is passive DNS proper.
    pub client_responses: bool,
    /// Largest data frame accepted; a larger one closes that connection.
    pub max_frame_bytes: usize,
    /// Senders served at once, over all listeners; one more is closed at once and counted, so a
    /// runaway local client cannot exhaust file descriptors or memory.
    pub max_connections: usize,
}

/// Default for [`Options::max_connections`]: far more than the resolvers on one host.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: Vec::new(),
            client_responses: false,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Why the server could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No socket to listen on was given.
    #[error("no dnstap listen address given")]
    NoListen,
    /// The operating system refused a socket.
    #[error("cannot listen on {listen}: {}", dnsensor_core::describe_io_error(.error))]
    Io {
        /// The socket that failed.
        listen: Listen,
        /// What the operating system said.
        error: io::Error,
    },
    /// The unix socket path is taken by something that is not a socket; we do not delete files.
    #[error(
        "cannot listen on {listen}: the path exists and is not a socket; refusing to remove it"
    )]
    NotASocket {
        /// The socket that failed.
        listen: Listen,
    },
    /// The unix socket path belongs to a live socket: another process is serving it.
    #[error("cannot listen on {listen}: another process is already listening on it")]
    InUse {
        /// The socket that failed.
        listen: Listen,
    },
}

enum Bound {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

/// A unix socket file this server created; removed on drop, but only if it is still ours.
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // Another instance may have replaced the file since; its socket is not ours to remove.
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = fs::remove_file(&self.path) {
                    log::warn!("dnstap: cannot remove {}: {e}", self.path.display());
                }
            }
            _ => {}
        }
    }
}

/// A bound, not yet running dnstap server. Created by [`bind`], started by [`Server::run`].
/// Dropping it without running closes the sockets and removes the unix socket files.
pub struct Server {
    listeners: Vec<(Listen, Bound)>,
    socket_files: Vec<SocketFile>,
    client_responses: bool,
    max_frame_bytes: usize,
    max_connections: usize,
    stats: Arc<DnstapStats>,
}

/// Binds every listening socket up front, so that an unusable one is reported before anything
/// runs. Needs no async runtime. A stale unix socket file is replaced; any other file is not.
pub fn bind(options: Options) -> Result<Server, Error> {
    if options.listen.is_empty() {
        return Err(Error::NoListen);
    }
    let mut listeners = Vec::with_capacity(options.listen.len());
    let mut socket_files = Vec::new();
    for listen in options.listen {
        let io_err = |error| Error::Io {
            listen: listen.clone(),
            error,
        };
        let bound = match &listen {
            Listen::Unix(path) => {
                let (listener, file) = bind_unix(path, &listen)?;
                socket_files.push(file);
                listener.set_nonblocking(true).map_err(io_err)?;
                Bound::Unix(listener)
            }
            Listen::Tcp(addr) => {
                let listener = std::net::TcpListener::bind(addr).map_err(io_err)?;
                listener.set_nonblocking(true).map_err(io_err)?;
                Bound::Tcp(listener)
            }
        };
        listeners.push((listen, bound));
    }
    Ok(Server {
        listeners,
        socket_files,
        client_responses: options.client_responses,
        max_frame_bytes: options.max_frame_bytes,
        max_connections: options.max_connections.max(1),
        stats: Arc::new(DnstapStats::default()),
    })
}

fn bind_unix(
    path: &Path,
    listen: &Listen,
) -> Result<(std::os::unix::net::UnixListener, SocketFile), Error> {
    let io_err = |error| Error::Io {
        listen: listen.clone(),
        error,
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A socket nobody answers on is left over from a previous run; one that answers is
            // another process's, and taking it over would silently steal its senders.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(Error::InUse {
                    listen: listen.clone(),
                });
            }
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(_) => {
            return Err(Error::NotASocket {
                listen: listen.clone(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(io_err)?;
    let meta = fs::symlink_metadata(path).map_err(io_err)?;
    let file = SocketFile {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE)).map_err(io_err)?;
    Ok((listener, file))
}

/// What every connection task needs.
struct Ctx {
    handoff: Handoff,
    stats: Arc<DnstapStats>,
    decoder: Decoder,
    client_responses: bool,
    /// One permit per connection being served, across all listeners.
    connections: Arc<Semaphore>,
    max_connections: usize,
}

impl Server {
    /// The server's counters. They keep counting while [`Server::run`] runs, so take this handle
    /// before starting it.
    pub fn stats(&self) -> Arc<DnstapStats> {
        Arc::clone(&self.stats)
    }

    /// The sockets actually bound, in the order given; a TCP port 0 shows the port picked.
    pub fn listening(&self) -> Vec<Listen> {
        self.listeners
            .iter()
            .map(|(listen, bound)| match bound {
                Bound::Tcp(l) => l.local_addr().map(Listen::Tcp).unwrap_or(listen.clone()),
                Bound::Unix(_) => listen.clone(),
            })
            .collect()
    }

    /// Serves all senders until `shutdown` becomes true (or its sender is dropped): then stops
    /// accepting, ends every connection task at its next read, and removes the unix socket
    /// files it created. Observations go to `handoff.offer`, which never waits.
    ///
    /// Must run inside a tokio runtime with I/O enabled; fails only if the sockets cannot be
    /// registered with it.
    pub async fn run(self, handoff: Handoff, shutdown: watch::Receiver<bool>) -> Result<(), Error> {
        let Server {
            listeners,
            socket_files,
            client_responses,
            max_frame_bytes,
            max_connections,
            stats,
        } = self;
        let ctx = Arc::new(Ctx {
            handoff,
            stats,
            decoder: Decoder::new(max_frame_bytes),
            client_responses,
            connections: Arc::new(Semaphore::new(max_connections)),
            max_connections,
        });
        let mut registered = Vec::with_capacity(listeners.len());
        for (listen, bound) in listeners {
            let io_err = |error| Error::Io {
                listen: listen.clone(),
                error,
            };
            let listener = match bound {
                Bound::Unix(l) => {
                    Listener::Unix(tokio::net::UnixListener::from_std(l).map_err(io_err)?)
                }
                Bound::Tcp(l) => {
                    Listener::Tcp(tokio::net::TcpListener::from_std(l).map_err(io_err)?)
                }
            };
            registered.push((listen, listener));
        }
        let mut accepts = JoinSet::new();
        for (listen, listener) in registered {
            log::info!("dnstap: listening on {listen}");
            accepts.spawn(accept_loop(
                listen,
                listener,
                Arc::clone(&ctx),
                shutdown.clone(),
            ));
        }
        while accepts.join_next().await.is_some() {}
        // Only now, with every listener closed, may the socket files go.
        drop(socket_files);
        Ok(())
    }
}

enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    // A dropped sender can never say "stop", so it is taken as having said it.
    let _ = shutdown.wait_for(|&stop| stop).await;
}

async fn accept_loop(
    listen: Listen,
    listener: Listener,
    ctx: Arc<Ctx>,
    mut shutdown: watch::Receiver<bool>,
) {
    let for_conns = shutdown.clone();
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown_requested(&mut shutdown) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            Ok(accepted) => {
                let Ok(permit) = Arc::clone(&ctx.connections).try_acquire_owned() else {
                    // Dropping the stream closes it; the sender sees EOF and may retry later.
                    let refused = DnstapStats::inc_get(&ctx.stats.connections_refused);
                    if refused.is_power_of_two() {
                        log::warn!(
                            "dnstap: {listen}: connection refused, {} senders already served \
                             (max-connections); {refused} refused so far",
                            ctx.max_connections
                        );
                    }
                    continue;
                };
                DnstapStats::inc(&ctx.stats.connections_accepted);
                let (stream, who) = match accepted {
                    Accepted::Unix(stream) => (Stream::Unix(stream), format!("{listen}")),
                    Accepted::Tcp(stream, peer) => {
                        // Handshake replies are tiny and awaited by the sender; do not let
                        // Nagle hold them.
                        let _ = stream.set_nodelay(true);
                        (Stream::Tcp(stream), format!("{listen} peer {peer}"))
                    }
                };
                let ctx = Arc::clone(&ctx);
                let shutdown = for_conns.clone();
                conns.spawn(async move {
                    match stream {
                        Stream::Unix(s) => serve(s, who, ctx, shutdown).await,
                        Stream::Tcp(s) => serve(s, who, ctx, shutdown).await,
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                // Typically EMFILE: back off instead of spinning, and keep serving what is open.
                log::warn!("dnstap: {listen}: accept failed: {e}");
                tokio::select! {
                    () = shutdown_requested(&mut shutdown) => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

enum Accepted {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream, std::net::SocketAddr),
}

enum Stream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(listener: &Listener) -> io::Result<Accepted> {
    match listener {
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
        Listener::Tcp(l) => l.accept().await.map(|(s, peer)| Accepted::Tcp(s, peer)),
    }
}

/// Why a connection was closed early.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("READY does not offer \"protobuf:dnstap.Dnstap\" (offered: {0})")]
    NotOffered(String),
    #[error("START with content type {0}, expected \"protobuf:dnstap.Dnstap\"")]
    WrongContentType(String),
    #[error("unexpected {0}")]
    Unexpected(&'static str),
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

/// How a connection ended without error.
enum End {
    /// STOP received (and FINISH sent, if bidirectional).
    Finished,
    /// The sender closed at a frame boundary without STOP.
    Closed,
    /// The server is shutting down.
    Shutdown,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing received yet.
    Opened,
    /// READY received and ACCEPT sent.
    Accepted,
    /// START received; data frames flow.
    Started { bidirectional: bool },
}

async fn serve<S>(stream: S, who: String, ctx: Arc<Ctx>, shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let stats = &ctx.stats;
    let mut batcher = ctx.handoff.batcher();
    let ended = session(stream, &who, &ctx, &mut batcher, shutdown).await;
    DnstapStats::add(&stats.observations_shed, batcher.flush());
    DnstapStats::inc(&stats.connections_closed);
    match ended {
        Ok(End::Finished) => {
            DnstapStats::inc(&stats.connections_finished);
            log::debug!("dnstap: {who}: stream finished");
        }
        Ok(End::Closed) => log::debug!("dnstap: {who}: sender closed without STOP"),
        Ok(End::Shutdown) => log::debug!("dnstap: {who}: closed for shutdown"),
        Err(e) => {
            DnstapStats::inc(&stats.connections_closed_error);
            match &e {
                ConnError::Frame(FrameError::Oversized { .. }) => {
                    DnstapStats::inc(&stats.frames_oversized)
                }
                ConnError::Frame(FrameError::Truncated(_)) => {
                    DnstapStats::inc(&stats.frames_truncated)
                }
                ConnError::Io(_) => {}
                _ => DnstapStats::inc(&stats.protocol_errors),
            }
            log::warn!("dnstap: {who}: closing connection: {e}");
        }
    }
}

async fn session<S>(
    mut stream: S,
    who: &str,
    ctx: &Ctx,
    batcher: &mut Batcher,
    mut shutdown: watch::Receiver<bool>,
) -> Result<End, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut state = State::Opened;
    let mut decode_error_logged = false;
    loop {
        while let Some(frame) = ctx.decoder.decode(&mut buf)? {
            match (state, frame) {
                (State::Started { .. }, Frame::Data(data)) => {
                    if on_data(data, ctx, batcher).is_err() && !decode_error_logged {
                        decode_error_logged = true;
                        log::warn!("dnstap: {who}: a data frame is not a dnstap message (further ones are only counted)");
                    }
                }
                (_, Frame::Data(_)) => {
                    return Err(ConnError::Unexpected("data frame before START"))
                }
                (State::Opened, Frame::Control(c)) if c.kind == ControlType::Ready => {
                    if !c.has_content_type(DNSTAP_CONTENT_TYPE) {
                        return Err(ConnError::NotOffered(show_types(&c)));
                    }
                    let accept = control_bytes(ControlType::Accept, &[DNSTAP_CONTENT_TYPE]);
                    stream.write_all(&accept).await?;
                    state = State::Accepted;
                }
                (State::Opened | State::Accepted, Frame::Control(c))
                    if c.kind == ControlType::Start =>
                {
                    // START may omit the type; if it names one, it must be ours.
                    if !c.content_types.is_empty() && !c.has_content_type(DNSTAP_CONTENT_TYPE) {
                        return Err(ConnError::WrongContentType(show_types(&c)));
                    }
                    state = State::Started {
                        bidirectional: state == State::Accepted,
                    };
                }
                (_, Frame::Control(c)) if c.kind == ControlType::Stop => {
                    let bidirectional = matches!(
                        state,
                        State::Accepted
                            | State::Started {
                                bidirectional: true
                            }
                    );
                    if bidirectional {
                        // Unbound may already be gone without waiting for FINISH; that is fine.
                        let finish = control_bytes(ControlType::Finish, &[]);
                        if let Err(e) = stream.write_all(&finish).await {
                            log::debug!("dnstap: {who}: FINISH not delivered: {e}");
                        }
                        let _ = stream.shutdown().await;
                    }
                    return Ok(End::Finished);
                }
                (_, Frame::Control(c)) => {
                    return Err(ConnError::Unexpected(match c.kind {
                        ControlType::Accept => "ACCEPT from a sender",
                        ControlType::Finish => "FINISH from a sender",
                        ControlType::Ready => "READY after the handshake",
                        ControlType::Start => "second START",
                        ControlType::Stop => "STOP",
                    }))
                }
            }
        }
        // Everything decoded from this read goes to the pipeline before waiting for the next.
        DnstapStats::add(&ctx.stats.observations_shed, batcher.flush());
        buf.reserve(ctx.decoder.missing(&buf).max(READ_CHUNK));
        let read = tokio::select! {
            biased;
            () = shutdown_requested(&mut shutdown) => return Ok(End::Shutdown),
            read = stream.read_buf(&mut buf) => read?,
        };
        if read == 0 {
            return if buf.is_empty() {
                Ok(End::Closed)
            } else {
                Err(FrameError::Truncated(buf.len()).into())
            };
        }
        DnstapStats::add(&ctx.stats.bytes_read, read as u64);
        if read < READ_CHUNK {
            // The socket is drained. Senders write a frame per call, so waiting for readiness
            // now would wake this thread for every frame or two, in step with a busy sender.
            // Yielding first lets a sender on this CPU write a chunk's worth; when nothing else
            // wants the CPU it costs one system call. (Measured in docs/benchmarks.md.)
            std::thread::yield_now();
        }
    }
}

/// Handles one data frame; Err only to say it did not decode (it is counted already).
fn on_data(data: Bytes, ctx: &Ctx, batcher: &mut Batcher) -> Result<(), ()> {
    let stats = &ctx.stats;
    DnstapStats::inc(&stats.frames);
    let outcome = match observation_from_frame(data, ctx.client_responses) {
        Ok(outcome) => outcome,
        Err(_) => {
            DnstapStats::inc(&stats.decode_errors);
            return Err(());
        }
    };
    DnstapStats::inc(&stats.messages_decoded);
    match outcome {
        Outcome::Use(obs) => {
            DnstapStats::inc(&stats.messages_used);
            DnstapStats::add(&stats.observations_shed, batcher.push(obs));
        }
        Outcome::Ignored => DnstapStats::inc(&stats.messages_ignored),
        Outcome::MissingResponse => DnstapStats::inc(&stats.responses_missing),
    }
    Ok(())
}

/// A control frame's content types for a log line: quoted and escaped, since they come from
/// whoever connected.
fn show_types(c: &ControlFrame) -> String {
    let types: Vec<String> = c
        .content_types
        .iter()
        .map(|t| format!("{:?}", String::from_utf8_lossy(t)))
        .collect();
    if types.is_empty() {
        "none".to_owned()
    } else {
        types.join(", ")
    }
}
