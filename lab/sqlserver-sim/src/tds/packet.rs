//! TDS packets (MS-TDS 2.2.3): an 8-byte header, then payload. A message is
//! one or more packets of the same type, the last one flagged end-of-message.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Length of a packet header.
pub const HEADER_LEN: usize = 8;
/// Largest packet size a client may negotiate (MS-TDS: 512..=32767).
pub const MAX_PACKET_SIZE: usize = 32767;
/// Smallest packet size a client may negotiate.
pub const MIN_PACKET_SIZE: usize = 512;
/// Packet size used before LOGIN7 negotiates one.
pub const DEFAULT_PACKET_SIZE: usize = 4096;
/// Messages larger than this are refused: no statement octobackup sends comes close.
const MAX_MESSAGE_LEN: usize = 64 * 1024 * 1024;

/// Status bit: last packet of the message.
pub const STATUS_EOM: u8 = 0x01;
/// Status bit: the client abandoned this message; the server ignores it.
pub const STATUS_IGNORE: u8 = 0x02;
/// Status bit: reset the connection before processing (sp_reset_connection).
pub const STATUS_RESET_CONNECTION: u8 = 0x08;

/// Packet types (MS-TDS 2.2.3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    SqlBatch,
    Rpc,
    TabularResult,
    Attention,
    BulkLoad,
    TransactionManager,
    Login7,
    Sspi,
    PreLogin,
    Other(u8),
}

impl PacketType {
    pub fn from_byte(b: u8) -> Self {
        match b {
            1 => Self::SqlBatch,
            3 => Self::Rpc,
            4 => Self::TabularResult,
            6 => Self::Attention,
            7 => Self::BulkLoad,
            14 => Self::TransactionManager,
            16 => Self::Login7,
            17 => Self::Sspi,
            18 => Self::PreLogin,
            other => Self::Other(other),
        }
    }

    pub fn to_byte(self) -> u8 {
        match self {
            Self::SqlBatch => 1,
            Self::Rpc => 3,
            Self::TabularResult => 4,
            Self::Attention => 6,
            Self::BulkLoad => 7,
            Self::TransactionManager => 14,
            Self::Login7 => 16,
            Self::Sspi => 17,
            Self::PreLogin => 18,
            Self::Other(b) => b,
        }
    }
}

/// A decoded packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    pub packet_type: PacketType,
    pub status: u8,
    /// Whole packet length, header included.
    pub length: u16,
    pub spid: u16,
    pub packet_id: u8,
}

impl PacketHeader {
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Self {
        Self {
            packet_type: PacketType::from_byte(bytes[0]),
            status: bytes[1],
            length: u16::from_be_bytes([bytes[2], bytes[3]]),
            spid: u16::from_be_bytes([bytes[4], bytes[5]]),
            packet_id: bytes[6],
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let len = self.length.to_be_bytes();
        let spid = self.spid.to_be_bytes();
        [
            self.packet_type.to_byte(),
            self.status,
            len[0],
            len[1],
            spid[0],
            spid[1],
            self.packet_id,
            0,
        ]
    }
}

/// A whole client message: the payloads of its packets joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub packet_type: PacketType,
    pub payload: Vec<u8>,
    /// The client asked for the session to be reset (connection pooling).
    pub reset_connection: bool,
    /// The client set the ignore bit: the message must be discarded.
    pub ignored: bool,
}

/// Reads one message. Returns `Ok(None)` when the peer closed the connection
/// cleanly between messages.
pub async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<Message>> {
    let mut payload = Vec::new();
    let mut first_type = None;
    let mut reset_connection = false;
    loop {
        let mut header = [0u8; HEADER_LEN];
        match read_exact_or_eof(reader, &mut header).await? {
            ReadOutcome::Eof if first_type.is_none() => return Ok(None),
            ReadOutcome::Eof => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a TDS message",
                ));
            }
            ReadOutcome::Full => {}
        }
        let header = PacketHeader::decode(&header);
        let length = header.length as usize;
        if length < HEADER_LEN {
            return Err(invalid("TDS packet shorter than its header"));
        }
        match first_type {
            None => {
                first_type = Some(header.packet_type);
                reset_connection = header.status & STATUS_RESET_CONNECTION != 0;
            }
            Some(t) if t != header.packet_type => {
                return Err(invalid(
                    "TDS packet type changed in the middle of a message",
                ));
            }
            Some(_) => {}
        }
        let body_len = length - HEADER_LEN;
        if payload.len() + body_len > MAX_MESSAGE_LEN {
            return Err(invalid("TDS message too large"));
        }
        let start = payload.len();
        payload.resize(start + body_len, 0);
        reader.read_exact(&mut payload[start..]).await?;
        if header.status & STATUS_EOM != 0 {
            return Ok(Some(Message {
                packet_type: header.packet_type,
                payload,
                reset_connection,
                ignored: header.status & STATUS_IGNORE != 0,
            }));
        }
    }
}

enum ReadOutcome {
    Full,
    Eof,
}

async fn read_exact_or_eof<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> std::io::Result<ReadOutcome> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(ReadOutcome::Eof);
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a TDS packet header",
            ));
        }
        filled += n;
    }
    Ok(ReadOutcome::Full)
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Splits outgoing payloads into packets of the negotiated size.
#[derive(Debug, Clone)]
pub struct PacketFramer {
    packet_size: usize,
    spid: u16,
    next_id: u8,
}

impl PacketFramer {
    pub fn new(packet_size: usize, spid: u16) -> Self {
        Self {
            packet_size: packet_size.clamp(MIN_PACKET_SIZE, MAX_PACKET_SIZE),
            spid,
            next_id: 1,
        }
    }

    pub fn packet_size(&self) -> usize {
        self.packet_size
    }

    pub fn set_packet_size(&mut self, size: usize) {
        self.packet_size = size.clamp(MIN_PACKET_SIZE, MAX_PACKET_SIZE);
    }

    /// Payload bytes that fit in one packet.
    pub fn payload_capacity(&self) -> usize {
        self.packet_size - HEADER_LEN
    }

    /// Frames `payload` as packets of `packet_type`; the last packet carries
    /// end-of-message when `end_of_message` is set. An empty payload with
    /// `end_of_message` still produces one (empty) packet.
    pub fn frame(
        &mut self,
        packet_type: PacketType,
        payload: &[u8],
        end_of_message: bool,
    ) -> Vec<u8> {
        let capacity = self.payload_capacity();
        let mut out =
            Vec::with_capacity(payload.len() + HEADER_LEN * (payload.len() / capacity + 1));
        let mut chunks: Vec<&[u8]> = payload.chunks(capacity).collect();
        if chunks.is_empty() {
            if !end_of_message {
                return out;
            }
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let header = PacketHeader {
                packet_type,
                status: if i == last && end_of_message {
                    STATUS_EOM
                } else {
                    0
                },
                length: (chunk.len() + HEADER_LEN) as u16,
                spid: self.spid,
                packet_id: self.next_id,
            };
            self.next_id = self.next_id.wrapping_add(1);
            out.extend_from_slice(&header.encode());
            out.extend_from_slice(chunk);
        }
        out
    }
}

/// Writes a whole message in one go.
pub async fn write_message<W: AsyncWrite + Unpin>(
    writer: &mut W,
    framer: &mut PacketFramer,
    packet_type: PacketType,
    payload: &[u8],
) -> std::io::Result<()> {
    let bytes = framer.frame(packet_type, payload, true);
    writer.write_all(&bytes).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = PacketHeader {
            packet_type: PacketType::SqlBatch,
            status: STATUS_EOM,
            length: 300,
            spid: 53,
            packet_id: 7,
        };
        assert_eq!(PacketHeader::decode(&header.encode()), header);
        assert_eq!(header.encode()[..4], [1, 1, 0x01, 0x2c]);
    }

    #[test]
    fn framer_splits_at_packet_size_and_flags_only_the_last() {
        let mut framer = PacketFramer::new(512, 51);
        let payload = vec![0xAB; 1200];
        let bytes = framer.frame(PacketType::TabularResult, &payload, true);
        // 504 + 504 + 192 payload bytes
        assert_eq!(bytes.len(), 1200 + 3 * HEADER_LEN);
        let first = PacketHeader::decode(bytes[..8].try_into().unwrap());
        assert_eq!(first.length, 512);
        assert_eq!(first.status, 0);
        assert_eq!(first.spid, 51);
        let last = PacketHeader::decode(bytes[1024..1032].try_into().unwrap());
        assert_eq!(last.length as usize, 192 + HEADER_LEN);
        assert_eq!(last.status, STATUS_EOM);
        assert_eq!(last.packet_id, 3);
    }

    #[test]
    fn framer_sends_an_empty_final_packet_when_asked() {
        let mut framer = PacketFramer::new(4096, 1);
        assert!(
            framer
                .frame(PacketType::TabularResult, &[], false)
                .is_empty()
        );
        let bytes = framer.frame(PacketType::TabularResult, &[], true);
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(bytes[1], STATUS_EOM);
    }

    #[tokio::test]
    async fn reads_a_message_spread_over_packets() {
        let mut framer = PacketFramer::new(512, 0);
        let payload: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        let mut wire = framer.frame(PacketType::SqlBatch, &payload, true);
        wire.extend(framer.frame(PacketType::Attention, &[], true));
        let mut reader = &wire[..];
        let message = read_message(&mut reader).await.unwrap().unwrap();
        assert_eq!(message.packet_type, PacketType::SqlBatch);
        assert_eq!(message.payload, payload);
        let attention = read_message(&mut reader).await.unwrap().unwrap();
        assert_eq!(attention.packet_type, PacketType::Attention);
        assert!(read_message(&mut reader).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn truncated_message_is_an_error() {
        let mut framer = PacketFramer::new(512, 0);
        let wire = framer.frame(PacketType::SqlBatch, &[1, 2, 3], true);
        let mut reader = &wire[..wire.len() - 1];
        assert!(read_message(&mut reader).await.is_err());
    }
}
