//! Datagrams in batches, one system call per batch: `recvmmsg` takes every query or answer
//! already waiting on a socket, `sendmmsg` sends a batch's forwarded queries or answers at once.
//! Under load this saves most of the four system calls a forwarded query costs; at a low rate a
//! batch is one datagram, so no datagram ever waits for company.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};

/// Datagrams taken or sent per system call at most.
pub(crate) const BATCH: usize = 16;

/// Room for the largest datagram, so that no datagram is ever cut. Only the bytes a datagram
/// fills are touched, so the untouched rest of each slot costs address space, not memory.
const SLOT: usize = 65_535;

/// Buffers and headers for receiving up to [`BATCH`] datagrams in one call; allocated once per
/// receiving thread.
pub(crate) struct RecvBatch {
    bufs: Box<[u8]>,
    headers: MultiHeaders<SockaddrStorage>,
    lens: [usize; BATCH],
    from: [Option<SocketAddr>; BATCH],
    count: usize,
}

impl RecvBatch {
    pub(crate) fn new() -> RecvBatch {
        RecvBatch {
            bufs: vec![0u8; BATCH * SLOT].into_boxed_slice(),
            headers: MultiHeaders::preallocate(BATCH, None),
            lens: [0; BATCH],
            from: [None; BATCH],
            count: 0,
        }
    }

    /// Waits for at least one datagram on `fd` (as long as the socket's receive timeout allows)
    /// and takes every other one already queued, up to [`BATCH`]. Returns how many were taken.
    /// A datagram cut short (impossible with slots of the maximum size) is left out.
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.recv_with(fd, MsgFlags::MSG_WAITFORONE)
    }

    /// Like [`RecvBatch::recv`], but never waits: WouldBlock when nothing is queued.
    pub(crate) fn try_recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.recv_with(fd, MsgFlags::MSG_DONTWAIT)
    }

    fn recv_with(&mut self, fd: RawFd, flags: MsgFlags) -> io::Result<usize> {
        self.count = 0;
        let mut slots = self.bufs.chunks_exact_mut(SLOT);
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(slots.next().unwrap_or_default())]);
        let results = recvmmsg(fd, &mut self.headers, iovs.iter_mut(), flags, None)
            .map_err(io::Error::from)?;
        let mut cut = [false; BATCH];
        let mut received = 0;
        for (slot, msg) in results.enumerate() {
            self.lens[slot] = msg.bytes;
            self.from[slot] = msg.address.as_ref().and_then(std_addr);
            cut[slot] = msg.flags.contains(MsgFlags::MSG_TRUNC);
            received = slot + 1;
        }
        // Kept datagrams move down over cut ones, so that index i is the i-th kept one.
        let mut taken = 0;
        for (slot, &cut) in cut.iter().enumerate().take(received) {
            if cut {
                continue;
            }
            if slot != taken {
                let len = self.lens[slot];
                self.bufs
                    .copy_within(slot * SLOT..slot * SLOT + len, taken * SLOT);
                self.lens[taken] = len;
                self.from[taken] = self.from[slot];
            }
            taken += 1;
        }
        self.count = taken;
        Ok(taken)
    }

    /// How many datagrams the last [`RecvBatch::recv`] took.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Datagram `i` of the last receive.
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        let start = i * SLOT;
        &self.bufs[start..start + self.lens[i]]
    }

    /// Datagram `i` of the last receive, to change in place.
    pub(crate) fn get_mut(&mut self, i: usize) -> &mut [u8] {
        let start = i * SLOT;
        &mut self.bufs[start..start + self.lens[i]]
    }

    /// The sender of datagram `i`, when the socket reported one.
    pub(crate) fn sender(&self, i: usize) -> Option<SocketAddr> {
        self.from[i]
    }
}

/// Headers for sending up to [`BATCH`] datagrams in one call; allocated once per sending thread.
pub(crate) struct SendBatch {
    headers: MultiHeaders<SockaddrStorage>,
    to: Vec<Option<SockaddrStorage>>,
}

impl SendBatch {
    pub(crate) fn new() -> SendBatch {
        SendBatch {
            headers: MultiHeaders::preallocate(BATCH, None),
            to: Vec::with_capacity(BATCH),
        }
    }

    /// Sends `datagrams` (at most [`BATCH`]) on `fd` without waiting, each to its address, or
    /// where it is `None` to the socket's connected peer. Calls `failed(i, error)` for each
    /// datagram the kernel did not take; the others after it are still sent.
    pub(crate) fn send(
        &mut self,
        fd: RawFd,
        datagrams: &[(&[u8], Option<SocketAddr>)],
        mut failed: impl FnMut(usize, io::Error),
    ) {
        let datagrams = &datagrams[..datagrams.len().min(BATCH)];
        self.to.clear();
        self.to
            .extend(datagrams.iter().map(|(_, to)| to.map(storage_addr)));
        let iovs: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
            [IoSlice::new(
                datagrams.get(i).map_or(&[][..], |(bytes, _)| bytes),
            )]
        });
        let mut next = 0;
        while next < datagrams.len() {
            let sent = sendmmsg(
                fd,
                &mut self.headers,
                &iovs[next..datagrams.len()],
                &self.to[next..],
                [] as [ControlMessage<'_>; 0],
                MsgFlags::MSG_DONTWAIT,
            )
            .map(|results| results.count());
            match sent {
                // The kernel stopped at a datagram it would not take; the error is that one's.
                Ok(n) if n > 0 => next += n,
                Ok(_) => {
                    failed(next, io::Error::from(io::ErrorKind::WriteZero));
                    next += 1;
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    failed(next, io::Error::from(e));
                    next += 1;
                }
            }
        }
    }
}

fn std_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        Some(SocketAddr::from(*v4))
    } else {
        addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
    }
}

fn storage_addr(addr: SocketAddr) -> SockaddrStorage {
    match addr {
        SocketAddr::V4(v4) => v4.into(),
        SocketAddr::V6(v6) => v6.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_takes_every_queued_datagram_and_its_sender() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..20u8 {
            tx.send_to(&[i; 3], rx.local_addr().unwrap()).unwrap();
        }
        let mut batch = RecvBatch::new();
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), BATCH);
        for i in 0..BATCH {
            assert_eq!(batch.get(i), &[i as u8; 3]);
            assert_eq!(batch.sender(i), Some(tx.local_addr().unwrap()));
        }
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 4);
        assert_eq!(batch.get(3), &[19u8; 3]);
    }

    #[test]
    fn a_send_batch_reaches_each_address_and_reports_failures_by_index() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to_a = Some(a.local_addr().unwrap());
        let to_b = Some(b.local_addr().unwrap());
        // The middle datagram has no address on an unconnected socket: the kernel refuses it.
        let datagrams: [(&[u8], _); 3] = [(b"one", to_a), (b"two", None), (b"three", to_b)];
        let mut failures = Vec::new();
        SendBatch::new().send(tx.as_raw_fd(), &datagrams, |i, e| {
            failures.push((i, e.raw_os_error()))
        });
        assert_eq!(failures, vec![(1, Some(libc::EDESTADDRREQ))]);
        let mut buf = [0u8; 16];
        assert_eq!(a.recv(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"one");
        assert_eq!(b.recv(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"three");
    }
}
