//! The listener and each connection's life: PRELOGIN, TLS as negotiated,
//! LOGIN7, then messages (SQL batches, RPC, transaction manager, ATTENTION)
//! handed to the session until the client leaves.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::engine::errors::{self, SqlError};
use crate::engine::session::request_body;
use crate::engine::{Attention, Engine, MAX_OPERATIONS, SERVER_NAME, Session};
use crate::tds::login7::{self, Login7};
use crate::tds::packet::{
    DEFAULT_PACKET_SIZE, Message, PacketFramer, PacketType, read_message, write_message,
};
use crate::tds::prelogin::{self, Encryption};
use crate::tds::response::Outbound;
use crate::tds::token::{self, done_status};
use crate::tds::types::DEFAULT_COLLATION;
use crate::tls::{PreloginFramed, TlsIdentity, make_identity};
use crate::{SqlLogin, SqlServerConfig, TlsSupport};

/// A byte stream a session can run over: plain TCP or TLS.
trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

pub struct Server {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
    pub tls: Option<TlsIdentity>,
    accept_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    connections: Arc<Mutex<JoinSet<()>>>,
}

pub async fn start(config: SqlServerConfig) -> anyhow::Result<Arc<Server>> {
    let engine = Arc::new(Engine::new(&config)?);
    let tls = match config.tls {
        TlsSupport::Supported => Some(make_identity()?),
        TlsSupport::NotSupported => None,
    };
    let ip = config
        .options
        .listen
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let listener = TcpListener::bind((ip, 0))
        .await
        .with_context(|| format!("binding {ip}:0"))?;
    let addr = listener.local_addr()?;
    let connections = Arc::new(Mutex::new(JoinSet::new()));
    let accept_task = {
        let (engine, tls, connections) = (engine.clone(), tls.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let (socket, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        continue;
                    }
                };
                let (engine, tls) = (engine.clone(), tls.clone());
                let mut set = connections.lock().await;
                while set.try_join_next().is_some() {}
                set.spawn(async move {
                    if let Err(e) = serve_connection(engine, tls, socket).await {
                        tracing::debug!("connection ended: {e:#}");
                    }
                });
            }
        })
    };
    Ok(Arc::new(Server {
        addr,
        engine,
        tls,
        accept_task: std::sync::Mutex::new(Some(accept_task)),
        connections,
    }))
}

impl Server {
    pub async fn shutdown(&self) {
        let accept = self
            .accept_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = accept {
            task.abort();
            let _ = task.await;
        }
        self.connections.lock().await.shutdown().await;
        // File operations stop at their next progress step once their session is gone.
        if let Ok(all) = self.engine.operations.acquire_many(MAX_OPERATIONS).await {
            drop(all);
        }
    }
}

/// What the server answers to the client's ENCRYPTION option.
fn negotiate(client: Encryption, tls_available: bool) -> Encryption {
    match (client, tls_available) {
        (_, false) => Encryption::NotSupported,
        (Encryption::Off, true) => Encryption::Off,
        (Encryption::NotSupported, true) => Encryption::NotSupported,
        (Encryption::On | Encryption::Required, true) => Encryption::On,
    }
}

async fn serve_connection(
    engine: Arc<Engine>,
    tls: Option<TlsIdentity>,
    mut tcp: TcpStream,
) -> anyhow::Result<()> {
    tcp.set_nodelay(true)?;
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 {
        return Ok(());
    }
    // TDS 8.0 (strict encryption) opens with a TLS ClientHello (record type 0x16) instead of a
    // PRELOGIN packet (0x12); PRELOGIN and everything after it then travel inside TLS.
    if first[0] == 0x16 {
        engine.emit(
            "tds8_connection",
            serde_json::json!({ "tls": tls.is_some() }),
        );
        let Some(identity) = tls else {
            anyhow::bail!("a TDS 8.0 client on a server without TLS");
        };
        let mut tls_stream = identity
            .strict_acceptor
            .accept(tcp)
            .await
            .context("TDS 8.0 TLS handshake")?;
        let Some(message) = read_message(&mut tls_stream).await? else {
            return Ok(());
        };
        if message.packet_type != PacketType::PreLogin {
            anyhow::bail!("expected PRELOGIN, got {:?}", message.packet_type);
        }
        prelogin::parse_client(&message.payload).map_err(anyhow::Error::msg)?;
        let mut framer = PacketFramer::new(DEFAULT_PACKET_SIZE, 0);
        let version = &engine.version;
        write_message(
            &mut tls_stream,
            &mut framer,
            PacketType::TabularResult,
            &prelogin::build_server(
                (version.major, version.minor, version.build),
                Encryption::On,
            ),
        )
        .await?;
        let login_message = read_message(&mut tls_stream).await?;
        return login(engine, Box::new(tls_stream), login_message).await;
    }
    let Some(message) = read_message(&mut tcp).await? else {
        return Ok(());
    };
    if message.packet_type != PacketType::PreLogin {
        anyhow::bail!("expected PRELOGIN, got {:?}", message.packet_type);
    }
    let client = prelogin::parse_client(&message.payload).map_err(anyhow::Error::msg)?;
    let negotiated = negotiate(client.encryption, tls.is_some());
    let mut framer = PacketFramer::new(DEFAULT_PACKET_SIZE, 0);
    let version = &engine.version;
    write_message(
        &mut tcp,
        &mut framer,
        PacketType::TabularResult,
        &prelogin::build_server((version.major, version.minor, version.build), negotiated),
    )
    .await?;

    let (stream, login_message): (Box<dyn Duplex>, Option<Message>) = match (negotiated, tls) {
        (Encryption::Off | Encryption::On, Some(identity)) => {
            let mut tls_stream = identity
                .acceptor
                .accept(PreloginFramed::new(tcp))
                .await
                .context("TLS handshake")?;
            tls_stream.get_mut().0.handshake_done();
            let login = read_message(&mut tls_stream).await?;
            if negotiated == Encryption::Off {
                // login-only encryption: plain TDS from here on
                let (framed, _) = tls_stream.into_inner();
                (Box::new(framed.into_inner()), login)
            } else {
                (Box::new(tls_stream), login)
            }
        }
        _ => {
            let login = read_message(&mut tcp).await?;
            (Box::new(tcp), login)
        }
    };
    login(engine, stream, login_message).await
}

async fn login(
    engine: Arc<Engine>,
    stream: Box<dyn Duplex>,
    login_message: Option<Message>,
) -> anyhow::Result<()> {
    let Some(login_message) = login_message else {
        return Ok(());
    };
    if login_message.packet_type != PacketType::Login7 {
        anyhow::bail!("expected LOGIN7, got {:?}", login_message.packet_type);
    }
    let login = login7::parse(&login_message.payload).map_err(anyhow::Error::msg)?;
    run_session(engine, stream, login).await
}

/// Sends a failed login's error and closes.
async fn refuse_login(stream: &mut Box<dyn Duplex>, errs: &[SqlError]) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    for e in errs {
        token::message(
            &mut buf,
            &token::ServerMessage {
                number: e.number,
                state: e.state,
                class: e.class,
                text: e.text.clone(),
                server: SERVER_NAME.to_string(),
                procedure: String::new(),
                line: 1,
            },
        );
    }
    token::done(&mut buf, token::TOKEN_DONE, done_status::ERROR, 0, 0);
    let mut framer = PacketFramer::new(DEFAULT_PACKET_SIZE, 0);
    write_message(stream, &mut framer, PacketType::TabularResult, &buf).await?;
    stream.shutdown().await.ok();
    Ok(())
}

fn authenticate(engine: &Engine, login: &Login7) -> Result<(SqlLogin, String), Vec<SqlError>> {
    if login.integrated_security {
        engine.emit(
            "login_failed",
            serde_json::json!({ "login": login.username, "reason": "integrated authentication" }),
        );
        return Err(vec![errors::integrated_login_refused()]);
    }
    let account = engine
        .authenticate(&login.username, &login.password)
        .map_err(|e| vec![e])?;
    let database = if login.database.is_empty() {
        "master".to_string()
    } else {
        login.database.clone()
    };
    match engine.canonical_database_name(&database) {
        // A login whose database holds no user for it: 4060, then 18456, as SQL Server answers.
        Some(name) if !engine.may_access_database(&account.name, &name) => {
            engine.emit(
                "login_failed",
                serde_json::json!({ "login": login.username, "reason": "no user in the database" }),
            );
            Err(vec![
                errors::cannot_open_login_database(&database),
                errors::login_failed(&login.username),
            ])
        }
        Some(name) => Ok((account, name)),
        None => {
            engine.emit(
                "login_failed",
                serde_json::json!({ "login": login.username, "reason": "cannot open database" }),
            );
            Err(vec![
                errors::cannot_open_login_database(&database),
                errors::login_failed(&login.username),
            ])
        }
    }
}

/// Serves a logged-in client, writing tokens as its TDS version reads them.
async fn run_session(
    engine: Arc<Engine>,
    stream: Box<dyn Duplex>,
    login: Login7,
) -> anyhow::Result<()> {
    let tds_version = login.tds_version.min(token::TDS_7_4);
    token::TDS_VERSION
        .scope(tds_version, serve_session(engine, stream, login))
        .await
}

async fn serve_session(
    engine: Arc<Engine>,
    mut stream: Box<dyn Duplex>,
    login: Login7,
) -> anyhow::Result<()> {
    let (account, database) = match authenticate(&engine, &login) {
        Ok(ok) => ok,
        Err(errs) => return refuse_login(&mut stream, &errs).await,
    };
    let spid = engine.open_session(&database);
    let packet_size = match login.packet_size {
        0 => DEFAULT_PACKET_SIZE,
        n => (n as usize).clamp(512, 32767),
    };
    let tds_version = token::tds_version();

    let (read_half, write_half) = tokio::io::split(stream);
    let mut out = Outbound {
        writer: Box::new(write_half),
        framer: PacketFramer::new(packet_size.min(DEFAULT_PACKET_SIZE), spid),
        server_name: SERVER_NAME.to_string(),
    };
    {
        let mut resp = out.response();
        token::env_database(resp.buf(), &database, "master");
        let changed = errors::changed_database(&database);
        resp.message(
            changed.number,
            changed.class,
            changed.state,
            &changed.text,
            1,
        );
        token::env_collation(resp.buf(), &DEFAULT_COLLATION);
        token::env_language(resp.buf(), "us_english", "");
        let language = errors::changed_language("us_english");
        resp.message(
            language.number,
            language.class,
            language.state,
            &language.text,
            1,
        );
        let v = &engine.version;
        token::login_ack(
            resp.buf(),
            tds_version,
            "Microsoft SQL Server",
            [v.major, v.minor, (v.build >> 8) as u8, v.build as u8],
        );
        if login.feature_ext {
            token::feature_ext_ack_none(resp.buf());
        }
        token::env_packet_size(resp.buf(), packet_size, DEFAULT_PACKET_SIZE);
        resp.done(0, 0, 0);
        if let Err(e) = resp.finish().await {
            engine.close_session(spid);
            return Err(e.into());
        }
    }
    out.framer.set_packet_size(packet_size);

    let attention = Arc::new(Attention::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
    let reader = {
        let attention = attention.clone();
        let engine = engine.clone();
        let mut read_half = read_half;
        tokio::spawn(async move {
            loop {
                match read_message(&mut read_half).await {
                    Ok(Some(message)) if message.ignored => continue,
                    Ok(Some(message)) => {
                        if message.packet_type == PacketType::Attention {
                            attention.signal();
                            engine.emit("attention_received", serde_json::json!({ "spid": spid }));
                        }
                        if tx.send(message).is_err() {
                            break;
                        }
                    }
                    Ok(None) | Err(_) => {
                        attention.close();
                        break;
                    }
                }
            }
        })
    };
    engine.register_kill_switch(spid, attention.clone());
    let mut session = Session::new(engine.clone(), spid, account, database, attention);
    let result = serve_messages(&mut session, &mut rx, &mut out).await;
    reader.abort();
    engine.close_session(spid);
    let _ = out.writer.shutdown().await;
    result
}

async fn serve_messages(
    session: &mut Session,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Message>,
    out: &mut Outbound,
) -> anyhow::Result<()> {
    let attention = session.attention.clone();
    loop {
        // KILL of an idle session closes its connection at once.
        let message = tokio::select! {
            m = rx.recv() => m,
            _ = attention.killed() => None,
        };
        let Some(message) = message else { break };
        if message.reset_connection {
            session.reset();
        }
        let keep_open = match message.packet_type {
            PacketType::SqlBatch => {
                let body = request_body(&message.payload);
                let units: Vec<u16> = body
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                let sql = String::from_utf16_lossy(&units);
                session.run_batch(&sql, out).await?
            }
            PacketType::Rpc => session.run_rpc(&message.payload, out).await?,
            PacketType::TransactionManager => {
                session
                    .run_transaction_manager(&message.payload, out)
                    .await?;
                true
            }
            PacketType::Attention => {
                session.acknowledge_idle_attention(out).await?;
                true
            }
            other => anyhow::bail!("unexpected {other:?} message after login"),
        };
        if !keep_open {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_sql_server() {
        assert_eq!(negotiate(Encryption::Off, true), Encryption::Off);
        assert_eq!(negotiate(Encryption::On, true), Encryption::On);
        assert_eq!(negotiate(Encryption::Required, true), Encryption::On);
        assert_eq!(
            negotiate(Encryption::NotSupported, true),
            Encryption::NotSupported
        );
        assert_eq!(
            negotiate(Encryption::Required, false),
            Encryption::NotSupported
        );
        assert_eq!(negotiate(Encryption::Off, false), Encryption::NotSupported);
    }
}
