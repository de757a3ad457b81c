//! The listener: an accept loop of our own around hyper, so a fault can reset a connection
//! (SO_LINGER 0, then close) instead of answering, and a clock that moves tasks on time.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use chrono::Utc;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::api;
use crate::control::PeerAddr;
use crate::faults::FaultKind;
use crate::state::Simulator;

/// Binds 127.0.0.1 on a free port and serves until shut down.
pub(crate) async fn serve(
    sim: Arc<Simulator>,
) -> anyhow::Result<(SocketAddr, watch::Sender<bool>, Vec<JoinHandle<()>>)> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the Octopus simulator to 127.0.0.1")?;
    let addr = listener.local_addr()?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let router = api::router(sim.clone());
    let accept = tokio::spawn(accept_loop(
        listener,
        sim.clone(),
        router,
        shutdown_rx.clone(),
    ));
    let clock = tokio::spawn(run_clock(sim, shutdown_rx));
    Ok((addr, shutdown, vec![accept, clock]))
}

async fn accept_loop(
    listener: TcpListener,
    sim: Arc<Simulator>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    // Dropping the set at shutdown aborts every open connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, sim.clone(), router.clone()));
                }
                Err(error) => tracing::warn!(%error, "octopus-sim: accept failed"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Per connection: set when a Reset fault matches, so the stream closes with a RST.
#[derive(Clone, Default)]
struct ResetSignal {
    requested: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    sim: Arc<Simulator>,
    router: Router,
) {
    let reset = ResetSignal::default();
    let io = TokioIo::new(ResettableStream {
        stream,
        reset: reset.requested.clone(),
    });
    let service = hyper::service::service_fn({
        let reset = reset.clone();
        move |request: Request<Incoming>| {
            handle_request(request, peer, sim.clone(), router.clone(), reset.clone())
        }
    });
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "octopus-sim: connection ended with an error");
            }
        }
        // Dropping the connection drops the stream, which then closes with a RST.
        _ = reset.notify.notified() => {}
    }
}

async fn handle_request(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    sim: Arc<Simulator>,
    router: Router,
    reset: ResetSignal,
) -> Result<Response<Body>, Infallible> {
    // The query may hold an API key: only the method and path are ever logged.
    tracing::debug!(method = %request.method(), path = request.uri().path(), "octopus-sim request");
    request.extensions_mut().insert(PeerAddr(peer));
    let fault = sim.take_fault(request.method(), request.uri().path());
    let delay = match fault {
        Some(FaultKind::Status(status)) => {
            return Ok(api::injected_status(status, &sim.identity.version));
        }
        Some(FaultKind::Reset) => {
            reset.requested.store(true, Ordering::SeqCst);
            reset.notify.notify_one();
            return Ok(std::future::pending().await);
        }
        Some(FaultKind::Delay(delay)) => Some(delay),
        None => None,
    };
    // Handled on a task of its own, so a client hanging up does not cancel a change half-way.
    let handler_sim = sim.clone();
    let handling = tokio::spawn(async move {
        let request = match delay {
            Some(delay) => {
                // A real server has the (small) body once the request is in; reading it before the
                // wait lets the change apply late even when the client is gone by then (killed,
                // or timed out and closed the connection).
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(Body::new(body), usize::MAX)
                    .await
                    .unwrap_or_default();
                tokio::time::sleep(delay).await;
                let method = parts.method.to_string();
                let path = parts.uri.path().to_string();
                let request = Request::from_parts(parts, Body::from(body));
                let response = TowerToHyperService::new(router).call(request).await;
                // The witness a test waits for: the delayed request has now been handled.
                handler_sim.note(
                    "delayed_request_handled",
                    serde_json::json!({ "method": method, "path": path }),
                );
                return response;
            }
            None => request.map(Body::new),
        };
        TowerToHyperService::new(router).call(request).await
    });
    match handling.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(never)) => match never {},
        Err(join_error) => {
            tracing::error!(%join_error, "octopus-sim: request handler panicked");
            Ok(api::injected_status(500, &sim.identity.version))
        }
    }
}

/// A TCP stream that is reset (SO_LINGER 0) rather than shut down when dropped after a Reset
/// fault.
struct ResettableStream {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst)
            && let Err(error) = self.stream.set_zero_linger()
        {
            tracing::warn!(%error, "octopus-sim: could not set SO_LINGER 0 for a reset");
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Moves tasks on at their deadlines even when nobody asks, so `task_started` and
/// `task_finished` events arrive on time. Requests also apply time, so this only adds
/// punctuality.
async fn run_clock(sim: Arc<Simulator>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let next = sim.with(|state, _, _| state.next_deadline());
        let sleep = async {
            match next {
                Some(due) => {
                    let wait = (due - Utc::now()).to_std().unwrap_or_default();
                    tokio::time::sleep(wait).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = sim.clock_wake.notified() => {}
            _ = sleep => {}
        }
    }
}
