//! Listen parsing and binding: the errors an operator sees for bad flags and unusable paths.

use std::os::unix::net::UnixListener;

use dnsensor_dnstap::{bind, Error, Listen, Options};

fn opts(listen: Listen) -> Options {
    Options {
        listen: vec![listen],
        ..Options::default()
    }
}

#[test]
fn listen_parses_both_forms() {
    assert_eq!(
        "unix:/run/dnsensor/dnstap.sock".parse::<Listen>(),
        Ok(Listen::Unix("/run/dnsensor/dnstap.sock".into()))
    );
    assert_eq!(
        "tcp:127.0.0.1:6000".parse::<Listen>(),
        Ok(Listen::Tcp("127.0.0.1:6000".parse().unwrap()))
    );
    assert_eq!(
        "tcp:[::1]:6000".parse::<Listen>(),
        Ok(Listen::Tcp("[::1]:6000".parse().unwrap()))
    );
    for s in ["unix:/a/b.sock", "tcp:127.0.0.1:6000", "tcp:[::1]:6000"] {
        assert_eq!(s.parse::<Listen>().unwrap().to_string(), s);
    }
}

#[test]
fn listen_errors_say_what_is_expected() {
    let err = |s: &str| s.parse::<Listen>().unwrap_err().to_string();
    assert_eq!(
        err("/run/x.sock"),
        "invalid listen address \"/run/x.sock\": unknown scheme; expected unix:PATH or tcp:ADDR:PORT (IPv6 as tcp:[::1]:6000)"
    );
    assert_eq!(
        err("unix:"),
        "invalid listen address \"unix:\": the unix socket path is empty; expected unix:PATH or tcp:ADDR:PORT (IPv6 as tcp:[::1]:6000)"
    );
    let tcp_reason = "ADDR:PORT must be an IP address and a port";
    for bad in [
        "tcp:localhost:6000",
        "tcp:::1:6000",
        "tcp:127.0.0.1",
        "tcp:1.2.3.4:99999",
    ] {
        assert_eq!(
            err(bad),
            format!("invalid listen address {bad:?}: {tcp_reason}; expected unix:PATH or tcp:ADDR:PORT (IPv6 as tcp:[::1]:6000)")
        );
    }
    assert_eq!(
        err("udp:127.0.0.1:6000"),
        "invalid listen address \"udp:127.0.0.1:6000\": unknown scheme; expected unix:PATH or tcp:ADDR:PORT (IPv6 as tcp:[::1]:6000)"
    );
}

#[test]
fn unusable_unix_path_is_one_clear_error() {
    let err = bind(opts("unix:/nonexistent/dir/x.sock".parse().unwrap()))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "cannot listen on unix:/nonexistent/dir/x.sock: No such file or directory"
    );
    assert_eq!(
        bind(Options::default()).err().unwrap().to_string(),
        "no dnstap listen address given"
    );
}

#[test]
fn a_later_failure_removes_earlier_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.sock");
    let err = bind(Options {
        listen: vec![
            Listen::Unix(good.clone()),
            "unix:/nonexistent/dir/x.sock".parse().unwrap(),
        ],
        ..Options::default()
    })
    .err()
    .unwrap();
    assert!(matches!(err, Error::Io { .. }));
    assert!(!good.exists());
}

#[test]
fn refuses_to_remove_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious.txt");
    std::fs::write(&path, b"keep me").unwrap();
    let err = bind(opts(Listen::Unix(path.clone()))).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot listen on unix:{}: the path exists and is not a socket; refusing to remove it",
            path.display()
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
}

#[test]
fn replaces_a_stale_socket_but_not_a_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dnstap.sock");
    let live = UnixListener::bind(&path).unwrap();
    let err = bind(opts(Listen::Unix(path.clone()))).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot listen on unix:{}: another process is already listening on it",
            path.display()
        )
    );
    drop(live); // the file stays behind: a stale socket
    assert!(path.exists());
    let server = bind(opts(Listen::Unix(path.clone()))).expect("stale socket replaced");
    drop(server);
    assert!(
        !path.exists(),
        "dropping an unstarted server removes its socket"
    );
}

#[test]
fn tcp_port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = bind(opts(Listen::Tcp(addr))).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!("cannot listen on tcp:{addr}: Address already in use")
    );
}
