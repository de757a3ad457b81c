//! One connection's session: its login, current database, transaction count
//! and the execution of its batches, with ATTENTION honoured between and
//! inside statements.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

use super::applock::{self, LockKey, LockMode, LockOwner};
use super::errors::{self, SqlError};
use super::scalar::{self, EvalContext};
use super::{Engine, RequestInfo, query};
use crate::sql::ast::{Expr, Located, ObjectName, RestoreKind, Statement};
use crate::tds::response::{Outbound, Response};
use crate::tds::token::{self, cur_cmd, done_status};
use crate::tds::types::{SqlType, Value};
use crate::{Edition, SqlLogin};

/// ATTENTION signals and disconnection, shared between the connection's reader and its session.
#[derive(Default)]
pub struct Attention {
    received: AtomicU64,
    acknowledged: AtomicU64,
    closed: AtomicBool,
    /// Another session's KILL ended this one.
    killed: AtomicBool,
    /// The running statement does not heed ATTENTION (the `IgnoreAttentionDuringNext` fault),
    /// as a real BACKUP blocked on I/O may not: only KILL or the client's going stops it.
    deaf: AtomicBool,
    notify: Notify,
}

impl Attention {
    /// The reader saw an ATTENTION packet.
    pub fn signal(&self) {
        self.received.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// The client went away.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// KILL from another session: the running statement stops and the connection is closed.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// While set, a pending ATTENTION does not stop the running statement.
    pub fn set_deaf(&self, on: bool) {
        self.deaf.store(on, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Why a stopped statement stopped, for its `*_finished` event: another session's KILL,
    /// the client going away, or the client's ATTENTION.
    pub fn why_stopped(&self) -> &'static str {
        if self.is_killed() {
            "ended by KILL"
        } else if self.is_closed() {
            "the client went away"
        } else {
            "cancelled by ATTENTION"
        }
    }

    /// An ATTENTION arrived that no DONE has acknowledged yet.
    pub fn pending(&self) -> bool {
        self.received.load(Ordering::SeqCst) > self.acknowledged.load(Ordering::SeqCst)
    }

    /// Whether the running request must stop.
    pub fn should_stop(&self) -> bool {
        (self.pending() && !self.deaf.load(Ordering::SeqCst))
            || self.is_closed()
            || self.is_killed()
    }

    pub fn acknowledge(&self) {
        self.acknowledged
            .store(self.received.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Waits until another session's KILL ends this one.
    pub async fn killed(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_killed() {
                return;
            }
            notified.await;
        }
    }

    /// Waits until an ATTENTION is pending or the client is gone.
    pub async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.should_stop() {
                return;
            }
            notified.await;
        }
    }
}

/// How an RPC request's response ends: RETURNSTATUS, the prepared handle of sp_prepexec as
/// a RETURNVALUE, then DONEPROC.
pub struct ProcedureEnd {
    handle: Option<i32>,
}

/// How a statement ended.
pub enum Outcome {
    Done {
        cur_cmd: u16,
        count: Option<u64>,
        error: bool,
    },
    /// An ATTENTION stopped it.
    Cancelled,
    /// The connection must be dropped (fault injection, or the client went away).
    DropConnection,
}

impl Outcome {
    pub fn ok() -> Self {
        Outcome::Done {
            cur_cmd: cur_cmd::NONE,
            count: None,
            error: false,
        }
    }

    pub fn failed() -> Self {
        Outcome::Done {
            cur_cmd: cur_cmd::NONE,
            count: None,
            error: true,
        }
    }
}

/// Writes a message for the statement starting at `line`.
pub fn raise(resp: &mut Response<'_>, err: &SqlError, line: i32) {
    resp.message(err.number, err.class, err.state, &err.text, line);
}

/// One logged-in session.
pub struct Session {
    pub engine: Arc<Engine>,
    pub spid: u16,
    pub login: SqlLogin,
    pub database: String,
    pub tran_count: u32,
    tran_descriptor: u64,
    nocount: bool,
    pub attention: Arc<Attention>,
    /// The running batch's local variables (DECLARE), lower-cased names.
    variables: std::collections::HashMap<String, (Value, SqlType)>,
    /// Statements prepared by sp_prepexec / sp_prepare: handle -> (statement, @params).
    prepared: std::collections::HashMap<i32, (String, String)>,
    next_handle: i32,
    /// Savepoints of the open transaction (transaction-manager SAVE), in order.
    savepoints: Vec<String>,
}

/// The name a transaction-manager request carries (B_VARCHAR after the request type).
fn tm_name(body: &[u8]) -> String {
    let len = body.get(2).copied().unwrap_or(0) as usize;
    let units: Vec<u16> = body
        .get(3..3 + len * 2)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// The transaction-manager request types (MS-TDS 2.2.6.9).
const TM_BEGIN_XACT: u16 = 5;
const TM_COMMIT_XACT: u16 = 7;
const TM_ROLLBACK_XACT: u16 = 8;
const TM_SAVE_XACT: u16 = 9;
const TM_FLAG_BEGIN_XACT: u8 = 0x01;

/// A request's body: after ALL_HEADERS, which clients send from TDS 7.2 on (MS-TDS 2.2.5.3);
/// a TDS 7.1 batch is its text from the first byte.
pub fn request_body(payload: &[u8]) -> &[u8] {
    if token::tds_version() >= token::TDS_7_2 {
        skip_all_headers(payload).unwrap_or(payload)
    } else {
        payload
    }
}

/// Skips ALL_HEADERS (TDS 7.2+) at the start of a request payload.
pub fn skip_all_headers(payload: &[u8]) -> Option<&[u8]> {
    let total = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    if total < 4 || total > payload.len() {
        return None;
    }
    Some(&payload[total..])
}

impl Session {
    pub fn new(
        engine: Arc<Engine>,
        spid: u16,
        login: SqlLogin,
        database: String,
        attention: Arc<Attention>,
    ) -> Self {
        Self {
            engine,
            spid,
            login,
            database,
            tran_count: 0,
            tran_descriptor: 0,
            nocount: false,
            savepoints: Vec::new(),
            attention,
            variables: Default::default(),
            prepared: Default::default(),
            next_handle: 1,
        }
    }

    /// sp_reset_connection: what a pooled connection gets back to before reuse.
    pub fn reset(&mut self) {
        self.nocount = false;
        self.tran_count = 0;
    }

    pub fn eval_context(&self) -> EvalContext<'_> {
        EvalContext {
            engine: &self.engine,
            spid: self.spid,
            login: &self.login,
            database: &self.database,
            tran_count: self.tran_count,
            variables: &self.variables,
        }
    }

    fn status_bits(&self) -> u16 {
        if self.tran_count > 0 {
            done_status::IN_XACT
        } else {
            0
        }
    }

    /// Runs a SQL batch and sends its whole response. Returns false when the connection must close.
    pub async fn run_batch(&mut self, sql: &str, out: &mut Outbound) -> io::Result<bool> {
        self.run_sql(sql, Default::default(), None, out).await
    }

    /// Runs `sql` with `parameters` as its variables. Inside a procedure (an RPC request) each
    /// statement ends with DONEINPROC, then come RETURNSTATUS and DONEPROC (MS-TDS 2.2.4.2.2).
    async fn run_sql(
        &mut self,
        sql: &str,
        parameters: std::collections::HashMap<String, (Value, SqlType)>,
        procedure: Option<ProcedureEnd>,
        out: &mut Outbound,
    ) -> io::Result<bool> {
        let in_proc = procedure.is_some();
        let mut resp = out.response();
        let declared: Vec<String> = parameters.keys().cloned().collect();
        self.variables = parameters;
        let done_token = if in_proc {
            token::TOKEN_DONEINPROC
        } else {
            token::TOKEN_DONE
        };
        let statements = match crate::sql::parser::parse_batch_with_variables(
            sql,
            self.engine.version.major,
            declared,
        ) {
            Ok(s) => s,
            Err(e) => {
                resp.message(e.number, e.class, e.state, &e.text, e.line);
                let status = done_status::ERROR | self.status_bits();
                let t = if in_proc {
                    token::TOKEN_DONEPROC
                } else {
                    token::TOKEN_DONE
                };
                token::done(resp.buf(), t, status, cur_cmd::NONE, 0);
                resp.finish().await?;
                return Ok(true);
            }
        };
        if statements.is_empty() && !in_proc {
            resp.done(self.status_bits(), cur_cmd::NONE, 0);
            resp.finish().await?;
            return Ok(true);
        }
        let mut any_error = false;
        let last = statements.len().saturating_sub(1);
        for (i, located) in statements.iter().enumerate() {
            if self.attention.should_stop() {
                return self.finish_cancelled(resp).await;
            }
            self.engine.set_request(
                self.spid,
                Some(RequestInfo {
                    command: command_name(&located.statement).to_string(),
                    start_time: chrono::Local::now().naive_local(),
                    started: std::time::Instant::now(),
                    percent_complete: 0.0,
                    database_id: self.engine.database_id(&self.database).unwrap_or(1),
                }),
            );
            let command = command_name(&located.statement);
            if let Some(crate::SqlFault::SilenceBeforeNext { silence, .. }) =
                self.engine.take_fault(|f| {
                    matches!(f, crate::SqlFault::SilenceBeforeNext { command: c, .. } if command.starts_with(c.as_str()))
                })
            {
                // Also for tests that act while a statement is under way (a stop mid-VERIFYONLY).
                self.engine.emit(
                    "silence_started",
                    serde_json::json!({ "spid": self.spid, "command": command }),
                );
                let start = std::time::Instant::now();
                let until = start + silence;
                // Silent to the client, not in sys.dm_exec_requests: CHECKDB reports
                // percent_complete there (Microsoft Learn, sys.dm_exec_requests: DBCC CHECKDB is
                // among the commands with a percent_complete; RESTORE VERIFYONLY is not). BACKUP
                // and RESTORE set theirs as their work runs.
                let reports = command.starts_with("DBCC");
                while std::time::Instant::now() < until && !self.attention.should_stop() {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    if reports {
                        let done = start.elapsed().as_secs_f32() / silence.as_secs_f32();
                        self.engine
                            .set_percent_complete(self.spid, (done * 99.0).min(99.0));
                    }
                }
                if self.attention.should_stop() {
                    self.engine.set_request(self.spid, None);
                    return self.finish_cancelled(resp).await;
                }
            }
            let deaf = self
                .engine
                .take_fault(|f| {
                    matches!(f, crate::SqlFault::IgnoreAttentionDuringNext { command: c } if command.starts_with(c.as_str()))
                })
                .is_some();
            self.attention.set_deaf(deaf);
            let outcome = self.execute(located, &mut resp).await;
            self.attention.set_deaf(false);
            self.engine.set_request(self.spid, None);
            match outcome? {
                Outcome::Cancelled => return self.finish_cancelled(resp).await,
                Outcome::DropConnection => return Ok(false),
                Outcome::Done {
                    cur_cmd,
                    count,
                    error,
                } => {
                    let mut status = self.status_bits();
                    if i != last || in_proc {
                        status |= done_status::MORE;
                    }
                    if error {
                        status |= done_status::ERROR;
                        any_error = true;
                    }
                    if count.is_some() && !self.nocount {
                        status |= done_status::COUNT;
                    }
                    token::done(resp.buf(), done_token, status, cur_cmd, count.unwrap_or(0));
                }
            }
        }
        if self.attention.should_stop() {
            return self.finish_cancelled(resp).await;
        }
        if in_proc {
            // Microsoft Learn, sp_executesql: return code 0 (success) or nonzero (failure).
            token::return_status(resp.buf(), if any_error { 1 } else { 0 });
            if let Some(ProcedureEnd {
                handle: Some(handle),
            }) = procedure
            {
                token::return_value_int(resp.buf(), 0, "@handle", handle);
            }
            let status = if any_error { done_status::ERROR } else { 0 } | self.status_bits();
            token::done(resp.buf(), token::TOKEN_DONEPROC, status, cur_cmd::NONE, 0);
        }
        resp.finish().await?;
        Ok(true)
    }

    /// An RPC request: sp_executesql runs its statement with its parameters, as tedious'
    /// execSql, node-mssql's query() and go-mssqldb send parameterized SQL; other procedures
    /// are refused with the lab's Msg 50000.
    pub async fn run_rpc(&mut self, payload: &[u8], out: &mut Outbound) -> io::Result<bool> {
        let body = request_body(payload);
        let call = match crate::tds::rpc::parse(body) {
            Ok(call) => call,
            Err(e) => {
                let err = SqlError::lab(format!("an RPC request the lab cannot run: {e}"));
                self.refuse_rpc(&err, out).await?;
                return Ok(true);
            }
        };
        let name = call
            .procedure
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let text = |i: usize| match call.params.get(i).map(|p| &p.value) {
            Some(Value::Str(t)) => Some(t.clone()),
            _ => None,
        };
        let int = |i: usize| match call.params.get(i).map(|p| &p.value) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        };
        // sp_executesql: @stmt, @params, values. sp_prepexec (ODBC, mssql-python): @handle
        // OUTPUT, @params, @stmt, values. sp_execute: @handle, values. (Microsoft Learn, the
        // pages of each procedure.)
        // @stmt and @params of sp_executesql are Unicode: a varchar or char value is refused
        // with Msg 214, as SQL Server does (Microsoft Learn, sp_executesql: @stmt and @params are
        // Unicode constants or variables; character constants are not allowed).
        let unicode = |i: usize| {
            call.params
                .get(i)
                .is_none_or(|p| p.value == Value::Null || matches!(p.ty, SqlType::NVarChar(_)))
        };
        let (statement, declaration, first_value, handle) = match name.as_str() {
            "sp_executesql" if !unicode(0) => {
                self.refuse_rpc(&errors::executesql_statement_type(), out)
                    .await?;
                return Ok(true);
            }
            "sp_executesql" if !unicode(1) => {
                self.refuse_rpc(&errors::executesql_parameters_type(), out)
                    .await?;
                return Ok(true);
            }
            "sp_executesql" => (text(0), text(1).unwrap_or_default(), 2, None),
            "sp_prepexec" | "sp_prepare" => {
                let handle = self.next_handle;
                self.next_handle += 1;
                let (Some(declaration), Some(statement)) =
                    (text(1).or(Some(String::new())), text(2))
                else {
                    self.refuse_rpc(&errors::executesql_statement_type(), out)
                        .await?;
                    return Ok(true);
                };
                self.prepared
                    .insert(handle, (statement.clone(), declaration.clone()));
                if name == "sp_prepare" {
                    let mut resp = out.response();
                    token::return_status(resp.buf(), 0);
                    token::return_value_int(resp.buf(), 0, "@handle", handle);
                    token::done(
                        resp.buf(),
                        token::TOKEN_DONEPROC,
                        self.status_bits(),
                        cur_cmd::NONE,
                        0,
                    );
                    resp.finish().await?;
                    return Ok(true);
                }
                (Some(statement), declaration, 3, Some(handle))
            }
            "sp_execute" => match int(0).and_then(|h| self.prepared.get(&h).cloned()) {
                Some((statement, declaration)) => (Some(statement), declaration, 1, None),
                None => {
                    // Msg 8179: Could not find prepared statement with handle %d.
                    let err = SqlError::new(
                        8179,
                        16,
                        4,
                        format!(
                            "Could not find prepared statement with handle {}.",
                            int(0).unwrap_or(0)
                        ),
                    );
                    self.refuse_rpc(&err, out).await?;
                    return Ok(true);
                }
            },
            "sp_unprepare" => {
                if let Some(h) = int(0) {
                    self.prepared.remove(&h);
                }
                let mut resp = out.response();
                token::return_status(resp.buf(), 0);
                token::done(
                    resp.buf(),
                    token::TOKEN_DONEPROC,
                    self.status_bits(),
                    cur_cmd::NONE,
                    0,
                );
                resp.finish().await?;
                return Ok(true);
            }
            _ => {
                self.refuse_rpc(&errors::rpc_not_supported(&call.procedure), out)
                    .await?;
                return Ok(true);
            }
        };
        let Some(statement) = statement else {
            self.refuse_rpc(&errors::executesql_statement_type(), out)
                .await?;
            return Ok(true);
        };
        let declared = declared_parameters(&declaration);
        let mut parameters = std::collections::HashMap::new();
        for (i, p) in call.params.iter().skip(first_value).enumerate() {
            // unnamed values take the declared names in order
            let name = if p.name.is_empty() {
                declared.get(i).cloned().unwrap_or_default()
            } else {
                p.name.to_lowercase()
            };
            parameters.insert(name, (p.value.clone(), p.ty.clone()));
        }
        // Every parameter @params declares must be given (it has no default): Msg 8178.
        for d in &declared {
            if !parameters.contains_key(d) {
                let err = errors::parameter_not_supplied(&declaration, d);
                self.refuse_rpc(&err, out).await?;
                return Ok(true);
            }
        }
        self.run_sql(&statement, parameters, Some(ProcedureEnd { handle }), out)
            .await
    }

    async fn refuse_rpc(&mut self, err: &SqlError, out: &mut Outbound) -> io::Result<()> {
        let mut resp = out.response();
        raise(&mut resp, err, 1);
        token::done(
            resp.buf(),
            token::TOKEN_DONEPROC,
            done_status::ERROR | self.status_bits(),
            cur_cmd::NONE,
            0,
        );
        resp.finish().await
    }

    /// Ends the interrupted response (what was not sent is dropped), then acknowledges the
    /// ATTENTION in a response of its own, a lone DONE(ATTN). MS-TDS 3.2.5.7 (Sent Attention
    /// State): a client discards each response that does not acknowledge the attention, so the
    /// acknowledgment must not ride inside the interrupted one; tedious waits for it in the
    /// next message and drops the connection otherwise.
    async fn finish_cancelled(&mut self, mut resp: Response<'_>) -> io::Result<bool> {
        if self.attention.is_closed() {
            return Ok(false);
        }
        if self.attention.is_killed() {
            // KILL ends the connection: the client reads Msg 596 (severity 21), then the close.
            raise(&mut resp, &super::kill::killed_state(), 1);
            let _ = resp.finish().await;
            return Ok(false);
        }
        self.attention.acknowledge();
        self.engine.emit(
            "attention_acknowledged",
            serde_json::json!({ "spid": self.spid }),
        );
        resp.end_with_attention_ack().await?;
        Ok(true)
    }

    /// An ATTENTION that arrived while no request ran: acknowledge it on its own.
    pub async fn acknowledge_idle_attention(&mut self, out: &mut Outbound) -> io::Result<()> {
        if !self.attention.pending() {
            return Ok(());
        }
        let mut resp = out.response();
        resp.done(done_status::ATTN, cur_cmd::NONE, 0);
        self.attention.acknowledge();
        resp.finish().await
    }

    /// Transaction-manager requests (how tiberius' begin_transaction and python-tds with
    /// autocommit off manage transactions).
    pub async fn run_transaction_manager(
        &mut self,
        payload: &[u8],
        out: &mut Outbound,
    ) -> io::Result<()> {
        let body = request_body(payload);
        let request = body.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let mut resp = out.response();
        let mut error = false;
        match request {
            Some(TM_BEGIN_XACT) => self.begin_transaction(&mut resp),
            // A savepoint needs a transaction: Msg 628 outside one (Microsoft Learn, "Database
            // engine events and errors 0 to 999"); inside one it is kept for ROLLBACK to it.
            Some(TM_SAVE_XACT) => {
                if self.tran_count > 0 {
                    self.savepoints.push(tm_name(body));
                } else {
                    raise(
                        &mut resp,
                        &SqlError::new(
                            628,
                            16,
                            0,
                            "Cannot issue SAVE TRANSACTION when there is no active transaction.",
                        ),
                        1,
                    );
                    error = true;
                }
            }
            // ROLLBACK to a savepoint (a name given inside a transaction) keeps the transaction.
            Some(TM_ROLLBACK_XACT)
                if self.tran_count > 0
                    && let Some(i) = self.savepoints.iter().position(|s| *s == tm_name(body)) =>
            {
                self.savepoints.truncate(i + 1);
            }
            Some(TM_COMMIT_XACT) | Some(TM_ROLLBACK_XACT) => {
                // name (B_VARCHAR), then flags
                let name_len = body.get(2).copied().unwrap_or(0) as usize;
                let flags = body.get(3 + name_len * 2).copied().unwrap_or(0);
                let result = if request == Some(TM_COMMIT_XACT) {
                    self.commit(&mut resp)
                } else {
                    self.rollback(&mut resp)
                };
                match result {
                    Err(e) => {
                        raise(&mut resp, &e, 1);
                        error = true;
                    }
                    Ok(()) if flags & TM_FLAG_BEGIN_XACT != 0 => self.begin_transaction(&mut resp),
                    Ok(()) => {}
                }
            }
            other => {
                let what = other.map_or("an empty".to_string(), |t| format!("type {t}"));
                raise(
                    &mut resp,
                    &SqlError::lab(format!(
                        "transaction manager request {what} is not supported"
                    )),
                    1,
                );
                error = true;
            }
        }
        resp.done(
            if error { done_status::ERROR } else { 0 } | self.status_bits(),
            cur_cmd::NONE,
            0,
        );
        resp.finish().await
    }

    fn begin_transaction(&mut self, resp: &mut Response<'_>) {
        self.tran_count += 1;
        if self.tran_count == 1 {
            self.tran_descriptor = rand::random::<u64>() | 1;
            token::env_begin_tran(resp.buf(), self.tran_descriptor);
        }
    }

    fn commit(&mut self, resp: &mut Response<'_>) -> Result<(), SqlError> {
        if self.tran_count == 0 {
            return Err(errors::commit_without_begin());
        }
        self.tran_count -= 1;
        if self.tran_count == 0 {
            self.savepoints.clear();
            self.engine
                .app_locks
                .release_all(self.spid, Some(LockOwner::Transaction));
            token::env_end_tran(resp.buf(), self.tran_descriptor, true);
        }
        Ok(())
    }

    fn rollback(&mut self, resp: &mut Response<'_>) -> Result<(), SqlError> {
        if self.tran_count == 0 {
            return Err(errors::rollback_without_begin());
        }
        self.tran_count = 0;
        self.savepoints.clear();
        self.engine
            .app_locks
            .release_all(self.spid, Some(LockOwner::Transaction));
        token::env_end_tran(resp.buf(), self.tran_descriptor, false);
        Ok(())
    }

    async fn execute(&mut self, located: &Located, resp: &mut Response<'_>) -> io::Result<Outcome> {
        let line = located.line;
        let simple = |result: Result<(), SqlError>, resp: &mut Response<'_>| match result {
            Ok(()) => Outcome::ok(),
            Err(e) => {
                raise(resp, &e, line);
                Outcome::failed()
            }
        };
        Ok(match &located.statement {
            Statement::Select(select) => {
                let result = query::select(&self.engine, &self.eval_context(), select).await;
                match result {
                    Ok((columns, rows)) => match resp.result_set(&columns, &rows).await? {
                        Ok(count) => Outcome::Done {
                            cur_cmd: cur_cmd::SELECT,
                            count: Some(count),
                            error: false,
                        },
                        Err(detail) => {
                            raise(
                                resp,
                                &SqlError::lab(format!("a value could not be sent: {detail}")),
                                line,
                            );
                            Outcome::failed()
                        }
                    },
                    Err(e) => {
                        raise(resp, &e, line);
                        Outcome::failed()
                    }
                }
            }
            Statement::Update(update) => {
                if self.tran_count > 0 {
                    raise(
                        resp,
                        &SqlError::lab(
                            "UPDATE inside a user transaction is not supported (the lab cannot roll it back)",
                        ),
                        line,
                    );
                    return Ok(Outcome::failed());
                }
                match query::update(&self.engine, &self.eval_context(), update).await {
                    Ok(count) => Outcome::Done {
                        cur_cmd: cur_cmd::UPDATE,
                        count: Some(count),
                        error: false,
                    },
                    Err(e) => {
                        raise(resp, &e, line);
                        Outcome::failed()
                    }
                }
            }
            Statement::Use(name) => {
                let r = self.use_database(name, resp, line);
                simple(r, resp)
            }
            Statement::Kill(target) => {
                let r = self.engine.kill(&self.login, self.spid, *target);
                simple(r, resp)
            }
            Statement::Set { option, on } => {
                if option == "NOCOUNT" {
                    self.nocount = *on;
                }
                Outcome::ok()
            }
            // SET LANGUAGE answers as the login does: a language ENVCHANGE and Msg 5703 (MS-TDS
            // 2.2.7.9, ENVCHANGE type 2). The lab speaks us_english only; English is its alias.
            Statement::SetLanguage(name) => {
                let new = if name.eq_ignore_ascii_case("english")
                    || name.eq_ignore_ascii_case("us_english")
                {
                    "us_english"
                } else {
                    raise(
                        resp,
                        &SqlError::lab(format!("the lab speaks us_english only, not '{name}'")),
                        line,
                    );
                    return Ok(Outcome::failed());
                };
                token::env_language(resp.buf(), new, "us_english");
                raise(resp, &errors::changed_language(new), line);
                Outcome::ok()
            }
            Statement::BeginTran => {
                self.begin_transaction(resp);
                Outcome::ok()
            }
            Statement::Commit => {
                let r = self.commit(resp);
                simple(r, resp)
            }
            Statement::Rollback => {
                let r = self.rollback(resp);
                simple(r, resp)
            }
            Statement::Backup(backup) => {
                super::backup::backup_database(self, backup, resp, line).await?
            }
            Statement::Restore(restore) => match &restore.kind {
                RestoreKind::VerifyOnly => {
                    super::backup::verify_only(self, restore, resp, line).await?
                }
                RestoreKind::HeaderOnly | RestoreKind::FileListOnly => {
                    super::backup::list_backup(self, restore, resp, line).await?
                }
                RestoreKind::Database(name) => {
                    super::backup::restore_database(self, name, restore, resp, line).await?
                }
            },
            Statement::DropDatabase { names, if_exists } => {
                super::backup::drop_databases(self, names, *if_exists, resp, line).await
            }
            Statement::CheckDb(check) => super::dbcc::check_db(self, check, resp, line).await?,
            Statement::RenameDatabase { name, new_name } => {
                super::backup::rename_database(self, name, new_name, resp, line).await
            }
            Statement::Exec {
                procedure,
                named,
                status_into,
                args,
            } if is_applock_procedure(procedure) => {
                match self.exec_applock(procedure, args, named, resp, line).await {
                    Ok(status) => {
                        if let Some(var) = status_into {
                            self.variables
                                .insert(var.clone(), (Value::Int(status), SqlType::Int));
                        }
                        Outcome::ok()
                    }
                    Err(Stop::Cancelled) => Outcome::Cancelled,
                    Err(Stop::Error(e)) => simple(Err(e), resp),
                }
            }
            Statement::Exec {
                procedure,
                args,
                named,
                ..
            } => {
                let r = if named.is_empty() {
                    self.exec_procedure(procedure, args, resp, line)
                } else {
                    Err(SqlError::lab(format!(
                        "named arguments are supported for sp_getapplock and sp_releaseapplock only, not {procedure}"
                    )))
                };
                simple(r, resp)
            }
            Statement::Declare { name, ty } => match scalar::cast_target(ty) {
                Ok(sql_type) => {
                    self.variables.insert(name.clone(), (Value::Null, sql_type));
                    Outcome::ok()
                }
                Err(e) => simple(Err(e), resp),
            },
            Statement::Security(statement) => {
                let r = self
                    .engine
                    .run_security(&self.login, &self.database, statement);
                simple(r, resp)
            }
            Statement::Reconfigure => {
                // RECONFIGURE needs ALTER SETTINGS (sysadmin, serveradmin): Microsoft Learn, RECONFIGURE.
                if !self.engine.is_sysadmin(&self.login) {
                    simple(Err(errors::no_permission_for_action()), resp)
                } else {
                    self.engine.reconfigure();
                    Outcome::ok()
                }
            }
            Statement::If { condition, then } => {
                match scalar::test(condition, &self.eval_context(), None) {
                    Ok(true) => {
                        let inner = Located {
                            statement: (**then).clone(),
                            line,
                        };
                        Box::pin(self.execute(&inner, resp)).await?
                    }
                    Ok(false) => Outcome::ok(),
                    Err(e) => {
                        raise(resp, &e, line);
                        Outcome::failed()
                    }
                }
            }
        })
    }

    /// EXEC of a system procedure: `sp_configure 'backup compression default', 0|1` only.
    fn exec_procedure(
        &mut self,
        procedure: &ObjectName,
        args: &[Expr],
        resp: &mut Response<'_>,
        line: i32,
    ) -> Result<(), SqlError> {
        let name = procedure.last();
        if !name.eq_ignore_ascii_case("sp_configure") {
            return Err(SqlError::lab(format!(
                "EXEC runs only sp_configure in the lab, not {procedure}"
            )));
        }
        let ctx = self.eval_context();
        let mut values = Vec::new();
        for arg in args {
            values.push(scalar::eval(arg, &ctx, None)?.0);
        }
        let option = match values.first() {
            Some(Value::Str(s)) => s.trim().to_string(),
            _ => {
                return Err(SqlError::lab(
                    "sp_configure without an option name lists options, which the lab does not",
                ));
            }
        };
        // 'backup compression default' is a basic option: no 'show advanced options' needed
        // (Microsoft Learn, "View or configure the backup compression default").
        if !option.eq_ignore_ascii_case("backup compression default") {
            return Err(errors::no_such_configuration_option(&option));
        }
        let on = match values.get(1) {
            None => {
                return Err(SqlError::lab(
                    "sp_configure without a value shows the option, which the lab does not",
                ));
            }
            Some(Value::Str(s)) => s.trim() == "1",
            Some(v) => matches!(
                v,
                Value::Int(1) | Value::BigInt(1) | Value::TinyInt(1) | Value::SmallInt(1)
            ),
        };
        if !self.engine.is_sysadmin(&self.login) {
            return Err(errors::no_permission_for_action());
        }
        let old = self.engine.configure_backup_compression_default(on);
        raise(
            resp,
            &errors::configuration_changed("backup compression default", old as i64, on as i64),
            line,
        );
        Ok(())
    }

    /// sp_getapplock / sp_releaseapplock: returns the procedure's return status. Parameter
    /// errors are messages plus -999, as SQL Server gives them.
    async fn exec_applock(
        &mut self,
        procedure: &ObjectName,
        args: &[Expr],
        named: &[(String, Expr)],
        resp: &mut Response<'_>,
        line: i32,
    ) -> Result<i32, Stop> {
        let getting = procedure.last().eq_ignore_ascii_case("sp_getapplock");
        let parameters: &[&str] = if getting {
            &[
                "@Resource",
                "@LockMode",
                "@LockOwner",
                "@LockTimeout",
                "@DbPrincipal",
            ]
        } else {
            &["@Resource", "@LockOwner", "@DbPrincipal"]
        };
        let ctx = self.eval_context();
        let mut values: Vec<Option<Value>> = vec![None; parameters.len()];
        if args.len() > parameters.len() {
            return Err(Stop::Error(errors::too_many_arguments(procedure.last())));
        }
        for (i, arg) in args.iter().enumerate() {
            values[i] = Some(scalar::eval(arg, &ctx, None).map_err(Stop::Error)?.0);
        }
        for (name, arg) in named {
            let Some(i) = parameters.iter().position(|p| p.eq_ignore_ascii_case(name)) else {
                return Err(Stop::Error(errors::not_a_parameter(name, procedure.last())));
            };
            values[i] = Some(scalar::eval(arg, &ctx, None).map_err(Stop::Error)?.0);
        }
        let text = |v: &Option<Value>| match v {
            Some(Value::Str(s)) => Some(s.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(format!("{other:?}")),
        };
        let get = |name: &str| {
            let i = parameters
                .iter()
                .position(|p| *p == name)
                .expect("known parameter");
            text(&values[i])
        };
        let refuse = |resp: &mut Response<'_>, e: SqlError| {
            raise(resp, &e, line);
            Ok(-999)
        };
        let owner_text = get("@LockOwner").unwrap_or_else(|| "Transaction".into());
        let Some(owner) = LockOwner::parse(&owner_text) else {
            return refuse(
                resp,
                applock::option_not_recognized(&owner_text, "@LockOwner"),
            );
        };
        let principal = get("@DbPrincipal").unwrap_or_else(|| "public".into());
        let Some(resource) = get("@Resource") else {
            return refuse(
                resp,
                errors::missing_parameter(procedure.last(), "@Resource"),
            );
        };
        let database_id = self.engine.database_id(&self.database).unwrap_or(1);
        let key = LockKey::new(database_id, &principal, &resource);
        if !getting {
            return match self.engine.app_locks.release(&key, self.spid, owner) {
                Ok(()) => Ok(0),
                Err(e) => refuse(resp, e),
            };
        }
        let mode_text = get("@LockMode").unwrap_or_default();
        let Some(mode) = LockMode::parse(&mode_text) else {
            return refuse(
                resp,
                applock::option_not_recognized(&mode_text, "@LockMode"),
            );
        };
        if owner == LockOwner::Transaction && self.tran_count == 0 {
            return refuse(resp, applock::no_transaction());
        }
        // The default timeout is @@LOCK_TIMEOUT, -1 (wait for ever) unless SET LOCK_TIMEOUT.
        let timeout = match values[3].as_ref() {
            None | Some(Value::Null) => -1,
            Some(Value::Int(n)) => i64::from(*n),
            Some(Value::BigInt(n)) => *n,
            Some(Value::SmallInt(n)) => i64::from(*n),
            Some(Value::TinyInt(n)) => i64::from(*n),
            Some(Value::Str(s)) => match s.trim().parse() {
                Ok(n) => n,
                Err(_) => {
                    return Err(Stop::Error(errors::conversion_failed(s, "varchar", "int")));
                }
            },
            Some(other) => {
                return Err(Stop::Error(SqlError::lab(format!(
                    "@LockTimeout must be an integer, not {other:?}"
                ))));
            }
        };
        let attention = self.attention.clone();
        let acquired = self
            .engine
            .app_locks
            .acquire(&key, self.spid, owner, mode, timeout, || {
                attention.should_stop()
            })
            .await;
        if acquired == applock::Acquired::Cancelled {
            return Err(Stop::Cancelled);
        }
        Ok(acquired as i32)
    }

    fn use_database(
        &mut self,
        name: &str,
        resp: &mut Response<'_>,
        _line: i32,
    ) -> Result<(), SqlError> {
        let canonical = self
            .engine
            .canonical_database_name(name)
            .ok_or_else(|| errors::database_does_not_exist(name))?;
        if self.engine.edition == Edition::AzureSqlDatabase
            && !canonical.eq_ignore_ascii_case(&self.database)
        {
            return Err(errors::azure_use_not_supported());
        }
        // A database left RESTORING (WITH NORECOVERY) cannot be opened.
        if self
            .engine
            .database_entry(&canonical)
            .is_some_and(|e| e.restoring_from.is_some())
        {
            return Err(errors::database_restoring(&canonical));
        }
        self.engine
            .check_database_access(&self.login.name, &canonical)?;
        let old = std::mem::replace(&mut self.database, canonical.clone());
        self.engine.set_session_database(self.spid, &canonical);
        token::env_database(resp.buf(), &canonical, &old);
        let info = errors::changed_database(&canonical);
        raise(resp, &info, 1);
        Ok(())
    }
}

/// sys.dm_exec_requests.command for a statement.
fn command_name(statement: &Statement) -> &'static str {
    match statement {
        Statement::Select(_) => "SELECT",
        Statement::Update(_) => "UPDATE",
        Statement::Use(_) => "USE",
        Statement::Kill(_) => "KILL",
        Statement::Set { .. } | Statement::SetLanguage(_) => "SET OPTION ON",
        Statement::BeginTran => "BEGIN TRANSACTION",
        Statement::Commit => "COMMIT TRANSACTION",
        Statement::Rollback => "ROLLBACK TRANSACTION",
        Statement::Backup(_) => "BACKUP DATABASE",
        Statement::Restore(r) => match r.kind {
            RestoreKind::VerifyOnly => "RESTORE VERIFYON",
            RestoreKind::HeaderOnly | RestoreKind::FileListOnly => "RESTORE HEADERON",
            RestoreKind::Database(_) => "RESTORE DATABASE",
        },
        Statement::DropDatabase { .. } => "DROP DATABASE",
        Statement::CheckDb(_) => "DBCC TABLE CHECK",
        Statement::RenameDatabase { .. } => "ALTER DATABASE",
        Statement::Exec { .. } => "EXECUTE",
        Statement::Declare { .. } => "DECLARE",
        Statement::Reconfigure => "RECONFIGURE",
        Statement::If { then, .. } => command_name(then),
        Statement::Security(_) => "CREATE LOGIN",
    }
}

/// How an application-lock procedure call stopped short of a return status.
enum Stop {
    Cancelled,
    Error(SqlError),
}

fn is_applock_procedure(procedure: &ObjectName) -> bool {
    ["sp_getapplock", "sp_releaseapplock"]
        .iter()
        .any(|p| procedure.last().eq_ignore_ascii_case(p))
}

/// The parameter names an sp_executesql @params declaration lists, lower-cased
/// ("@db nvarchar(128), @n int OUTPUT" -> ["@db", "@n"]).
fn declared_parameters(declaration: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0;
    let mut start_of_item = true;
    let mut chars = declaration.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => start_of_item = true,
            '@' if start_of_item => {
                let end = declaration[i..]
                    .find(|c: char| c.is_whitespace() || c == ',')
                    .map_or(declaration.len(), |e| i + e);
                names.push(declaration[i..end].to_lowercase());
                start_of_item = false;
                while chars.peek().is_some_and(|(j, _)| *j < end) {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_headers_are_skipped() {
        let mut payload = vec![22, 0, 0, 0, 18, 0, 0, 0, 2, 0];
        payload.extend_from_slice(&[0; 12]);
        payload.extend_from_slice(&[b'S', 0]);
        assert_eq!(skip_all_headers(&payload), Some(&[b'S', 0][..]));
        assert_eq!(skip_all_headers(&[200, 0, 0, 0]), None);
        assert_eq!(skip_all_headers(&[1]), None);
    }

    #[test]
    fn sp_executesql_declarations() {
        assert_eq!(
            declared_parameters("@db nvarchar(128), @n int OUTPUT,@b bit"),
            vec!["@db", "@n", "@b"]
        );
        assert_eq!(declared_parameters("@d decimal(10, 2)"), vec!["@d"]);
        assert!(declared_parameters("").is_empty());
    }

    #[tokio::test]
    async fn attention_wakes_a_waiter() {
        let attention = Arc::new(Attention::default());
        assert!(!attention.should_stop());
        let waiter = {
            let a = attention.clone();
            tokio::spawn(async move { a.stopped().await })
        };
        tokio::task::yield_now().await;
        attention.signal();
        waiter.await.unwrap();
        assert!(attention.pending());
        attention.acknowledge();
        assert!(!attention.pending());
        attention.close();
        assert!(attention.should_stop());
    }
}
