//! TLS as TDS 7.x carries it: the handshake records travel inside PRELOGIN
//! packets, then TLS runs directly over the socket; TDS 8.0 (strict) starts
//! with TLS and carries PRELOGIN inside it. The certificate is a self-signed
//! one made at start-up, as SQL Server makes one when none is configured, so
//! clients must trust it explicitly (tiberius `trust_cert()`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls;

use crate::tds::packet::{HEADER_LEN, PacketHeader, PacketType, STATUS_EOM};

/// The server's certificate and rustls configurations.
#[derive(Clone)]
pub struct TlsIdentity {
    /// TDS 7.x: TLS 1.2 inside PRELOGIN packets.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// TDS 8.0 (`Encrypt=Strict`): TLS 1.2/1.3 before PRELOGIN, ALPN `tds/8.0`.
    pub strict_acceptor: tokio_rustls::TlsAcceptor,
    /// The certificate in PEM form, so a client can pin it.
    pub certificate_pem: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

/// The subject SQL Server gives the certificate it generates at start-up when none is
/// provisioned ("A self-generated certificate was successfully loaded for encryption." in the
/// errorlog; MicrosoftDocs/sql-docs connect/ado-net/encryption-and-certificate-validation.md,
/// microsoft/CSS_SQL_Networking_Tools wiki "SQL Server Certificates"). It names no host, so a
/// client that validates fails on the chain and on the name, as against a real default install.
pub const FALLBACK_CERTIFICATE_NAME: &str = "SSL_Self_Signed_Fallback";

/// ALPN protocol a TDS 8.0 client offers (MS-TDS 2.2.6.5 / tiberius `TDS_ALPN_PROTOCOL_NAME`).
pub const TDS8_ALPN: &[u8] = b"tds/8.0";

/// Makes SQL Server's fallback certificate (self-signed, `CN=SSL_Self_Signed_Fallback`, no
/// subject alternative name) and the server configurations. TDS 7.x clients negotiate TLS 1.2
/// inside PRELOGIN (SQL Server offers TLS 1.3 only with TDS 8.0 strict encryption), and some
/// (python-tds) ask for TLS 1.2 explicitly.
pub fn make_identity() -> anyhow::Result<TlsIdentity> {
    let signing_key = rcgen::KeyPair::generate().context("generating the lab server's key")?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).context("certificate parameters")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, FALLBACK_CERTIFICATE_NAME);
    let cert = params
        .self_signed(&signing_key)
        .context("generating the lab server's self-signed certificate")?;
    let cert_der = cert.der().clone();
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .context("TLS 1.2 with the aws-lc-rs provider")?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der.clone_key())
        .context("loading the self-signed certificate")?;
    // No session tickets: nothing may follow the handshake inside PRELOGIN framing.
    config.send_tls13_tickets = 0;
    // TDS 8.0: TLS first, 1.2 or 1.3, ALPN "tds/8.0" ([MS-TDS] 3.2.5.1; SQL Server 2022's
    // "TDS 8.0" page in the sql-docs: strict encryption, TLS 1.3 supported).
    let mut strict = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS 1.2/1.3 with the aws-lc-rs provider")?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key_der)
        .context("loading the self-signed certificate")?;
    strict.alpn_protocols = vec![TDS8_ALPN.to_vec()];
    Ok(TlsIdentity {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        strict_acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(strict)),
        certificate_pem: cert.pem(),
    })
}

/// Largest PRELOGIN packet used to carry handshake records.
const HANDSHAKE_PACKET_SIZE: usize = 4096;

/// A socket wrapper that, during the TLS handshake, unwraps incoming PRELOGIN
/// packets into raw TLS records and wraps outgoing records into PRELOGIN
/// packets; after [`PreloginFramed::handshake_done`] it passes bytes through.
pub struct PreloginFramed<S> {
    inner: S,
    in_handshake: bool,
    header: [u8; HEADER_LEN],
    header_filled: usize,
    body_remaining: usize,
    outgoing: Vec<u8>,
    framed: Vec<u8>,
    framed_sent: usize,
}

impl<S> PreloginFramed<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            in_handshake: true,
            header: [0; HEADER_LEN],
            header_filled: 0,
            body_remaining: 0,
            outgoing: Vec::new(),
            framed: Vec::new(),
            framed_sent: 0,
        }
    }

    /// Switches to pass-through: TLS records now go over the socket unframed.
    pub fn handshake_done(&mut self) {
        self.in_handshake = false;
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Wraps buffered handshake bytes into PRELOGIN packets, the last one end-of-message.
    fn frame_outgoing(&mut self) {
        let chunks: Vec<&[u8]> = self
            .outgoing
            .chunks(HANDSHAKE_PACKET_SIZE - HEADER_LEN)
            .collect();
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.iter().enumerate() {
            let header = PacketHeader {
                packet_type: PacketType::PreLogin,
                status: if i == last { STATUS_EOM } else { 0 },
                length: (chunk.len() + HEADER_LEN) as u16,
                spid: 0,
                packet_id: (i + 1) as u8,
            };
            self.framed.extend_from_slice(&header.encode());
            self.framed.extend_from_slice(chunk);
        }
        self.outgoing.clear();
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl<S: AsyncRead + Unpin> AsyncRead for PreloginFramed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.in_handshake {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        while this.body_remaining == 0 {
            while this.header_filled < HEADER_LEN {
                let mut header_buf = ReadBuf::new(&mut this.header[this.header_filled..]);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut header_buf))?;
                let n = header_buf.filled().len();
                if n == 0 {
                    if this.header_filled == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a PRELOGIN packet header",
                    )));
                }
                this.header_filled += n;
            }
            let header = PacketHeader::decode(&this.header);
            this.header_filled = 0;
            if header.packet_type != PacketType::PreLogin {
                return Poll::Ready(Err(invalid(
                    "expected a PRELOGIN packet during the TLS handshake",
                )));
            }
            this.body_remaining = (header.length as usize)
                .checked_sub(HEADER_LEN)
                .ok_or_else(|| invalid("PRELOGIN packet shorter than its header"))?;
        }
        let want = this.body_remaining.min(buf.remaining());
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(want));
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut limited))?;
        let n = limited.filled().len();
        if n == 0 && want > 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a PRELOGIN packet",
            )));
        }
        buf.advance(n);
        this.body_remaining -= n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PreloginFramed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.in_handshake && this.framed.is_empty() {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        if !this.in_handshake {
            ready!(this.drain_framed(cx))?;
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.outgoing.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.outgoing.is_empty() {
            this.frame_outgoing();
        }
        ready!(this.drain_framed(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: AsyncWrite + Unpin> PreloginFramed<S> {
    fn drain_framed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.framed_sent < self.framed.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.framed[self.framed_sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "socket closed",
                )));
            }
            self.framed_sent += n;
        }
        self.framed.clear();
        self.framed_sent = 0;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn handshake_bytes_are_framed_and_unframed() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut framed = PreloginFramed::new(server);
        let mut client = client;
        // server -> client: one flush becomes PRELOGIN packets
        let record = vec![0x16u8; 5000];
        framed.write_all(&record).await.unwrap();
        framed.flush().await.unwrap();
        let mut wire = vec![0u8; 5000 + 2 * HEADER_LEN];
        client.read_exact(&mut wire).await.unwrap();
        let first = PacketHeader::decode(wire[..8].try_into().unwrap());
        assert_eq!(first.packet_type, PacketType::PreLogin);
        assert_eq!(first.status, 0);
        assert_eq!(first.length as usize, HANDSHAKE_PACKET_SIZE);
        let second = PacketHeader::decode(wire[4096..4104].try_into().unwrap());
        assert_eq!(second.status, STATUS_EOM);
        // client -> server: packet headers are stripped
        let mut packet = PacketHeader {
            packet_type: PacketType::PreLogin,
            status: STATUS_EOM,
            length: 11,
            spid: 0,
            packet_id: 1,
        }
        .encode()
        .to_vec();
        packet.extend_from_slice(&[1, 2, 3]);
        client.write_all(&packet).await.unwrap();
        let mut got = [0u8; 3];
        framed.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [1, 2, 3]);
        // after the handshake, bytes pass through
        framed.handshake_done();
        client.write_all(&[9, 9]).await.unwrap();
        let mut raw = [0u8; 2];
        framed.read_exact(&mut raw).await.unwrap();
        assert_eq!(raw, [9, 9]);
    }

    #[tokio::test]
    async fn other_packet_types_are_refused_during_handshake() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut framed = PreloginFramed::new(server);
        client
            .write_all(&[1, 1, 0, 9, 0, 0, 1, 0, 0])
            .await
            .unwrap();
        let mut buf = [0u8; 4];
        assert!(framed.read(&mut buf).await.is_err());
    }

    #[test]
    fn identity_is_made() {
        let identity = make_identity().unwrap();
        assert!(
            identity
                .certificate_pem
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
    }
}
