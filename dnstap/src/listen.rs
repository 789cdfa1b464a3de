//! Where the dnstap server listens: `unix:PATH` or `tcp:ADDR:PORT`, as on the command line.
//! Parsing is strict, with a message that shows the accepted forms.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Listen {
    /// A unix stream socket at this path.
    Unix(PathBuf),
    /// A TCP socket on this address (port 0 picks a free port; see [`crate::Server::listening`]).
    Tcp(SocketAddr),
}

/// Why a `--listen` value was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid listen address {input:?}: {reason}; expected unix:PATH or tcp:ADDR:PORT (IPv6 as tcp:[::1]:6000)")]
pub struct ListenParseError {
    /// The text as given.
    pub input: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

impl FromStr for Listen {
    type Err = ListenParseError;

    fn from_str(s: &str) -> Result<Listen, ListenParseError> {
        let fail = |reason| ListenParseError {
            input: s.to_owned(),
            reason,
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(fail("the unix socket path is empty"));
            }
            Ok(Listen::Unix(PathBuf::from(path)))
        } else if let Some(addr) = s.strip_prefix("tcp:") {
            addr.parse()
                .map(Listen::Tcp)
                .map_err(|_| fail("ADDR:PORT must be an IP address and a port"))
        } else {
            Err(fail("unknown scheme"))
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
            Listen::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}
