//! Who may query the proxy: a list of networks, loopback only unless the operator says more.
//! Everyone else gets REFUSED, so the proxy never becomes an open resolver by accident.

use std::net::IpAddr;

use ipnet::IpNet;

/// The networks allowed to query.
#[derive(Debug, Clone)]
pub struct Acl {
    allowed: Vec<IpNet>,
}

impl Acl {
    /// An ACL of `allowed` networks; empty means the default, loopback only.
    pub fn new(allowed: Vec<IpNet>) -> Acl {
        if allowed.is_empty() {
            return Acl::loopback();
        }
        Acl { allowed }
    }

    /// 127.0.0.0/8 and ::1/128.
    pub fn loopback() -> Acl {
        Acl {
            allowed: vec![
                "127.0.0.0/8".parse().expect("literal"),
                "::1/128".parse().expect("literal"),
            ],
        }
    }

    /// Parses `ADDR/LEN` (or a bare address, meaning one host).
    pub fn parse_net(s: &str) -> Result<IpNet, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(net.trunc());
        }
        s.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("`{s}` is not a network (ADDR/LEN) or an address"))
    }

    /// True when `ip` may query. IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allowed.iter().any(|net| net.contains(&ip))
    }

    /// The networks, for the start-up log line.
    pub fn networks(&self) -> &[IpNet] {
        &self.allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_loopback_only() {
        let acl = Acl::new(Vec::new());
        assert!(acl.allows("127.0.0.1".parse().unwrap()));
        assert!(acl.allows("127.53.9.9".parse().unwrap()));
        assert!(acl.allows("::1".parse().unwrap()));
        assert!(acl.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!acl.allows("192.0.2.1".parse().unwrap()));
        assert!(!acl.allows("::2".parse().unwrap()));
    }

    #[test]
    fn listed_networks_and_hosts() {
        let acl = Acl::new(vec![
            Acl::parse_net("198.51.100.7/24").unwrap(),
            Acl::parse_net("2001:db8::1").unwrap(),
        ]);
        assert!(acl.allows("198.51.100.200".parse().unwrap()));
        assert!(acl.allows("2001:db8::1".parse().unwrap()));
        assert!(!acl.allows("2001:db8::2".parse().unwrap()));
        assert!(
            !acl.allows("127.0.0.1".parse().unwrap()),
            "loopback is not implied"
        );
        assert!(Acl::parse_net("10.0.0.0/33").is_err());
        assert!(Acl::parse_net("example").is_err());
    }
}
