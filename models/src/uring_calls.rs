//! `uring`'s downstream calls: a call frame's request goes out as an
//! `IORING_OP_SEND` linked to the `IORING_OP_RECV` of its whole reply
//! (`MSG_WAITALL`) and a linked timeout, on a connection from the ring's
//! own pool, so a call never stalls the ring: the frame is done when the
//! receive completes. The pool grows by a blocking loopback connect when
//! every connection is busy, and a connection goes back to it once its
//! reply came.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use io_uring::types::Timespec;
use io_uring::{opcode, squeue, types};
use workloads::call::{request, CALL_LEN};
use workloads::Frame;

use crate::downstream::{connect, CALL_SLACK};

/// A call waiting for its reply. The kernel reads the request from `buf`
/// and writes the reply into it until the receive completes.
struct Call {
    frame: Frame,
    conn: u64,
    fd: OwnedFd,
    buf: Box<[u8; 2 * CALL_LEN]>,
    _limit: Box<Timespec>,
}

/// A ring's calls in flight and its idle downstream connections.
pub struct UringCalls {
    addr: Option<SocketAddr>,
    idle: Vec<OwnedFd>,
    pending: HashMap<u64, Call>,
    next: u64,
}

impl Drop for UringCalls {
    fn drop(&mut self) {
        // Only when a ring fails with calls in flight: the kernel may still
        // write their replies, so their buffers are leaked, never freed.
        for (_, call) in self.pending.drain() {
            std::mem::forget(call.buf);
        }
    }
}

impl UringCalls {
    /// No calls yet; calls go to `addr` (none: every call fails).
    pub fn new(addr: Option<SocketAddr>) -> Self {
        UringCalls {
            addr,
            idle: Vec::new(),
            pending: HashMap::new(),
            next: 0,
        }
    }

    /// No call is in flight.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Starts `frame`'s call for connection `conn`: the send, receive and
    /// timeout to submit together (linked, in this order), their
    /// `user_data` the call's id ORed into `reply` (the receive) or `aux`
    /// (the others, whose completions say nothing). `None`: no downstream
    /// connection could be had, and the call failed at once.
    pub fn start(
        &mut self,
        frame: Frame,
        conn: u64,
        reply: u64,
        aux: u64,
    ) -> Option<[squeue::Entry; 3]> {
        let fd = match self.idle.pop() {
            Some(fd) => fd,
            None => OwnedFd::from(connect(self.addr?).ok()?),
        };
        let id = self.next;
        self.next += 1;
        let mut buf = Box::new([0u8; 2 * CALL_LEN]);
        buf[..CALL_LEN].copy_from_slice(&request(frame.amount, frame.seq));
        let limit = Duration::from_micros(frame.amount.into()) + CALL_SLACK;
        let limit = Box::new(
            Timespec::new()
                .sec(limit.as_secs())
                .nsec(limit.subsec_nanos()),
        );
        let raw = types::Fd(fd.as_raw_fd());
        let send = opcode::Send::new(raw, buf.as_ptr(), CALL_LEN as u32)
            .flags(nix::libc::MSG_NOSIGNAL)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(aux | id);
        let recv = opcode::Recv::new(raw, buf[CALL_LEN..].as_mut_ptr(), CALL_LEN as u32)
            .flags(nix::libc::MSG_WAITALL)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(reply | id);
        let timeout = opcode::LinkTimeout::new(&*limit)
            .build()
            .user_data(aux | id);
        self.pending.insert(
            id,
            Call {
                frame,
                conn,
                fd,
                buf,
                _limit: limit,
            },
        );
        Some([send, recv, timeout])
    }

    /// The receive of call `id`'s reply completed with `res`: its frame,
    /// its connection, and whether the reply came and was the request's.
    pub fn finish(&mut self, id: u64, res: i32) -> Option<(Frame, u64, bool)> {
        let call = self.pending.remove(&id)?;
        let (req, got) = call.buf.split_at(CALL_LEN);
        let answered = res == CALL_LEN as i32 && req == got;
        if answered {
            self.idle.push(call.fd);
        }
        Some((call.frame, call.conn, answered))
    }
}
