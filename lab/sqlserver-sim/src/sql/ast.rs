//! The statements the lab understands, as parsed.

/// One statement with the batch line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub statement: Statement,
    pub line: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Select(Select),
    Update(Update),
    Use(String),
    /// SET <option> ON|OFF
    Set {
        option: String,
        on: bool,
    },
    /// SET LANGUAGE <name>
    SetLanguage(String),
    BeginTran,
    Commit,
    Rollback,
    Backup(Backup),
    Restore(Restore),
    DropDatabase {
        names: Vec<String>,
        if_exists: bool,
    },
    CheckDb(CheckDb),
    /// ALTER DATABASE [name] MODIFY NAME = [new_name]
    RenameDatabase {
        name: String,
        new_name: String,
    },
    /// EXEC [@status =] procedure arg, ... [@name = ] arg, ... (positional arguments first)
    Exec {
        procedure: ObjectName,
        args: Vec<Expr>,
        /// `@name = value` arguments, names as written (with the @).
        named: Vec<(String, Expr)>,
        /// The variable that receives the return status, lower-cased.
        status_into: Option<String>,
    },
    /// DECLARE @name type: the variable starts as NULL and lives until the batch ends.
    Declare {
        name: String,
        ty: TypeName,
    },
    /// RECONFIGURE [WITH OVERRIDE]
    Reconfigure,
    /// IF condition statement
    If {
        condition: Condition,
        then: Box<Statement>,
    },
    /// CREATE LOGIN, CREATE USER, ALTER [SERVER] ROLE ... ADD MEMBER, GRANT.
    Security(SecurityStatement),
    /// KILL session_id (no UOW, no WITH STATUSONLY).
    Kill(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SecurityStatement {
    /// CREATE LOGIN [name] WITH PASSWORD = N'...'
    CreateLogin { name: String, password: String },
    /// CREATE USER [name] [FOR|FROM LOGIN [login]]
    CreateUser { name: String, login: Option<String> },
    /// ALTER [SERVER] ROLE role ADD MEMBER member
    AlterRole {
        role: String,
        member: String,
        server: bool,
    },
    /// GRANT permission [, ...] [ON object] TO principal
    Grant {
        permissions: Vec<String>,
        on: Option<ObjectName>,
        to: String,
    },
}

/// A multi-part name such as msdb.dbo.backupset, parts in order, empty parts
/// kept (db..table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName {
    pub parts: Vec<String>,
}

impl ObjectName {
    pub fn last(&self) -> &str {
        self.parts.last().map(String::as_str).unwrap_or("")
    }
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.parts.join("."))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Integer(i128),
    /// A decimal literal as written.
    Decimal(String),
    Str {
        value: String,
        national: bool,
    },
    Binary(Vec<u8>),
}

/// A type name in CAST/CONVERT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeName {
    pub name: String,
    /// (n) or (p, s); `None` inside for (max).
    pub args: Vec<Option<u32>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Literal),
    /// A column reference, possibly qualified (alias.column).
    Column(Vec<String>),
    /// @@SPID, @@VERSION, ...
    Global(String),
    /// A local variable DECLAREd earlier in the batch, lower-cased.
    Variable(String),
    Function {
        name: String,
        args: Vec<Expr>,
    },
    Cast {
        expr: Box<Expr>,
        ty: TypeName,
    },
    Negate(Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Compare(Expr, CompareOp, Expr),
    IsNull { expr: Expr, negated: bool },
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// * or alias.*
    Star(Option<String>),
    Expr {
        expr: Expr,
        alias: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableRef {
    pub name: ObjectName,
    pub alias: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub table: TableRef,
    pub on: Condition,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    pub expr: Expr,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    pub top: Option<u64>,
    pub items: Vec<SelectItem>,
    pub from: Option<TableRef>,
    pub joins: Vec<Join>,
    pub filter: Option<Condition>,
    pub order_by: Vec<OrderItem>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub table: ObjectName,
    pub assignments: Vec<(String, Expr)>,
    pub filter: Option<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BackupOption {
    Format,
    NoFormat,
    Init,
    NoInit,
    Skip,
    NoSkip,
    CopyOnly,
    Differential,
    Checksum,
    NoChecksum,
    ContinueAfterError,
    StopOnError,
    Compression,
    NoCompression,
    Stats(Option<u32>),
    MaxTransferSize(u64),
    BufferCount(u64),
    BlockSize(u64),
    Description(String),
    Name(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    pub database: String,
    pub disks: Vec<String>,
    pub options: Vec<BackupOption>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RestoreKind {
    VerifyOnly,
    HeaderOnly,
    FileListOnly,
    Database(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum RestoreOption {
    Move { logical: String, physical: String },
    Replace,
    Recovery,
    NoRecovery,
    Stats(Option<u32>),
    File(u32),
    Checksum,
    NoChecksum,
    ContinueAfterError,
    StopOnError,
    MaxTransferSize(u64),
    BufferCount(u64),
    LoadHistory,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Restore {
    pub kind: RestoreKind,
    pub disks: Vec<String>,
    pub options: Vec<RestoreOption>,
}

/// The database a DBCC CHECKDB names: a name, an id, or none (the current one).
#[derive(Debug, Clone, PartialEq)]
pub enum DbccTarget {
    Current,
    Name(String),
    Id(i64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckDb {
    pub target: DbccTarget,
    pub no_infomsgs: bool,
}
