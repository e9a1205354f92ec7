//! A blocking rtnetlink client: one socket in the calling thread's network namespace, each
//! request answered before the next, no async runtime.
//!
//! Pod network setup is a handful of requests per pod, made from a blocking thread that may
//! be visiting the pod's namespace (a netlink socket belongs to the namespace of the thread
//! that opens it). An async connection per batch cost more than the requests: profiled over a
//! burst of 1,000 pods, building a current-thread runtime and an `rtnetlink` connection for
//! each batch and driving the replies through it was a quarter of the pod network's CPU. The
//! messages themselves still come from `rtnetlink`'s builders and `netlink-packet-route`.

use std::net::Ipv4Addr;

use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute, LinkMessage,
};
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use rtnetlink::{AddressMessageBuilder, LinkUnspec};

/// A failed netlink exchange.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket failed.
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel refused the request.
    #[error("{}", std::io::Error::from_raw_os_error(*errno))]
    Kernel {
        /// The error number the kernel returned (positive, `EEXIST`, ...).
        errno: i32,
    },
    /// The kernel's reply could not be parsed.
    #[error("cannot parse the kernel's reply: {0}")]
    Decode(String),
}

impl NetlinkError {
    /// The kernel said the object exists already.
    pub fn is_exists(&self) -> bool {
        matches!(self, NetlinkError::Kernel { errno } if *errno == nix::libc::EEXIST)
    }

    /// The kernel said there is no such device or object.
    pub fn is_missing(&self) -> bool {
        matches!(self, NetlinkError::Kernel { errno }
            if *errno == nix::libc::ENODEV || *errno == nix::libc::ENOENT)
    }
}

/// A route-netlink socket in the namespace of the thread that opened it.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
    receive: Vec<u8>,
    send: Vec<u8>,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

/// Replies to a link or address dump are a few hundred bytes; a page of them per read.
const RECEIVE_BUFFER: usize = 32 * 1024;

impl Netlink {
    /// Open a socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink {
            socket,
            sequence: 0,
            receive: Vec::with_capacity(RECEIVE_BUFFER),
            send: Vec::new(),
        })
    }

    /// Send `message` and wait for the kernel's acknowledgement; returns the replies that
    /// came before it.
    pub fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut request = NetlinkMessage::from(message);
        request.header.flags = flags | NLM_F_REQUEST | NLM_F_ACK;
        request.header.sequence_number = self.sequence;
        request.finalize();
        self.send.clear();
        self.send.resize(request.buffer_len(), 0);
        request.serialize(&mut self.send);
        self.socket.send(&self.send, 0)?;
        let mut replies = Vec::new();
        loop {
            self.receive.clear();
            let length = self.socket.recv(&mut self.receive, 0)?;
            let mut offset = 0;
            while offset < length.min(self.receive.len()) {
                let message =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.receive[offset..])
                        .map_err(|e| NetlinkError::Decode(e.to_string()))?;
                let size = message.header.length as usize;
                if size == 0 {
                    break;
                }
                offset += size.next_multiple_of(4);
                if message.header.sequence_number != self.sequence {
                    continue;
                }
                match message.payload {
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(replies),
                            Some(code) => Err(NetlinkError::Kernel { errno: -code.get() }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    _ => {}
                }
            }
        }
    }

    /// Create a link (`RTM_NEWLINK`, failing if it exists).
    pub fn add_link(&mut self, link: LinkMessage) -> Result<(), NetlinkError> {
        self.request(
            RouteNetlinkMessage::NewLink(link),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Create a link, or change the one of that name to match (`RTM_NEWLINK` without
    /// `NLM_F_EXCL`: its kind-specific settings included, which `RTM_SETLINK` ignores).
    pub fn create_or_change_link(&mut self, link: LinkMessage) -> Result<(), NetlinkError> {
        self.request(RouteNetlinkMessage::NewLink(link), NLM_F_CREATE)
            .map(drop)
    }

    /// Change a link (`RTM_SETLINK`), found by the message's index or, when that is 0, its name.
    pub fn set_link(&mut self, link: LinkMessage) -> Result<(), NetlinkError> {
        self.request(RouteNetlinkMessage::SetLink(link), 0)
            .map(drop)
    }

    /// Delete the interface called `name`; one that does not exist is not an error.
    pub fn delete_link(&mut self, name: &str) -> Result<(), NetlinkError> {
        let link = LinkUnspec::new_with_name(name).build();
        match self.request(RouteNetlinkMessage::DelLink(link), 0) {
            Ok(_) => Ok(()),
            Err(error) if error.is_missing() => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Give interface `index` the address `ip/prefix`; one it already has is fine.
    pub fn add_address(
        &mut self,
        index: u32,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let address = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(ip, prefix)
            .build();
        self.create_unless_present(RouteNetlinkMessage::NewAddress(address))
    }

    /// Add a route; one that exists is fine.
    pub fn add_route(&mut self, route: RouteMessage) -> Result<(), NetlinkError> {
        self.create_unless_present(RouteNetlinkMessage::NewRoute(route))
    }

    /// Create the object `message` describes; one that exists already is fine.
    fn create_unless_present(&mut self, message: RouteNetlinkMessage) -> Result<(), NetlinkError> {
        match self.request(message, NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => Ok(()),
            Err(error) if error.is_exists() => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// The attribute that keeps an interface from generating IPv6 addresses: with it set before
/// (or in the same request as) bringing the interface up, no link-local address appears, so
/// the interface sends no duplicate address detection, router solicitations or MLD reports.
pub fn no_ipv6_addresses() -> LinkAttribute {
    LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
        In6AddrGenMode::None,
    )])])
}
