//! Keep-alive HTTP/1.1 connections to one backend address.
//!
//! hyper's low-level client (`hyper::client::conn::http1`) with a small idle list,
//! rather than `hyper_util`'s pooled client, for two reasons that matter here:
//!
//! - Connecting is a step of its own, so when a backend refuses the connection the
//!   request, body and all, is still in hand and can go to another backend without
//!   having been buffered. (`hyper_util`'s client consumes the request even when
//!   nothing was sent.) This is what lets a rollback lose no request while the
//!   candidate process is being stopped.
//! - A connection goes back to the idle list when its response body has been read to
//!   the end, with no task spawned per request.
//!
//! # Guarantees
//! - [`SendError::NotSent`] means no byte of the request reached the backend: the
//!   connection was refused, or the pooled connection had closed before it took the
//!   request.
//! - A connection is reused only after its previous exchange finished completely,
//!   with a response whose framing was complete and unambiguous (the callers
//!   decide: `crate::fast` for plain sockets, `gateway::reusable` and hyper's
//!   client for hyper connections).
//! - A plain connection is taken from the idle list only if nothing arrived on it
//!   while it was idle: a byte the backend sent after its response (a second answer
//!   to a request it read as two) would otherwise be read as the answer to the next
//!   client's request. Such a connection, and one the backend closed, is dropped.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Idle connections kept per backend and worker thread; more are closed.
const MAX_IDLE: usize = 512;

/// Idle lists per pool: one per worker thread (more workers share them).
pub(crate) const SLOTS: usize = 16;

thread_local! {
    /// The gateway worker this thread is (0 on any other thread).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks this thread as gateway worker `n`: it uses its own idle lists, so a
/// connection is reused on the thread (and runtime) that drives it.
pub(crate) fn set_worker(n: usize) {
    WORKER.set(n);
}

/// This thread's slot in per-worker structures.
pub(crate) fn slot() -> usize {
    WORKER.get() % SLOTS
}

/// How long a new connection may take before the backend counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The sending half of one backend connection.
pub(crate) type Conn = http1::SendRequest<Incoming>;

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// Nothing was sent; the request comes back untouched.
    NotSent(Box<Request<Incoming>>, String),
    /// The request was (at least partly) sent, then the exchange failed.
    Failed(hyper::Error),
}

/// Connections to one backend address.
#[derive(Debug)]
pub(crate) struct Pool {
    /// Where the backend listens.
    pub(crate) addr: SocketAddr,
    /// Connections whose last exchange finished, per worker thread, most recent
    /// last. Reused last-in first-out, as nginx does: few connections stay hot
    /// (in the backend's caches too) and the rest can idle out. Each list is only
    /// touched by its own thread (and `retire`), so its lock is never contended.
    idle: [Mutex<VecDeque<Conn>>; SLOTS],
    /// The fast path's idle connections (plain sockets, no HTTP state: each was
    /// left between two exchanges), per worker thread, most recent last.
    raw: [Mutex<Vec<TcpStream>>; SLOTS],
    /// Set when the address left the routes: returned connections are closed.
    retired: AtomicBool,
}

impl Pool {
    pub(crate) fn new(addr: SocketAddr) -> Pool {
        Pool {
            addr,
            idle: Default::default(),
            raw: Default::default(),
            retired: AtomicBool::new(false),
        }
    }

    /// Sends `req` on an idle connection, else on a new one.
    pub(crate) async fn send(
        &self,
        mut req: Request<Incoming>,
    ) -> Result<(Response<Incoming>, Conn), SendError> {
        while let Some(mut conn) = self.take_idle() {
            if !conn.is_ready() && conn.ready().await.is_err() {
                continue;
            }
            match conn.try_send_request(req).await {
                Ok(resp) => return Ok((resp, conn)),
                Err(mut e) => match e.take_message() {
                    // The connection closed before it took the request: try another.
                    Some(back) => req = back,
                    None => return Err(SendError::Failed(e.into_error())),
                },
            }
        }

        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err(SendError::NotSent(
                        Box::new(req),
                        format!("connect {}: {e}", self.addr),
                    ));
                }
                Err(_) => {
                    return Err(SendError::NotSent(
                        Box::new(req),
                        format!("connect {}: timed out after {CONNECT_TIMEOUT:?}", self.addr),
                    ));
                }
            };
        let _ = stream.set_nodelay(true);
        let (mut conn, driver) = match http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => {
                return Err(SendError::NotSent(
                    Box::new(req),
                    format!("handshake {}: {e}", self.addr),
                ));
            }
        };
        tokio::spawn(async move {
            // Errors surface on the request that was in flight; nothing to add here.
            let _ = driver.await;
        });
        match conn.try_send_request(req).await {
            Ok(resp) => Ok((resp, conn)),
            Err(mut e) => match e.take_message() {
                Some(back) => Err(SendError::NotSent(
                    Box::new(back),
                    format!("{}: {}", self.addr, e.error()),
                )),
                None => Err(SendError::Failed(e.into_error())),
            },
        }
    }

    /// Returns a connection whose exchange finished completely.
    pub(crate) fn put_back(&self, conn: Conn) {
        if conn.is_closed() || self.retired.load(Ordering::Relaxed) {
            return;
        }
        let mut idle = self.idle[slot()].lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push_back(conn);
        }
    }

    /// A new plain connection for the fast path.
    pub(crate) async fn connect_raw(&self) -> Result<TcpStream, String> {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Ok(Err(e)) => Err(format!("connect {}: {e}", self.addr)),
            Err(_) => Err(format!(
                "connect {}: timed out after {CONNECT_TIMEOUT:?}",
                self.addr
            )),
        }
    }

    /// The most recently returned plain connection of this worker on which nothing
    /// arrived while it was idle, if any.
    pub(crate) fn take_raw(&self) -> Option<TcpStream> {
        loop {
            let stream = self.raw[slot()]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()?;
            if is_quiet(&stream) {
                return Some(stream);
            }
        }
    }

    /// Returns a plain connection whose exchange finished completely.
    pub(crate) fn put_raw(&self, stream: TcpStream) {
        if self.retired.load(Ordering::Relaxed) {
            return;
        }
        let mut raw = self.raw[slot()].lock().unwrap_or_else(|p| p.into_inner());
        if raw.len() < MAX_IDLE {
            raw.push(stream);
        }
    }

    /// Closes the idle connections and every one returned from now on.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        for raw in &self.raw {
            let drained: Vec<TcpStream> =
                std::mem::take(&mut *raw.lock().unwrap_or_else(|p| p.into_inner()));
            drop(drained);
        }
        for idle in &self.idle {
            let drained: VecDeque<Conn> =
                std::mem::take(&mut *idle.lock().unwrap_or_else(|p| p.into_inner()));
            drop(drained);
        }
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle[slot()].lock().unwrap_or_else(|p| p.into_inner());
        while let Some(conn) = idle.pop_back() {
            if !conn.is_closed() {
                return Some(conn);
            }
        }
        None
    }
}

/// The pools of one [`crate::Router`]'s models, by address: models whose servers
/// share an address (a server packing several models) share its connections, as
/// one gateway would. A pool is retired when the last model using it lets it go.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pools: Mutex<HashMap<SocketAddr, (Arc<Pool>, usize)>>,
}

impl Shared {
    /// The pool of `addr`, for one more user.
    pub(crate) fn take(&self, addr: SocketAddr) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pools
            .entry(addr)
            .or_insert_with(|| (Arc::new(Pool::new(addr)), 0));
        entry.1 += 1;
        entry.0.clone()
    }

    /// One user less of `addr`'s pool; the last one retires it.
    pub(crate) fn release(&self, addr: SocketAddr) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = pools.get_mut(&addr) {
            entry.1 -= 1;
            if entry.1 == 0 {
                let (pool, _) = pools.remove(&addr).expect("just found");
                pool.retire();
            }
        }
    }
}

/// Whether nothing is waiting to be read on an idle connection (no stray bytes, no
/// end of stream). Costs no system call when the socket was not readable since its
/// last read returned "would block".
fn is_quiet(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}
