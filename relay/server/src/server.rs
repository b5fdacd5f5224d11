//! Socket serving: HTTP/1.1 and HTTP/2 via hyper with a header read timeout (slow-header
//! clients are cut), a send timeout (clients that stop reading are cut, [`SendTimeout`]),
//! optional TLS (rustls), the client address for per-IP limits, and graceful shutdown that
//! lets in-flight requests (uploads) finish.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower::ServiceExt;

use crate::error::{RelayError, Result};

/// Builds a TLS acceptor from PEM certificate chain and private key files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let bad = |what: &str, e: &dyn std::fmt::Display| RelayError::Storage(format!("{what}: {e}"));
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("TLS certificate", &e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad("TLS certificate", &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("TLS key", &e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS config", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("TLS config", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn spawn_conn<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    router: &Router,
    addr: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = router
        .clone()
        .map_request(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(addr));
            req
        });
    let conn = builder
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(svc))
        .into_owned();
    let conn = watcher.watch(conn);
    tokio::spawn(async move {
        let _ = conn.await;
    });
}

/// How long shutdown waits for in-flight requests before giving up.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A connection's socket whose writes fail with `TimedOut` when they make no progress for
/// `timeout` (docs/relay.md "Streaming", `--send-timeout-secs`): hyper then drops the
/// connection, and with it the response body and the piece it held. A client that reads
/// slowly but steadily is not cut (every write that moves bytes restarts the clock); one that
/// stops reading is, so a stalled reader holds its memory for at most `timeout`.
#[derive(Debug)]
pub struct SendTimeout<I> {
    inner: I,
    timeout: Duration,
    /// Armed while a write is pending.
    stall: Option<Pin<Box<Sleep>>>,
}

impl<I> SendTimeout<I> {
    /// Wraps `inner`.
    pub fn new(inner: I, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stall: None,
        }
    }

    /// Called with a write's outcome: clears the clock on progress, starts or checks it when
    /// the socket is full.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.stall = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let stall = self.stall.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(Instant::now() + timeout))
                });
                if stall.as_mut().poll(cx).is_ready() {
                    self.stall = None;
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client stopped reading (send timeout)",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for SendTimeout<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for SendTimeout<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, poll)
    }
}

/// The socket timeouts of [`serve_with`].
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Request headers must arrive within this (and a TLS handshake complete).
    pub header: Duration,
    /// Longest a write to the client may make no progress ([`SendTimeout`]).
    pub send: Duration,
}

/// [`serve_with`] with the default send timeout ([`crate::config::Config::new`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let timeouts = Timeouts {
        header: header_timeout,
        send: crate::config::DEFAULT_SEND_TIMEOUT,
    };
    serve_with(listener, router, timeouts, tls, shutdown).await;
}

/// Serves `router` on `listener` (over TLS when `tls` is set) until `shutdown` resolves, then
/// drains connections.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let header_timeout = timeouts.header;
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            acc = listener.accept() => match acc {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let watcher = graceful.watcher();
        // Under TLS too: the timeout watches the TCP socket itself.
        let stream = SendTimeout::new(stream, timeouts.send);
        match &tls {
            None => spawn_conn(&builder, stream, &router, addr, watcher),
            Some(acceptor) => {
                let (acceptor, builder, router) =
                    (acceptor.clone(), builder.clone(), router.clone());
                tokio::spawn(async move {
                    // The TLS handshake is bounded by the header timeout too.
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            spawn_conn(&builder, tls_stream, &router, addr, watcher)
                        }
                        _ => tracing::debug!("TLS handshake failed or timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period elapsed");
    }
}
