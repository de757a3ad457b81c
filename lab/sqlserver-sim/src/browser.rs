//! SQL Server Browser: the UDP service on port 1434 that tells clients which TCP port a named
//! instance listens on (the SQL Server Resolution Protocol, [MC-SQLR]). Named instances, SQL
//! Express's `SQLEXPRESS` included, use dynamic ports by default, so a client that is given
//! `HOST\INSTANCE` without a port asks SQL Browser first (Microsoft Learn, "SQL Server Browser
//! service").
//!
//! Only what a client resolving one instance sends is answered: CLNT_UCAST_INST (0x04, the
//! instance name follows) gets SVR_RESP (0x05, a little-endian u16 length, then
//! `ServerName;..;InstanceName;..;IsClustered;No;Version;..;tcp;PORT;;`). Like SQL Browser, an
//! unknown instance or another request gets no answer ([MC-SQLR] 3.2.5: the server "MUST NOT"
//! respond to a CLNT_UCAST_INST for an instance it does not have).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::net::UdpSocket;

/// The port SQL Browser listens on, whatever the instance.
pub const SQL_BROWSER_PORT: u16 = 1434;

const CLNT_UCAST_INST: u8 = 0x04;
const SVR_RESP: u8 = 0x05;

/// One named instance SQL Browser knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserInstance {
    pub server_name: String,
    pub instance_name: String,
    pub version: String,
    /// `None`: the TCP/IP protocol is disabled (SQL Express's default: Microsoft Learn,
    /// "Protocols supported by SQL Server Express"), so SQL Browser lists named pipes only.
    pub tcp_port: Option<u16>,
}

impl BrowserInstance {
    /// RESP_DATA for this instance: each enabled protocol and how to reach it ([MC-SQLR] 2.2.5).
    fn response_data(&self) -> String {
        let mut data = format!(
            "ServerName;{};InstanceName;{};IsClustered;No;Version;{};",
            self.server_name, self.instance_name, self.version
        );
        if let Some(port) = self.tcp_port {
            data.push_str(&format!("tcp;{port};"));
        }
        data.push_str(&format!(
            "np;\\\\{}\\pipe\\MSSQL${}\\sql\\query;;",
            self.server_name, self.instance_name
        ));
        data
    }
}

/// The answer to one datagram, if any.
pub fn answer(request: &[u8], instances: &[BrowserInstance]) -> Option<Vec<u8>> {
    let (&op, rest) = request.split_first()?;
    if op != CLNT_UCAST_INST {
        return None;
    }
    // The name is single-byte characters, up to 32 bytes, optionally zero-terminated.
    let name: Vec<u8> = rest.iter().copied().take_while(|b| *b != 0).collect();
    let name = String::from_utf8_lossy(&name);
    let instance = instances
        .iter()
        .find(|i| i.instance_name.eq_ignore_ascii_case(name.trim()))?;
    let data = instance.response_data();
    let mut out = vec![SVR_RESP];
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.extend_from_slice(data.as_bytes());
    Some(out)
}

/// A loopback address of the form 127.x.y.z other than 127.0.0.1, so that several labs (and
/// parallel tests) can each own UDP port 1434 of their own address (Linux routes all of 127/8 to
/// the loopback interface).
pub fn random_loopback() -> IpAddr {
    let [a, b, c]: [u8; 3] = rand::random();
    IpAddr::V4(Ipv4Addr::new(127, a.max(1), b, c.clamp(2, 254)))
}

/// A running SQL Browser. Stops when shut down or dropped.
#[derive(Debug)]
pub struct BrowserHandle {
    addr: SocketAddr,
    instances: Arc<Mutex<Vec<BrowserInstance>>>,
    task: tokio::task::JoinHandle<()>,
}

impl BrowserHandle {
    /// Where it listens: `ip:1434`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the instances it answers for (an instance's port is known once it listens).
    pub fn set_instances(&self, instances: Vec<BrowserInstance>) {
        *self.instances.lock().unwrap_or_else(|e| e.into_inner()) = instances;
    }

    pub fn shutdown(self) {
        self.task.abort();
    }
}

impl Drop for BrowserHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts SQL Browser on `ip`:1434 answering for `instances`.
pub async fn start_browser(
    ip: IpAddr,
    instances: Vec<BrowserInstance>,
) -> anyhow::Result<BrowserHandle> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, SQL_BROWSER_PORT))
        .await
        .with_context(|| format!("binding SQL Browser to {ip}:{SQL_BROWSER_PORT}/udp"))?;
    let addr = socket.local_addr()?;
    let instances = Arc::new(Mutex::new(instances));
    let known = instances.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 1024];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let reply = {
                let known = known.lock().unwrap_or_else(|e| e.into_inner());
                answer(&buf[..n], &known)
            };
            if let Some(reply) = reply {
                let _ = socket.send_to(&reply, from).await;
            }
        }
    });
    Ok(BrowserHandle {
        addr,
        instances,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn octopus() -> Vec<BrowserInstance> {
        vec![BrowserInstance {
            server_name: "OCTOLAB-SQL".into(),
            instance_name: "OCTOPUS".into(),
            version: "16.0.4135.4".into(),
            tcp_port: Some(51234),
        }]
    }

    #[test]
    fn a_known_instance_gets_its_port() {
        let reply = answer(b"\x04octopus\0", &octopus()).unwrap();
        assert_eq!(reply[0], 0x05);
        let len = u16::from_le_bytes([reply[1], reply[2]]) as usize;
        let data = std::str::from_utf8(&reply[3..]).unwrap();
        assert_eq!(len, data.len());
        assert_eq!(
            data,
            r"ServerName;OCTOLAB-SQL;InstanceName;OCTOPUS;IsClustered;No;Version;16.0.4135.4;tcp;51234;np;\\OCTOLAB-SQL\pipe\MSSQL$OCTOPUS\sql\query;;"
        );
    }

    #[test]
    fn without_tcp_only_named_pipes_are_listed() {
        let mut instances = octopus();
        instances[0].tcp_port = None;
        let reply = answer(b"\x04OCTOPUS", &instances).unwrap();
        let data = std::str::from_utf8(&reply[3..]).unwrap();
        assert!(!data.contains("tcp;"), "{data}");
        assert!(data.contains(";np;"), "{data}");
    }

    #[test]
    fn unknown_instances_and_other_requests_get_no_answer() {
        assert_eq!(answer(b"\x04SQLEXPRESS", &octopus()), None);
        assert_eq!(answer(b"\x02", &octopus()), None);
        assert_eq!(answer(b"", &octopus()), None);
    }

    #[test]
    fn random_loopback_addresses_are_loopback_but_not_the_usual_one() {
        for _ in 0..100 {
            let ip = random_loopback();
            assert!(ip.is_loopback());
            assert_ne!(ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
    }
}
