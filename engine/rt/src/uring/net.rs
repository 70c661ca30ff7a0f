//! Sockets on io_uring: accept, connect, receive, send, shutdown and close go through the ring.
//! Creating, binding and listening are set-up calls made directly.

use super::file::{plain, Descriptor};
use super::reactor::{check, Operation, Reactor};
use crate::backend::{ListenerBackend, StreamBackend};
use crate::{BufResult, LocalBoxFuture};
use io_uring::{opcode, types};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::rc::Rc;

/// A socket address in the kernel's layout.
pub(crate) struct RawAddress {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddress {
    fn empty() -> RawAddress {
        // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
        RawAddress {
            storage: unsafe { std::mem::zeroed() },
            len: std::mem::size_of::<libc::sockaddr_storage>() as _,
        }
    }

    pub(crate) fn from(address: SocketAddr) -> RawAddress {
        let mut raw = RawAddress::empty();
        match address {
            SocketAddr::V4(v4) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as _,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
                unsafe {
                    std::ptr::write((&mut raw.storage as *mut libc::sockaddr_storage).cast(), sin)
                };
                raw.len = std::mem::size_of::<libc::sockaddr_in>() as _;
            }
            SocketAddr::V6(v6) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as _,
                    sin6_port: v6.port().to_be(),
                    sin6_flowinfo: v6.flowinfo(),
                    sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                    sin6_scope_id: v6.scope_id(),
                };
                // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in6.
                unsafe {
                    std::ptr::write((&mut raw.storage as *mut libc::sockaddr_storage).cast(), sin6)
                };
                raw.len = std::mem::size_of::<libc::sockaddr_in6>() as _;
            }
        }
        raw
    }

    fn to_socket_address(&self) -> io::Result<SocketAddr> {
        match i32::from(self.storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin: libc::sockaddr_in = unsafe {
                    std::ptr::read((&self.storage as *const libc::sockaddr_storage).cast())
                };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Ok(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6: libc::sockaddr_in6 = unsafe {
                    std::ptr::read((&self.storage as *const libc::sockaddr_storage).cast())
                };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            family => Err(io::Error::other(format!("unexpected address family {family}"))),
        }
    }
}

fn last_error<T>(result: libc::c_int, value: T) -> io::Result<T> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

fn new_socket(address: &SocketAddr) -> io::Result<libc::c_int> {
    let domain = if address.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    last_error(fd, fd)
}

fn local_address(fd: libc::c_int) -> io::Result<SocketAddr> {
    let mut raw = RawAddress::empty();
    // SAFETY: the storage and its length are valid for the call.
    let result = unsafe {
        libc::getsockname(
            fd,
            (&mut raw.storage as *mut libc::sockaddr_storage).cast(),
            &mut raw.len,
        )
    };
    last_error(result, ())?;
    raw.to_socket_address()
}

fn set_option(fd: libc::c_int, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: passes a live c_int of the right size.
    let result = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as _,
        )
    };
    last_error(result, ())
}

/// Listen backlog: connections the kernel queues before they are accepted.
const BACKLOG: libc::c_int = 1024;

pub(crate) fn listen(
    reactor: &Rc<Reactor>,
    address: SocketAddr,
) -> io::Result<Rc<dyn ListenerBackend>> {
    let fd = new_socket(&address)?;
    let descriptor = Rc::new(Descriptor { reactor: reactor.clone(), fd });
    set_option(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    let raw = RawAddress::from(address);
    // SAFETY: the address and its length are valid for the call.
    last_error(
        unsafe { libc::bind(fd, (&raw.storage as *const libc::sockaddr_storage).cast(), raw.len) },
        (),
    )?;
    // SAFETY: plain syscall.
    last_error(unsafe { libc::listen(fd, BACKLOG) }, ())?;
    let local = local_address(fd)?;
    Ok(Rc::new(UringListener { descriptor, local }))
}

struct UringListener {
    descriptor: Rc<Descriptor>,
    local: SocketAddr,
}

impl ListenerBackend for UringListener {
    fn accept(&self) -> LocalBoxFuture<io::Result<(Rc<dyn StreamBackend>, SocketAddr)>> {
        let descriptor = self.descriptor.clone();
        Box::pin(async move {
            let reactor = descriptor.reactor.clone();
            loop {
                let mut keep = Box::new(RawAddress::empty());
                let entry = opcode::Accept::new(
                    types::Fd(descriptor.fd),
                    (&mut keep.storage as *mut libc::sockaddr_storage).cast(),
                    &mut keep.len,
                )
                .flags(libc::SOCK_CLOEXEC)
                .build();
                let (result, keep) = Operation::new(&reactor, entry, Some(keep)).await;
                if result == -libc::EINTR
                    || result == -libc::EAGAIN
                    || result == -libc::ECONNABORTED
                {
                    continue;
                }
                let fd = check(result)? as libc::c_int;
                let stream = Descriptor { reactor: reactor.clone(), fd };
                set_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY)?;
                let peer = keep
                    .expect("kept")
                    .downcast::<RawAddress>()
                    .expect("an address")
                    .to_socket_address()?;
                let stream: Rc<dyn StreamBackend> =
                    Rc::new(UringStream { descriptor: Rc::new(stream), peer });
                return Ok((stream, peer));
            }
        })
    }

    fn local_address(&self) -> SocketAddr {
        self.local
    }
}

pub(crate) fn connect(
    reactor: &Rc<Reactor>,
    address: SocketAddr,
) -> LocalBoxFuture<io::Result<Rc<dyn StreamBackend>>> {
    let reactor = reactor.clone();
    Box::pin(async move {
        let fd = new_socket(&address)?;
        let descriptor = Rc::new(Descriptor { reactor: reactor.clone(), fd });
        set_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY)?;
        let keep = Box::new(RawAddress::from(address));
        let entry = opcode::Connect::new(
            types::Fd(fd),
            (&keep.storage as *const libc::sockaddr_storage).cast(),
            keep.len,
        )
        .build();
        let (result, _) = Operation::new(&reactor, entry, Some(keep)).await;
        check(result)?;
        Ok(Rc::new(UringStream { descriptor, peer: address }) as Rc<dyn StreamBackend>)
    })
}

struct UringStream {
    descriptor: Rc<Descriptor>,
    peer: SocketAddr,
}

impl StreamBackend for UringStream {
    fn read(&self, buf: Vec<u8>) -> LocalBoxFuture<BufResult<usize>> {
        let descriptor = self.descriptor.clone();
        let mut buf = buf;
        Box::pin(async move {
            let reactor = descriptor.reactor.clone();
            loop {
                let len = buf.len().min(u32::MAX as usize) as u32;
                let entry =
                    opcode::Recv::new(types::Fd(descriptor.fd), buf.as_mut_ptr(), len).build();
                let (result, keep) = Operation::new(&reactor, entry, Some(Box::new(buf))).await;
                buf = *keep.expect("kept").downcast::<Vec<u8>>().expect("a Vec<u8>");
                if result == -libc::EINTR || result == -libc::EAGAIN {
                    continue;
                }
                return (check(result).map(|count| count as usize), buf);
            }
        })
    }

    fn write(&self, buf: Vec<u8>) -> LocalBoxFuture<BufResult<()>> {
        let len = buf.len();
        self.write_prefix(buf, len)
    }

    fn write_prefix(&self, buf: Vec<u8>, len: usize) -> LocalBoxFuture<BufResult<()>> {
        let descriptor = self.descriptor.clone();
        let mut buf = buf;
        Box::pin(async move {
            let reactor = descriptor.reactor.clone();
            let mut done = 0;
            while done < len {
                let chunk = (len - done).min(u32::MAX as usize) as u32;
                let entry =
                    opcode::Send::new(types::Fd(descriptor.fd), buf[done..].as_ptr(), chunk)
                        .flags(libc::MSG_NOSIGNAL)
                        .build();
                let (result, keep) = Operation::new(&reactor, entry, Some(Box::new(buf))).await;
                buf = *keep.expect("kept").downcast::<Vec<u8>>().expect("a Vec<u8>");
                match result {
                    result if result == -libc::EINTR || result == -libc::EAGAIN => {}
                    result if result < 0 => {
                        return (Err(io::Error::from_raw_os_error(-result)), buf)
                    }
                    count => done += count as usize,
                }
            }
            (Ok(()), buf)
        })
    }

    fn shutdown(&self) -> LocalBoxFuture<io::Result<()>> {
        let descriptor = self.descriptor.clone();
        Box::pin(async move {
            let entry = opcode::Shutdown::new(types::Fd(descriptor.fd), libc::SHUT_WR).build();
            plain(&descriptor.reactor, entry).await.map(drop)
        })
    }

    fn peer_address(&self) -> SocketAddr {
        self.peer
    }
}
