//! Writes one tabular-result message: tokens are buffered and sent as packets
//! of the negotiated size; a flush sends what is buffered as non-final
//! packets at once (progress messages), `finish` ends the message.

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::packet::{PacketFramer, PacketType};
use super::token::{self, Column, ServerMessage};
use super::types::Value;

/// The write side of a connection after login.
pub struct Outbound {
    pub writer: Box<dyn AsyncWrite + Unpin + Send>,
    pub framer: PacketFramer,
    /// Stamped into INFO/ERROR tokens as the server name.
    pub server_name: String,
}

impl Outbound {
    pub fn response(&mut self) -> Response<'_> {
        Response {
            out: self,
            buf: Vec::new(),
            sent: false,
        }
    }
}

/// One response message being written.
pub struct Response<'a> {
    out: &'a mut Outbound,
    buf: Vec<u8>,
    /// Some packets of this message are on the wire already.
    sent: bool,
}

impl Response<'_> {
    /// The raw token buffer, for token writers in [`super::token`].
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// An INFO (class <= 10) or ERROR token.
    pub fn message(&mut self, number: i32, class: u8, state: u8, text: &str, line: i32) {
        let msg = ServerMessage {
            number,
            state,
            class,
            text: text.to_string(),
            server: self.out.server_name.clone(),
            procedure: String::new(),
            line,
        };
        token::message(&mut self.buf, &msg);
    }

    pub fn done(&mut self, status: u16, cur_cmd: u16, row_count: u64) {
        token::done(&mut self.buf, token::TOKEN_DONE, status, cur_cmd, row_count);
    }

    /// COLMETADATA and ROWs; sends full packets as the buffer grows. A value
    /// that does not fit its column type is a bug in the lab, reported as an
    /// error after the rows sent so far.
    pub async fn result_set(
        &mut self,
        columns: &[Column],
        rows: &[Vec<Value>],
    ) -> std::io::Result<Result<u64, String>> {
        token::col_metadata(&mut self.buf, columns);
        let mut count = 0;
        for row in rows {
            if let Err(e) = token::row(&mut self.buf, columns, row) {
                return Ok(Err(e.to_string()));
            }
            count += 1;
            self.send_full_packets().await?;
        }
        Ok(Ok(count))
    }

    async fn send_full_packets(&mut self) -> std::io::Result<()> {
        let capacity = self.out.framer.payload_capacity();
        if self.buf.len() <= capacity * 4 {
            return Ok(());
        }
        let whole = (self.buf.len() / capacity - 1) * capacity;
        let rest = self.buf.split_off(whole);
        let bytes = self
            .out
            .framer
            .frame(PacketType::TabularResult, &self.buf, false);
        self.buf = rest;
        self.sent = true;
        self.out.writer.write_all(&bytes).await
    }

    /// Sends everything buffered now, without ending the message.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let bytes = self
            .out
            .framer
            .frame(PacketType::TabularResult, &self.buf, false);
        self.buf.clear();
        self.sent = true;
        self.out.writer.write_all(&bytes).await?;
        self.out.writer.flush().await
    }

    /// Whether part of this message has been sent (it must then be ended before another starts).
    pub fn started(&self) -> bool {
        self.sent
    }

    /// Ends the message.
    pub async fn finish(mut self) -> std::io::Result<()> {
        let bytes = self
            .out
            .framer
            .frame(PacketType::TabularResult, &self.buf, true);
        self.buf.clear();
        self.out.writer.write_all(&bytes).await?;
        self.out.writer.flush().await
    }

    /// Drops what was not sent, ends the message if part of it was sent (an empty last
    /// packet), then sends DONE(ATTN) as a message of its own.
    pub async fn end_with_attention_ack(mut self) -> std::io::Result<()> {
        self.buf.clear();
        if self.sent {
            let bytes = self.out.framer.frame(PacketType::TabularResult, &[], true);
            self.out.writer.write_all(&bytes).await?;
        }
        token::done(
            &mut self.buf,
            token::TOKEN_DONE,
            token::done_status::ATTN,
            token::cur_cmd::NONE,
            0,
        );
        self.sent = false;
        self.finish().await
    }

    /// Drops what is buffered (after an attention, the rest of the output is discarded).
    pub fn discard(&mut self) {
        self.buf.clear();
    }
}
