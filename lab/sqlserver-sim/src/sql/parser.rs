//! Recursive-descent parser over lexer tokens. The whole batch is parsed
//! before anything runs, as SQL Server compiles a batch: one syntax error and
//! no statement executes.

use super::SyntaxError;
use super::ast::*;
use super::lexer::{Token, TokenKind, tokenize};

/// T-SQL reserved keywords that can appear where the lab's grammar wants
/// something else; a syntax error at one is Msg 156 rather than Msg 102.
const RESERVED: &[&str] = &[
    "ADD",
    "ALL",
    "ALTER",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "BACKUP",
    "BEGIN",
    "BETWEEN",
    "BY",
    "CASE",
    "CHECK",
    "CHECKPOINT",
    "CLOSE",
    "COLUMN",
    "COMMIT",
    "CONSTRAINT",
    "CONVERT",
    "CREATE",
    "CROSS",
    "CURSOR",
    "DATABASE",
    "DBCC",
    "DEALLOCATE",
    "DECLARE",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISK",
    "DISTINCT",
    "DROP",
    "ELSE",
    "END",
    "EXCEPT",
    "EXEC",
    "EXECUTE",
    "EXISTS",
    "FETCH",
    "FILE",
    "FOR",
    "FROM",
    "FULL",
    "FUNCTION",
    "GOTO",
    "GRANT",
    "GROUP",
    "HAVING",
    "IF",
    "IN",
    "INDEX",
    "INNER",
    "INSERT",
    "INTERSECT",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "KILL",
    "LEFT",
    "LIKE",
    "MERGE",
    "NOT",
    "NULL",
    "OF",
    "OFF",
    "ON",
    "OPEN",
    "OPTION",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PRIMARY",
    "PRINT",
    "PROC",
    "PROCEDURE",
    "RAISERROR",
    "RECONFIGURE",
    "RESTORE",
    "RETURN",
    "REVOKE",
    "RIGHT",
    "ROLLBACK",
    "SAVE",
    "SELECT",
    "SET",
    "SHUTDOWN",
    "TABLE",
    "THEN",
    "TO",
    "TOP",
    "TRAN",
    "TRANSACTION",
    "TRUNCATE",
    "UNION",
    "UNIQUE",
    "UPDATE",
    "USE",
    "VALUES",
    "VIEW",
    "WAITFOR",
    "WHEN",
    "WHERE",
    "WHILE",
    "WITH",
];

/// Built-in functions the lab evaluates; any other name is Msg 195, as SQL Server reports an
/// unknown function when it compiles the batch.
pub const FUNCTIONS: &[&str] = &[
    "SERVERPROPERTY",
    "DB_ID",
    "DB_NAME",
    "SUSER_SNAME",
    "SUSER_NAME",
    "IS_SRVROLEMEMBER",
    "IS_ROLEMEMBER",
    "HAS_PERMS_BY_NAME",
    "GETDATE",
    "GETUTCDATE",
    "SYSDATETIME",
    "SYSUTCDATETIME",
    "ISNULL",
    "COUNT",
];

/// Global variables the lab knows; any other @@name (and any @variable) is Msg 137.
pub const GLOBALS: &[&str] = &[
    "@@SPID",
    "@@VERSION",
    "@@SERVERNAME",
    "@@SERVICENAME",
    "@@TRANCOUNT",
    "@@LANGUAGE",
];

fn must_declare(name: &str, line: i32) -> SyntaxError {
    let mut e = SyntaxError::new(
        137,
        format!("Must declare the scalar variable \"{name}\"."),
        line,
    );
    e.state = 2;
    e
}

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// Keywords and operators of valid T-SQL the lab's parser does not take. A syntax error at one
/// of them is reported as the lab's own Msg 50000, not as a real-looking 102/156 that would
/// send someone to "fix" correct SQL.
const LAB_GAPS: &[&str] = &[
    "PRINT",
    "RAISERROR",
    "THROW",
    "WAITFOR",
    "WHILE",
    "ELSE",
    "INSERT",
    "DELETE",
    "MERGE",
    "TRUNCATE",
    "GOTO",
    "RETURN",
    "BREAK",
    "CONTINUE",
    "DENY",
    "REVOKE",
    "CHECKPOINT",
    "KILL",
    "OPEN",
    "CLOSE",
    "FETCH",
    "DEALLOCATE",
    "BULK",
    "SAVE",
    "LIKE",
    "GROUP",
    "HAVING",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "CROSS",
    "OUTER",
    "APPLY",
    "CASE",
    "BETWEEN",
    "EXISTS",
    "OVER",
    "PIVOT",
    "INTO",
    "OFFSET",
    "+",
    "-",
    "*",
    "/",
    "%",
    "&",
    "|",
    "^",
    "~",
];

/// Built-in functions of SQL Server (Microsoft Learn, "What are the SQL database functions?")
/// the lab does not evaluate: calling one is a lab limit (Msg 50000), not Msg 195.
const SQL_SERVER_FUNCTIONS: &[&str] = &[
    "NEWID",
    "NEWSEQUENTIALID",
    "CONVERT",
    "TRY_CAST",
    "TRY_CONVERT",
    "PARSE",
    "DATEADD",
    "DATEDIFF",
    "DATEDIFF_BIG",
    "DATEPART",
    "DATENAME",
    "DATEFROMPARTS",
    "EOMONTH",
    "YEAR",
    "MONTH",
    "DAY",
    "SYSDATETIMEOFFSET",
    "CURRENT_TIMESTAMP",
    "LEN",
    "DATALENGTH",
    "LEFT",
    "RIGHT",
    "SUBSTRING",
    "CHARINDEX",
    "PATINDEX",
    "REPLACE",
    "REPLICATE",
    "LOWER",
    "UPPER",
    "LTRIM",
    "RTRIM",
    "TRIM",
    "CONCAT_WS",
    "STRING_AGG",
    "STRING_SPLIT",
    "STUFF",
    "FORMAT",
    "QUOTENAME",
    "REVERSE",
    "SPACE",
    "STR",
    "ABS",
    "CEILING",
    "FLOOR",
    "ROUND",
    "POWER",
    "SQRT",
    "RAND",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "COUNT_BIG",
    "ROW_NUMBER",
    "RANK",
    "DENSE_RANK",
    "NTILE",
    "IIF",
    "CHOOSE",
    "NULLIF",
    "JSON_VALUE",
    "JSON_QUERY",
    "JSON_MODIFY",
    "ISJSON",
    "OPENJSON",
    "OBJECT_ID",
    "OBJECT_NAME",
    "SCHEMA_NAME",
    "SCHEMA_ID",
    "USER_NAME",
    "USER_ID",
    "SUSER_ID",
    "SUSER_SID",
    "ORIGINAL_LOGIN",
    "HAS_DBACCESS",
    "DATABASEPROPERTYEX",
    "FILE_ID",
    "FILE_NAME",
    "APP_NAME",
    "HOST_NAME",
    "HOST_ID",
    "ERROR_MESSAGE",
    "ERROR_NUMBER",
    "ERROR_SEVERITY",
    "ERROR_STATE",
    "ERROR_LINE",
    "SCOPE_IDENTITY",
    "IDENT_CURRENT",
    "CHECKSUM",
    "BINARY_CHECKSUM",
    "HASHBYTES",
    "COMPRESS",
    "DECOMPRESS",
    "SESSION_CONTEXT",
    "CONTEXT_INFO",
    "FORMATMESSAGE",
    "TYPE_NAME",
    "TYPE_ID",
    "COL_NAME",
    "COL_LENGTH",
    "COLUMNPROPERTY",
    "OBJECTPROPERTY",
];

/// Msg 50000 for valid T-SQL the lab does not take.
fn lab_gap(what: &str, line: i32) -> SyntaxError {
    SyntaxError {
        number: 50000,
        class: 16,
        state: 1,
        text: format!(
            "[octobackup lab] {what} is valid T-SQL that the lab SQL Server does not run (it takes the statements octobackup and the lab's tests send; see lab/sqlserver-sim/README.md)."
        ),
        line,
    }
}

/// Parses a batch into statements (the syntax of SQL Server 2022).
pub fn parse_batch(sql: &str) -> Result<Vec<Located>, SyntaxError> {
    parse_batch_for_version(sql, 16)
}

/// Parses a batch as a server of this major version does: syntax added later is a syntax error.
pub fn parse_batch_for_version(sql: &str, major: u8) -> Result<Vec<Located>, SyntaxError> {
    parse_batch_with_variables(sql, major, Vec::new())
}

/// Parses a batch in which `declared` variables (lower-cased, with '@') exist already, as
/// sp_executesql's parameters do.
pub fn parse_batch_with_variables(
    sql: &str,
    major: u8,
    declared: Vec<String>,
) -> Result<Vec<Located>, SyntaxError> {
    let tokens = tokenize(sql)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        major,
        declared,
    };
    let mut statements = Vec::new();
    loop {
        while parser.eat_symbol(";") {}
        let Some(token) = parser.peek() else { break };
        let line = token.line;
        let statement = parser.statement().map_err(|e| {
            // a syntax error where valid T-SQL the lab lacks stands
            match parser.peek() {
                Some(t)
                    if matches!(e.number, 102 | 156)
                        && LAB_GAPS.iter().any(|g| g.eq_ignore_ascii_case(&t.text)) =>
                {
                    lab_gap(&format!("'{}' here", t.text), t.line)
                }
                _ => e,
            }
        })?;
        statements.push(Located { statement, line });
    }
    Ok(statements)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// The server's major version (12 = SQL Server 2014, 13 = 2016, ...).
    major: u8,
    /// Local variables DECLAREd so far in the batch, lower-cased.
    declared: Vec<String>,
}

type PResult<T> = Result<T, SyntaxError>;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_at(&self, ahead: usize) -> Option<&Token> {
        self.tokens.get(self.pos + ahead)
    }

    fn advance(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn at_word(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| t.is_word(kw))
    }

    fn eat_word(&mut self, kw: &str) -> bool {
        if self.at_word(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, kw: &str) -> PResult<()> {
        if self.eat_word(kw) {
            Ok(())
        } else {
            Err(self.error_here())
        }
    }

    fn at_symbol(&self, s: &str) -> bool {
        self.peek().is_some_and(|t| t.is_symbol(s))
    }

    fn eat_symbol(&mut self, s: &str) -> bool {
        if self.at_symbol(s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_symbol(&mut self, s: &str) -> PResult<()> {
        if self.eat_symbol(s) {
            Ok(())
        } else {
            Err(self.error_here())
        }
    }

    /// "Incorrect syntax near ..." at the current token (or the last one at the end of the batch).
    fn error_here(&self) -> SyntaxError {
        match self.peek() {
            Some(token) => error_near(token),
            None => match self.tokens.last() {
                Some(last) => {
                    let mut e = error_near(last);
                    // at the end of the batch SQL Server always reports Msg 102
                    e.number = 102;
                    e.text = format!("Incorrect syntax near '{}'.", near_text(last));
                    e
                }
                None => SyntaxError::new(102, "Incorrect syntax near ''.", 1),
            },
        }
    }

    fn line(&self) -> i32 {
        self.peek()
            .or(self.tokens.last())
            .map(|t| t.line)
            .unwrap_or(1)
    }

    /// An identifier: a non-reserved word or a delimited identifier.
    fn identifier(&mut self) -> PResult<String> {
        match self.peek().map(|t| t.kind.clone()) {
            Some(TokenKind::QuotedIdent(name)) => {
                self.pos += 1;
                Ok(name)
            }
            Some(TokenKind::Word(w)) if !is_reserved(&w) && !w.starts_with('@') => {
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.error_here()),
        }
    }

    fn at_identifier(&self) -> bool {
        match self.peek().map(|t| &t.kind) {
            Some(TokenKind::QuotedIdent(_)) => true,
            Some(TokenKind::Word(w)) => !is_reserved(w) && !w.starts_with('@'),
            _ => false,
        }
    }

    /// db.schema.table, with empty parts allowed in the middle (db..table).
    fn object_name(&mut self) -> PResult<ObjectName> {
        let mut parts = vec![self.identifier()?];
        while self.eat_symbol(".") {
            if self.at_symbol(".") {
                parts.push(String::new());
                continue;
            }
            parts.push(self.identifier()?);
        }
        if parts.len() > 4 {
            return Err(SyntaxError::new(
                117,
                format!(
                    "The object name '{}' contains more than the maximum number of prefixes. The maximum is 3.",
                    parts.join(".")
                ),
                self.line(),
            ));
        }
        Ok(ObjectName { parts })
    }

    fn string(&mut self) -> PResult<String> {
        match self.peek().map(|t| t.kind.clone()) {
            Some(TokenKind::Str { value, .. }) => {
                self.pos += 1;
                Ok(value)
            }
            _ => Err(self.error_here()),
        }
    }

    fn unsigned(&mut self) -> PResult<u64> {
        match self.peek().map(|t| t.kind.clone()) {
            Some(TokenKind::Number(n)) if !n.contains('.') => {
                let value = n.parse().map_err(|_| self.error_here())?;
                self.pos += 1;
                Ok(value)
            }
            _ => Err(self.error_here()),
        }
    }

    fn statement(&mut self) -> PResult<Statement> {
        let token = self.peek().cloned().expect("caller checked");
        let TokenKind::Word(word) = &token.kind else {
            return Err(error_near(&token));
        };
        match word.to_ascii_uppercase().as_str() {
            "SELECT" => self.select().map(Statement::Select),
            "UPDATE" => self.update().map(Statement::Update),
            "USE" => {
                self.pos += 1;
                Ok(Statement::Use(self.identifier()?))
            }
            "SET" => self.set(),
            "BEGIN" => {
                self.pos += 1;
                if !(self.eat_word("TRAN") || self.eat_word("TRANSACTION")) {
                    if self.peek().is_some() {
                        return Err(lab_gap("a BEGIN ... END block (or BEGIN TRY)", token.line));
                    }
                    return Err(self.error_here());
                }
                if self.at_identifier() {
                    self.identifier()?;
                }
                Ok(Statement::BeginTran)
            }
            "COMMIT" | "ROLLBACK" => {
                self.pos += 1;
                if (self.eat_word("TRAN") || self.eat_word("TRANSACTION") || self.eat_word("WORK"))
                    && self.at_identifier()
                {
                    self.identifier()?;
                }
                Ok(if word.eq_ignore_ascii_case("COMMIT") {
                    Statement::Commit
                } else {
                    Statement::Rollback
                })
            }
            "BACKUP" => self.backup().map(Statement::Backup),
            "RESTORE" => self.restore().map(Statement::Restore),
            "DROP" => self.drop_database(),
            "ALTER"
                if self
                    .peek_at(1)
                    .is_some_and(|t| t.is_word("ROLE") || t.is_word("SERVER")) =>
            {
                self.alter_role().map(Statement::Security)
            }
            "ALTER" => self.alter_database(),
            "CREATE" | "GRANT" => self.security().map(Statement::Security),
            "DBCC" => self.dbcc(),
            "EXEC" | "EXECUTE" => {
                self.pos += 1;
                let status_into = match self.named_argument() {
                    Some(name) => Some(self.variable(&name)?),
                    None => None,
                };
                let procedure = self.object_name()?;
                let (mut args, mut named) = (Vec::new(), Vec::new());
                if self.peek().is_some_and(|t| !t.is_symbol(";")) && !self.at_statement_start() {
                    loop {
                        match self.named_argument() {
                            Some(name) => named.push((name, self.expr()?)),
                            // Positional arguments may not follow named ones (Msg 119).
                            None if !named.is_empty() => return Err(self.error_here()),
                            None => args.push(self.expr()?),
                        }
                        if !self.eat_symbol(",") {
                            break;
                        }
                    }
                }
                Ok(Statement::Exec {
                    procedure,
                    args,
                    named,
                    status_into,
                })
            }
            "DECLARE" => {
                self.pos += 1;
                let name = match self.peek().map(|t| t.kind.clone()) {
                    Some(TokenKind::Word(w)) if w.starts_with('@') && !w.starts_with("@@") => w,
                    _ => return Err(self.error_here()),
                };
                self.pos += 1;
                self.eat_word("AS");
                let ty = self.type_name()?;
                if self
                    .peek()
                    .is_some_and(|t| t.is_symbol("=") || t.is_symbol(","))
                {
                    return Err(lab_gap(
                        "DECLARE with an initial value or several variables",
                        token.line,
                    ));
                }
                let name = name.to_lowercase();
                if !self.declared.contains(&name) {
                    self.declared.push(name.clone());
                }
                Ok(Statement::Declare { name, ty })
            }
            "KILL" => {
                self.pos += 1;
                let spid = self.unsigned()?;
                if self.at_word("WITH") {
                    return Err(lab_gap("KILL ... WITH STATUSONLY", token.line));
                }
                Ok(Statement::Kill(spid))
            }
            "RECONFIGURE" => {
                self.pos += 1;
                if self.eat_word("WITH") {
                    self.expect_word("OVERRIDE")?;
                }
                Ok(Statement::Reconfigure)
            }
            // IF <condition> <one statement>: no ELSE, no BEGIN...END.
            "IF" => {
                self.pos += 1;
                let condition = self.condition()?;
                if self.peek().is_none() {
                    return Err(self.error_here());
                }
                let then = self.statement()?;
                Ok(Statement::If {
                    condition,
                    then: Box::new(then),
                })
            }
            _ => Err(error_near(&token)),
        }
    }

    /// Whether the next token starts another statement (a procedure call without arguments).
    /// `@name =` at the cursor (an EXEC's named argument or return-status target): eats it and
    /// returns the name as written.
    fn named_argument(&mut self) -> Option<String> {
        match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Word(w))
                if w.starts_with('@')
                    && !w.starts_with("@@")
                    && self.peek_at(1).is_some_and(|t| t.is_symbol("=")) =>
            {
                let name = w.clone();
                self.pos += 2;
                Some(name)
            }
            _ => None,
        }
    }

    /// A local variable by name: Msg 137 unless DECLAREd earlier in the batch.
    fn variable(&self, name: &str) -> PResult<String> {
        let lower = name.to_lowercase();
        if self.declared.contains(&lower) {
            Ok(lower)
        } else {
            let line = self.peek().map_or(1, |t| t.line);
            Err(must_declare(name, line))
        }
    }

    fn at_statement_start(&self) -> bool {
        [
            "SELECT",
            "UPDATE",
            "USE",
            "SET",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "BACKUP",
            "RESTORE",
            "DROP",
            "ALTER",
            "DBCC",
            "EXEC",
            "EXECUTE",
            "RECONFIGURE",
            "IF",
            "DECLARE",
            "CREATE",
            "GRANT",
            "KILL",
        ]
        .iter()
        .any(|w| self.at_word(w))
    }

    fn select(&mut self) -> PResult<Select> {
        self.expect_word("SELECT")?;
        let mut top = None;
        if self.eat_word("TOP") {
            let parens = self.eat_symbol("(");
            top = Some(self.unsigned()?);
            if parens {
                self.expect_symbol(")")?;
            }
        }
        let mut items = vec![self.select_item()?];
        while self.eat_symbol(",") {
            items.push(self.select_item()?);
        }
        let mut from = None;
        let mut joins = Vec::new();
        if self.eat_word("FROM") {
            from = Some(self.table_ref()?);
            loop {
                if self.eat_word("INNER") {
                    self.expect_word("JOIN")?;
                } else if !self.eat_word("JOIN") {
                    break;
                }
                let table = self.table_ref()?;
                self.expect_word("ON")?;
                let on = self.condition()?;
                joins.push(Join { table, on });
            }
        }
        let filter = if self.eat_word("WHERE") {
            Some(self.condition()?)
        } else {
            None
        };
        let mut order_by = Vec::new();
        if self.eat_word("ORDER") {
            self.expect_word("BY")?;
            loop {
                let expr = self.expr()?;
                let descending = if self.eat_word("DESC") {
                    true
                } else {
                    self.eat_word("ASC");
                    false
                };
                order_by.push(OrderItem { expr, descending });
                if !self.eat_symbol(",") {
                    break;
                }
            }
        }
        Ok(Select {
            top,
            items,
            from,
            joins,
            filter,
            order_by,
        })
    }

    fn select_item(&mut self) -> PResult<SelectItem> {
        if self.eat_symbol("*") {
            return Ok(SelectItem::Star(None));
        }
        // alias.*
        if self.at_identifier()
            && self.peek_at(1).is_some_and(|t| t.is_symbol("."))
            && self.peek_at(2).is_some_and(|t| t.is_symbol("*"))
        {
            let qualifier = self.identifier()?;
            self.pos += 2;
            return Ok(SelectItem::Star(Some(qualifier)));
        }
        let expr = self.expr()?;
        let alias = self.alias()?;
        Ok(SelectItem::Expr { expr, alias })
    }

    /// [AS] alias, where a select-list alias may also be a string literal.
    fn alias(&mut self) -> PResult<Option<String>> {
        if self.eat_word("AS") {
            if let Some(TokenKind::Str { value, .. }) = self.peek().map(|t| t.kind.clone()) {
                self.pos += 1;
                return Ok(Some(value));
            }
            return self.identifier().map(Some);
        }
        if self.at_identifier() {
            return self.identifier().map(Some);
        }
        Ok(None)
    }

    fn table_ref(&mut self) -> PResult<TableRef> {
        let name = self.object_name()?;
        // [AS] alias
        let alias = if self.eat_word("AS") || self.at_identifier() {
            Some(self.identifier()?)
        } else {
            None
        };
        Ok(TableRef { name, alias })
    }

    fn condition(&mut self) -> PResult<Condition> {
        let mut left = self.and_condition()?;
        while self.eat_word("OR") {
            let right = self.and_condition()?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_condition(&mut self) -> PResult<Condition> {
        let mut left = self.not_condition()?;
        while self.eat_word("AND") {
            let right = self.not_condition()?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not_condition(&mut self) -> PResult<Condition> {
        if self.eat_word("NOT") {
            return Ok(Condition::Not(Box::new(self.not_condition()?)));
        }
        if self.at_symbol("(") && self.parenthesised_condition_ahead() {
            self.pos += 1;
            let inner = self.condition()?;
            self.expect_symbol(")")?;
            return Ok(inner);
        }
        let left = self.expr()?;
        if self.eat_word("IS") {
            let negated = self.eat_word("NOT");
            self.expect_word("NULL")?;
            return Ok(Condition::IsNull {
                expr: left,
                negated,
            });
        }
        let op = match self.peek().map(|t| t.kind.clone()) {
            Some(TokenKind::Symbol("=")) => CompareOp::Eq,
            Some(TokenKind::Symbol("<>")) | Some(TokenKind::Symbol("!=")) => CompareOp::NotEq,
            Some(TokenKind::Symbol("<")) => CompareOp::Lt,
            Some(TokenKind::Symbol("<=")) => CompareOp::LtEq,
            Some(TokenKind::Symbol(">")) => CompareOp::Gt,
            Some(TokenKind::Symbol(">=")) => CompareOp::GtEq,
            _ => return Err(self.error_here()),
        };
        self.pos += 1;
        let right = self.expr()?;
        Ok(Condition::Compare(left, op, right))
    }

    /// Whether the '(' at the cursor opens a condition rather than an expression:
    /// it does when a comparison, AND/OR or IS appears before its matching ')'.
    fn parenthesised_condition_ahead(&self) -> bool {
        let mut depth = 0;
        for token in &self.tokens[self.pos..] {
            if token.is_symbol("(") {
                depth += 1;
            } else if token.is_symbol(")") {
                depth -= 1;
                if depth == 0 {
                    return false;
                }
            } else if depth == 1
                && (matches!(&token.kind, TokenKind::Symbol(s) if ["=", "<>", "!=", "<", "<=", ">", ">="].contains(s))
                    || token.is_word("AND")
                    || token.is_word("OR")
                    || token.is_word("IS")
                    || token.is_word("NOT"))
            {
                return true;
            }
        }
        false
    }

    fn expr(&mut self) -> PResult<Expr> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.error_here());
        };
        match &token.kind {
            TokenKind::Number(n) => {
                self.pos += 1;
                if n.contains('.') {
                    Ok(Expr::Literal(Literal::Decimal(n.clone())))
                } else {
                    let value = n.parse::<i128>().map_err(|_| error_near(&token))?;
                    Ok(Expr::Literal(Literal::Integer(value)))
                }
            }
            TokenKind::Str { value, national } => {
                self.pos += 1;
                Ok(Expr::Literal(Literal::Str {
                    value: value.clone(),
                    national: *national,
                }))
            }
            TokenKind::Binary(bytes) => {
                self.pos += 1;
                Ok(Expr::Literal(Literal::Binary(bytes.clone())))
            }
            TokenKind::Symbol("-") => {
                self.pos += 1;
                Ok(Expr::Negate(Box::new(self.expr()?)))
            }
            TokenKind::Symbol("(") => {
                self.pos += 1;
                let inner = self.expr()?;
                self.expect_symbol(")")?;
                Ok(inner)
            }
            TokenKind::Word(w) if w.eq_ignore_ascii_case("NULL") => {
                self.pos += 1;
                Ok(Expr::Literal(Literal::Null))
            }
            TokenKind::Word(w) if w.starts_with("@@") => {
                let name = w.to_ascii_uppercase();
                if !GLOBALS.contains(&name.as_str()) {
                    return Err(must_declare(w, token.line));
                }
                self.pos += 1;
                Ok(Expr::Global(name))
            }
            TokenKind::Word(w) if w.starts_with('@') => {
                let name = self.variable(w)?;
                self.pos += 1;
                Ok(Expr::Variable(name))
            }
            TokenKind::Word(w)
                if w.eq_ignore_ascii_case("CAST")
                    && self.peek_at(1).is_some_and(|t| t.is_symbol("(")) =>
            {
                self.pos += 2;
                let expr = self.expr()?;
                self.expect_word("AS")?;
                let ty = self.type_name()?;
                self.expect_symbol(")")?;
                Ok(Expr::Cast {
                    expr: Box::new(expr),
                    ty,
                })
            }
            TokenKind::Word(w)
                if w.eq_ignore_ascii_case("CONVERT")
                    && self.peek_at(1).is_some_and(|t| t.is_symbol("(")) =>
            {
                self.pos += 2;
                let ty = self.type_name()?;
                self.expect_symbol(",")?;
                let expr = self.expr()?;
                if self.eat_symbol(",") {
                    self.unsigned()?;
                }
                self.expect_symbol(")")?;
                Ok(Expr::Cast {
                    expr: Box::new(expr),
                    ty,
                })
            }
            TokenKind::Word(w)
                if !is_reserved(w) && self.peek_at(1).is_some_and(|t| t.is_symbol("(")) =>
            {
                let name = w.to_ascii_uppercase();
                if SQL_SERVER_FUNCTIONS.contains(&name.as_str()) {
                    return Err(lab_gap(
                        &format!("the built-in function {name}()"),
                        token.line,
                    ));
                }
                if !FUNCTIONS.contains(&name.as_str()) {
                    let mut e = SyntaxError::new(
                        195,
                        format!("'{w}' is not a recognized built-in function name."),
                        token.line,
                    );
                    e.state = 10;
                    return Err(e);
                }
                self.pos += 2;
                let mut args = Vec::new();
                if name == "COUNT" && self.eat_symbol("*") {
                    args.push(Expr::Column(vec!["*".into()]));
                } else if !self.at_symbol(")") {
                    args.push(self.expr()?);
                    while self.eat_symbol(",") {
                        args.push(self.expr()?);
                    }
                }
                self.expect_symbol(")")?;
                Ok(Expr::Function { name, args })
            }
            TokenKind::Word(_) | TokenKind::QuotedIdent(_) => {
                let mut parts = vec![self.identifier()?];
                while self.at_symbol(".") && !self.peek_at(1).is_some_and(|t| t.is_symbol("*")) {
                    self.pos += 1;
                    parts.push(self.identifier()?);
                }
                Ok(Expr::Column(parts))
            }
            _ => Err(error_near(&token)),
        }
    }

    fn type_name(&mut self) -> PResult<TypeName> {
        let name = self.identifier()?.to_ascii_lowercase();
        let mut args = Vec::new();
        if self.eat_symbol("(") {
            loop {
                if self.eat_word("MAX") {
                    args.push(None);
                } else {
                    let n = self.unsigned()?;
                    args.push(Some(u32::try_from(n).map_err(|_| self.error_here())?));
                }
                if !self.eat_symbol(",") {
                    break;
                }
            }
            self.expect_symbol(")")?;
        }
        Ok(TypeName { name, args })
    }

    fn update(&mut self) -> PResult<Update> {
        self.expect_word("UPDATE")?;
        let table = self.object_name()?;
        self.expect_word("SET")?;
        let mut assignments = Vec::new();
        loop {
            let mut column = self.identifier()?;
            // alias.column
            while self.eat_symbol(".") {
                column = self.identifier()?;
            }
            self.expect_symbol("=")?;
            assignments.push((column, self.expr()?));
            if !self.eat_symbol(",") {
                break;
            }
        }
        let filter = if self.eat_word("WHERE") {
            Some(self.condition()?)
        } else {
            None
        };
        Ok(Update {
            table,
            assignments,
            filter,
        })
    }

    fn set(&mut self) -> PResult<Statement> {
        self.expect_word("SET")?;
        let Some(token) = self.peek().cloned() else {
            return Err(self.error_here());
        };
        let TokenKind::Word(option) = &token.kind else {
            return Err(error_near(&token));
        };
        let upper = option.to_ascii_uppercase();
        const BOOLEAN: &[&str] = &[
            "NOCOUNT",
            "XACT_ABORT",
            "ANSI_NULLS",
            "ANSI_WARNINGS",
            "ANSI_PADDING",
            "ANSI_NULL_DFLT_ON",
            "ANSI_DEFAULTS",
            "QUOTED_IDENTIFIER",
            "ARITHABORT",
            "CONCAT_NULL_YIELDS_NULL",
            "NUMERIC_ROUNDABORT",
            "IMPLICIT_TRANSACTIONS",
            "CURSOR_CLOSE_ON_COMMIT",
            "STATISTICS",
        ];
        self.pos += 1;
        // SET DATEFIRST 1..7: tedious sends SET DATEFIRST 7 in its login batch (Microsoft Learn,
        // SET DATEFIRST); the lab has no weekday arithmetic for it to change.
        if upper == "TEXTSIZE" || upper == "LOCK_TIMEOUT" || upper == "DATEFIRST" {
            let negative = self.eat_symbol("-");
            let n = self.unsigned()?;
            return Ok(Statement::Set {
                option: upper,
                on: !negative && n != 0,
            });
        }
        if upper == "LANGUAGE" {
            let name = self.advance().ok_or_else(|| self.error_here())?;
            let name = match name.kind {
                TokenKind::Word(w) | TokenKind::QuotedIdent(w) => w,
                TokenKind::Str { value, .. } => value,
                _ => return Err(self.error_here()),
            };
            return Ok(Statement::SetLanguage(name));
        }
        if upper == "DATEFORMAT" || upper == "DEADLOCK_PRIORITY" {
            self.advance().ok_or_else(|| self.error_here())?;
            return Ok(Statement::Set {
                option: upper,
                on: true,
            });
        }
        if upper == "TRANSACTION" {
            self.expect_word("ISOLATION")?;
            self.expect_word("LEVEL")?;
            let level_words = [
                "READ",
                "UNCOMMITTED",
                "COMMITTED",
                "REPEATABLE",
                "SERIALIZABLE",
                "SNAPSHOT",
            ];
            let mut any = false;
            while level_words.iter().any(|w| self.at_word(w)) {
                self.pos += 1;
                any = true;
            }
            if !any {
                return Err(self.error_here());
            }
            return Ok(Statement::Set {
                option: upper,
                on: true,
            });
        }
        if !BOOLEAN.contains(&upper.as_str()) {
            return Err(SyntaxError::new(
                195,
                format!("'{option}' is not a recognized SET option."),
                token.line,
            ));
        }
        if upper == "STATISTICS" {
            // SET STATISTICS IO|TIME|XML|PROFILE ON|OFF
            self.advance().ok_or_else(|| self.error_here())?;
        }
        let on = if self.eat_word("ON") {
            true
        } else if self.eat_word("OFF") {
            false
        } else {
            return Err(self.error_here());
        };
        Ok(Statement::Set { option: upper, on })
    }

    /// TO|FROM DISK = N'path' [, DISK = N'path' ...]
    fn disks(&mut self) -> PResult<Vec<String>> {
        let mut disks = Vec::new();
        loop {
            self.expect_word("DISK")?;
            self.expect_symbol("=")?;
            disks.push(self.string()?);
            if !(self.at_symbol(",") && self.peek_at(1).is_some_and(|t| t.is_word("DISK"))) {
                break;
            }
            self.pos += 1;
        }
        Ok(disks)
    }

    /// The word of an option in a WITH list, upper-cased.
    fn option_word(&mut self) -> PResult<(String, Token)> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.error_here());
        };
        let TokenKind::Word(w) = &token.kind else {
            return Err(error_near(&token));
        };
        self.pos += 1;
        Ok((w.to_ascii_uppercase(), token))
    }

    fn optional_stats(&mut self) -> PResult<Option<u32>> {
        if self.eat_symbol("=") {
            let n = self.unsigned()?;
            Ok(Some(u32::try_from(n).map_err(|_| self.error_here())?))
        } else {
            Ok(None)
        }
    }

    fn assigned_number(&mut self) -> PResult<u64> {
        self.expect_symbol("=")?;
        self.unsigned()
    }

    fn backup(&mut self) -> PResult<Backup> {
        self.expect_word("BACKUP")?;
        self.expect_word("DATABASE")?;
        let database = self.identifier()?;
        self.expect_word("TO")?;
        let disks = self.disks()?;
        let mut options = Vec::new();
        if self.eat_word("WITH") {
            loop {
                let (word, token) = self.option_word()?;
                options.push(match word.as_str() {
                    "FORMAT" => BackupOption::Format,
                    "NOFORMAT" => BackupOption::NoFormat,
                    "INIT" => BackupOption::Init,
                    "NOINIT" => BackupOption::NoInit,
                    "SKIP" => BackupOption::Skip,
                    "NOSKIP" => BackupOption::NoSkip,
                    "COPY_ONLY" => BackupOption::CopyOnly,
                    "DIFFERENTIAL" => BackupOption::Differential,
                    "CHECKSUM" => BackupOption::Checksum,
                    "NO_CHECKSUM" => BackupOption::NoChecksum,
                    "CONTINUE_AFTER_ERROR" => BackupOption::ContinueAfterError,
                    "STOP_ON_ERROR" => BackupOption::StopOnError,
                    "COMPRESSION" => BackupOption::Compression,
                    "NO_COMPRESSION" => BackupOption::NoCompression,
                    "STATS" => BackupOption::Stats(self.optional_stats()?),
                    "MAXTRANSFERSIZE" => BackupOption::MaxTransferSize(self.assigned_number()?),
                    "BUFFERCOUNT" => BackupOption::BufferCount(self.assigned_number()?),
                    "BLOCKSIZE" => BackupOption::BlockSize(self.assigned_number()?),
                    "DESCRIPTION" => {
                        self.expect_symbol("=")?;
                        BackupOption::Description(self.string()?)
                    }
                    "NAME" => {
                        self.expect_symbol("=")?;
                        BackupOption::Name(self.string()?)
                    }
                    _ => return Err(not_an_option(&token, "BACKUP")),
                });
                if !self.eat_symbol(",") {
                    break;
                }
            }
        }
        Ok(Backup {
            database,
            disks,
            options,
        })
    }

    fn restore(&mut self) -> PResult<Restore> {
        self.expect_word("RESTORE")?;
        let kind = if self.eat_word("VERIFYONLY") {
            RestoreKind::VerifyOnly
        } else if self.eat_word("HEADERONLY") {
            RestoreKind::HeaderOnly
        } else if self.eat_word("FILELISTONLY") {
            RestoreKind::FileListOnly
        } else if self.eat_word("DATABASE") {
            RestoreKind::Database(self.identifier()?)
        } else {
            return Err(self.error_here());
        };
        self.expect_word("FROM")?;
        let disks = self.disks()?;
        let mut options = Vec::new();
        if self.eat_word("WITH") {
            loop {
                let (word, token) = self.option_word()?;
                options.push(match word.as_str() {
                    "MOVE" => {
                        let logical = self.string()?;
                        self.expect_word("TO")?;
                        let physical = self.string()?;
                        RestoreOption::Move { logical, physical }
                    }
                    "REPLACE" => RestoreOption::Replace,
                    "RECOVERY" => RestoreOption::Recovery,
                    "NORECOVERY" => RestoreOption::NoRecovery,
                    "STATS" => RestoreOption::Stats(self.optional_stats()?),
                    "FILE" => {
                        let n = self.assigned_number()?;
                        RestoreOption::File(u32::try_from(n).map_err(|_| error_near(&token))?)
                    }
                    "CHECKSUM" => RestoreOption::Checksum,
                    "NO_CHECKSUM" => RestoreOption::NoChecksum,
                    "CONTINUE_AFTER_ERROR" => RestoreOption::ContinueAfterError,
                    "STOP_ON_ERROR" => RestoreOption::StopOnError,
                    "MAXTRANSFERSIZE" => RestoreOption::MaxTransferSize(self.assigned_number()?),
                    "BUFFERCOUNT" => RestoreOption::BufferCount(self.assigned_number()?),
                    "LOADHISTORY" => RestoreOption::LoadHistory,
                    _ => return Err(not_an_option(&token, "RESTORE")),
                });
                if !self.eat_symbol(",") {
                    break;
                }
            }
        }
        Ok(Restore {
            kind,
            disks,
            options,
        })
    }

    /// `ALTER [SERVER] ROLE role ADD MEMBER member`.
    fn alter_role(&mut self) -> PResult<SecurityStatement> {
        self.expect_word("ALTER")?;
        let server = self.eat_word("SERVER");
        self.expect_word("ROLE")?;
        let role = self.identifier()?;
        self.expect_word("ADD")?;
        self.expect_word("MEMBER")?;
        let member = self.identifier()?;
        Ok(SecurityStatement::AlterRole {
            role,
            member,
            server,
        })
    }

    /// `CREATE LOGIN [x] WITH PASSWORD = N'..'`, `CREATE USER [x] [FOR|FROM LOGIN [y]]`,
    /// `GRANT perm [, perm] [ON [schema.]object] TO [principal]`.
    fn security(&mut self) -> PResult<SecurityStatement> {
        if self.eat_word("GRANT") {
            let mut permissions = Vec::new();
            loop {
                let mut words = Vec::new();
                while let Some(TokenKind::Word(w)) = self.peek().map(|t| t.kind.clone()) {
                    if w.eq_ignore_ascii_case("ON") || w.eq_ignore_ascii_case("TO") {
                        break;
                    }
                    words.push(w.to_ascii_uppercase());
                    self.pos += 1;
                }
                if words.is_empty() {
                    return Err(self.error_here());
                }
                permissions.push(words.join(" "));
                if !self.eat_symbol(",") {
                    break;
                }
            }
            let on = if self.eat_word("ON") {
                Some(self.object_name()?)
            } else {
                None
            };
            self.expect_word("TO")?;
            let to = self.identifier()?;
            return Ok(SecurityStatement::Grant {
                permissions,
                on,
                to,
            });
        }
        self.expect_word("CREATE")?;
        if self.eat_word("LOGIN") {
            let name = self.identifier()?;
            self.expect_word("WITH")?;
            self.expect_word("PASSWORD")?;
            self.expect_symbol("=")?;
            let password = self.string()?;
            return Ok(SecurityStatement::CreateLogin { name, password });
        }
        self.expect_word("USER")?;
        let name = self.identifier()?;
        let login = if self.eat_word("FOR") || self.eat_word("FROM") {
            self.expect_word("LOGIN")?;
            Some(self.identifier()?)
        } else {
            None
        };
        Ok(SecurityStatement::CreateUser { name, login })
    }

    /// Only the rename form: `ALTER DATABASE [a] MODIFY NAME = [b]`.
    fn alter_database(&mut self) -> PResult<Statement> {
        self.expect_word("ALTER")?;
        self.expect_word("DATABASE")?;
        let name = self.identifier()?;
        self.expect_word("MODIFY")?;
        self.expect_word("NAME")?;
        self.expect_symbol("=")?;
        let new_name = self.identifier()?;
        Ok(Statement::RenameDatabase { name, new_name })
    }

    fn drop_database(&mut self) -> PResult<Statement> {
        self.expect_word("DROP")?;
        self.expect_word("DATABASE")?;
        let if_exists = if self.at_word("IF") {
            // DROP DATABASE IF EXISTS came with SQL Server 2016 (13.x) (Microsoft Learn, DROP
            // DATABASE); 2014 and older stop at the keyword: Msg 156 near 'IF'.
            if self.major < 13 {
                return Err(self.error_here());
            }
            self.pos += 1;
            self.expect_word("EXISTS")?;
            true
        } else {
            false
        };
        let mut names = vec![self.identifier()?];
        while self.eat_symbol(",") {
            names.push(self.identifier()?);
        }
        Ok(Statement::DropDatabase { names, if_exists })
    }

    fn dbcc(&mut self) -> PResult<Statement> {
        self.expect_word("DBCC")?;
        let line = self.line();
        if !self.eat_word("CHECKDB") {
            return Err(SyntaxError {
                number: 2526,
                class: 16,
                state: 3,
                text: "Incorrect DBCC statement. Check the documentation for the correct DBCC syntax and options.".into(),
                line,
            });
        }
        let mut target = DbccTarget::Current;
        if self.eat_symbol("(") {
            target = match self.peek().map(|t| t.kind.clone()) {
                Some(TokenKind::Str { value, .. }) => {
                    self.pos += 1;
                    DbccTarget::Name(value)
                }
                Some(TokenKind::Number(_)) => DbccTarget::Id(self.unsigned()? as i64),
                _ => DbccTarget::Name(self.identifier()?),
            };
            if self.eat_symbol(",") {
                // NOINDEX or a repair option: the lab never repairs
                let (word, token) = self.option_word()?;
                if word != "NOINDEX" {
                    return Err(error_near(&token));
                }
            }
            self.expect_symbol(")")?;
        }
        let mut no_infomsgs = false;
        if self.eat_word("WITH") {
            loop {
                let (word, token) = self.option_word()?;
                match word.as_str() {
                    "NO_INFOMSGS" => no_infomsgs = true,
                    "ALL_ERRORMSGS"
                    | "PHYSICAL_ONLY"
                    | "TABLOCK"
                    | "DATA_PURITY"
                    | "EXTENDED_LOGICAL_CHECKS" => {}
                    _ => return Err(error_near(&token)),
                }
                if !self.eat_symbol(",") {
                    break;
                }
            }
        }
        Ok(Statement::CheckDb(CheckDb {
            target,
            no_infomsgs,
        }))
    }
}

fn near_text(token: &Token) -> String {
    match &token.kind {
        TokenKind::Str { value, .. } => value.clone(),
        TokenKind::QuotedIdent(name) => name.clone(),
        _ => token.text.clone(),
    }
}

fn error_near(token: &Token) -> SyntaxError {
    match &token.kind {
        TokenKind::Word(w) if is_reserved(w) => SyntaxError::new(
            156,
            format!("Incorrect syntax near the keyword '{w}'."),
            token.line,
        ),
        _ => SyntaxError::new(
            102,
            format!("Incorrect syntax near '{}'.", near_text(token)),
            token.line,
        ),
    }
}

fn not_an_option(token: &Token, statement: &str) -> SyntaxError {
    SyntaxError::new(
        155,
        format!("'{}' is not a recognized {statement} option.", token.text),
        token.line,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Statement {
        let mut statements = parse_batch(sql).unwrap();
        assert_eq!(statements.len(), 1, "{sql}");
        statements.remove(0).statement
    }

    #[test]
    fn several_statements_with_and_without_semicolons() {
        let statements =
            parse_batch("SET NOCOUNT ON; USE [master]\nSELECT 1 SELECT @@SPID;").unwrap();
        assert_eq!(statements.len(), 4);
        assert_eq!(
            statements[0].statement,
            Statement::Set {
                option: "NOCOUNT".into(),
                on: true
            }
        );
        assert_eq!(statements[1].statement, Statement::Use("master".into()));
        assert_eq!(statements[2].line, 2);
    }

    #[test]
    fn select_list_with_aliases_and_functions() {
        let Statement::Select(select) = one(
            "select SERVERPROPERTY('ProductVersion') AS v, DB_ID(N'Octo]pus') id, 'x' AS [a b], @@VERSION",
        ) else {
            panic!()
        };
        assert_eq!(select.items.len(), 4);
        assert_eq!(
            select.items[0],
            SelectItem::Expr {
                expr: Expr::Function {
                    name: "SERVERPROPERTY".into(),
                    args: vec![Expr::Literal(Literal::Str {
                        value: "ProductVersion".into(),
                        national: false
                    })]
                },
                alias: Some("v".into())
            }
        );
        assert_eq!(
            select.items[1],
            SelectItem::Expr {
                expr: Expr::Function {
                    name: "DB_ID".into(),
                    args: vec![Expr::Literal(Literal::Str {
                        value: "Octo]pus".into(),
                        national: true
                    })]
                },
                alias: Some("id".into())
            }
        );
        assert!(matches!(&select.items[2], SelectItem::Expr { alias: Some(a), .. } if a == "a b"));
        assert_eq!(
            select.items[3],
            SelectItem::Expr {
                expr: Expr::Global("@@VERSION".into()),
                alias: None
            }
        );
    }

    #[test]
    fn msdb_history_query() {
        let sql = "SELECT TOP (1) bs.backup_set_uuid, mf.physical_device_name
                   FROM msdb.dbo.backupset AS bs
                   JOIN msdb.dbo.backupmediafamily AS mf ON mf.media_set_id = bs.media_set_id
                   WHERE bs.database_name = N'Octo''pus' AND bs.backup_set_uuid = '00000000-0000-0000-0000-000000000001'
                   ORDER BY bs.backup_finish_date DESC";
        let Statement::Select(select) = one(sql) else {
            panic!()
        };
        assert_eq!(select.top, Some(1));
        assert_eq!(
            select.from.as_ref().unwrap().name.parts,
            vec!["msdb", "dbo", "backupset"]
        );
        assert_eq!(select.from.as_ref().unwrap().alias.as_deref(), Some("bs"));
        assert_eq!(select.joins.len(), 1);
        assert!(matches!(select.filter, Some(Condition::And(..))));
        assert!(select.order_by[0].descending);
    }

    #[test]
    fn backup_with_stripes_and_options() {
        let sql = "BACKUP DATABASE [Octo]]pus] TO DISK = N'/tmp/it''s/a.bak', DISK = N'/tmp/b.bak'
                   WITH FORMAT, INIT, COPY_ONLY, CHECKSUM, STATS = 5, STATS, MAXTRANSFERSIZE = 1048576,
                   DESCRIPTION = N'nightly', NAME = N'n'";
        let Statement::Backup(backup) = one(sql) else {
            panic!()
        };
        assert_eq!(backup.database, "Octo]pus");
        assert_eq!(backup.disks, vec!["/tmp/it's/a.bak", "/tmp/b.bak"]);
        assert!(backup.options.contains(&BackupOption::Stats(Some(5))));
        assert!(backup.options.contains(&BackupOption::Stats(None)));
        assert!(
            backup
                .options
                .contains(&BackupOption::MaxTransferSize(1048576))
        );
        assert!(
            backup
                .options
                .contains(&BackupOption::Description("nightly".into()))
        );
    }

    #[test]
    fn unknown_backup_option_is_msg_155() {
        let err = parse_batch("BACKUP DATABASE x TO DISK = 'a' WITH TURBO").unwrap_err();
        assert_eq!(err.number, 155);
        assert_eq!(err.text, "'TURBO' is not a recognized BACKUP option.");
    }

    #[test]
    fn restore_forms() {
        let Statement::Restore(r) = one(
            "RESTORE DATABASE [New] FROM DISK = N'a' WITH MOVE N'Data' TO N'/x.mdf', MOVE 'Log' TO '/x.ldf', REPLACE, RECOVERY, STATS = 10, FILE = 2",
        ) else {
            panic!()
        };
        assert_eq!(r.kind, RestoreKind::Database("New".into()));
        assert_eq!(
            r.options[0],
            RestoreOption::Move {
                logical: "Data".into(),
                physical: "/x.mdf".into()
            }
        );
        assert!(r.options.contains(&RestoreOption::File(2)));
        assert_eq!(
            one("RESTORE VERIFYONLY FROM DISK='a', DISK='b' WITH CHECKSUM"),
            Statement::Restore(Restore {
                kind: RestoreKind::VerifyOnly,
                disks: vec!["a".into(), "b".into()],
                options: vec![RestoreOption::Checksum],
            })
        );
        assert!(matches!(
            one("restore headeronly from disk = N'a'"),
            Statement::Restore(Restore {
                kind: RestoreKind::HeaderOnly,
                ..
            })
        ));
        assert!(matches!(
            one("RESTORE FILELISTONLY FROM DISK = N'a'"),
            Statement::Restore(Restore {
                kind: RestoreKind::FileListOnly,
                ..
            })
        ));
    }

    #[test]
    fn dbcc_checkdb_forms() {
        assert_eq!(
            one("DBCC CHECKDB (N'Octo''pus') WITH NO_INFOMSGS, ALL_ERRORMSGS"),
            Statement::CheckDb(CheckDb {
                target: DbccTarget::Name("Octo'pus".into()),
                no_infomsgs: true
            })
        );
        assert_eq!(
            one("DBCC CHECKDB ([x])"),
            Statement::CheckDb(CheckDb {
                target: DbccTarget::Name("x".into()),
                no_infomsgs: false
            })
        );
        assert_eq!(
            one("DBCC CHECKDB"),
            Statement::CheckDb(CheckDb {
                target: DbccTarget::Current,
                no_infomsgs: false
            })
        );
        assert_eq!(parse_batch("DBCC SHRINKFILE(1)").unwrap_err().number, 2526);
    }

    #[test]
    fn drop_and_transactions() {
        assert_eq!(
            one("DROP DATABASE IF EXISTS [a], b"),
            Statement::DropDatabase {
                names: vec!["a".into(), "b".into()],
                if_exists: true
            }
        );
        let statements =
            parse_batch("BEGIN TRAN; COMMIT; BEGIN TRANSACTION t1 ROLLBACK TRANSACTION t1")
                .unwrap();
        let kinds: Vec<_> = statements.into_iter().map(|s| s.statement).collect();
        assert_eq!(
            kinds,
            vec![
                Statement::BeginTran,
                Statement::Commit,
                Statement::BeginTran,
                Statement::Rollback
            ]
        );
    }

    #[test]
    fn update_configuration() {
        let Statement::Update(update) = one(
            "UPDATE [Octo].[dbo].[Configuration] SET [JSON] = N'{\"a\":1}' WHERE [Id] = N'upgrade-availability'",
        ) else {
            panic!()
        };
        assert_eq!(update.table.parts, vec!["Octo", "dbo", "Configuration"]);
        assert_eq!(update.assignments[0].0, "JSON");
        assert!(update.filter.is_some());
    }

    #[test]
    fn syntax_errors_are_102_or_156() {
        let err = parse_batch("SELECT FROM x").unwrap_err();
        assert_eq!(
            (err.number, err.text.as_str()),
            (156, "Incorrect syntax near the keyword 'FROM'.")
        );
        let err = parse_batch("SELEKT 1").unwrap_err();
        assert_eq!(
            (err.number, err.text.as_str()),
            (102, "Incorrect syntax near 'SELEKT'.")
        );
        let err = parse_batch("SELECT 1,").unwrap_err();
        assert_eq!(
            (err.number, err.text.as_str()),
            (102, "Incorrect syntax near ','.")
        );
        // valid T-SQL the lab does not take is its own Msg 50000, not a syntax error
        let err = parse_batch("INSERT INTO t VALUES (1)").unwrap_err();
        assert_eq!(err.number, 50000);
        assert!(
            err.text.contains("'INSERT' here is valid T-SQL"),
            "{}",
            err.text
        );
        let err = parse_batch("SELECT 1\nSELECT 2 3").unwrap_err();
        assert_eq!((err.number, err.line), (102, 2));
        assert_eq!(parse_batch("SET FOO ON").unwrap_err().number, 195);
        for lab_limit in [
            "SELECT NEWID()",
            "IF DB_ID(N'x') IS NULL BEGIN SELECT 1 END",
            "IF DB_ID(N'x') IS NULL SELECT 1 ELSE SELECT 2",
            "DECLARE @x int = 1",
            "SELECT 1/0",
            "SELECT N'a' + N'b'",
            "PRINT 'x'",
            "SELECT name FROM sys.databases WHERE name LIKE N'O%'",
        ] {
            let err = parse_batch(lab_limit).unwrap_err();
            assert_eq!((err.number, err.class), (50000, 16), "{lab_limit}: {err}");
            assert!(err.text.starts_with("[octobackup lab] "), "{err}");
        }
        // tedious' login batch
        parse_batch(
            "set textsize 2147483647\nset quoted_identifier on\nset arithabort off\nset numeric_roundabort off\nset ansi_warnings on\nset ansi_padding on\nset ansi_nulls on\nset concat_null_yields_null on\nset cursor_close_on_commit off\nset implicit_transactions off\nset language us_english\nset dateformat mdy\nset datefirst 7\nset transaction isolation level read committed",
        )
        .unwrap();
        let err = parse_batch("SELECT NOSUCHFN(1)").unwrap_err();
        assert_eq!(
            (err.number, err.text.as_str()),
            (
                195,
                "'NOSUCHFN' is not a recognized built-in function name."
            )
        );
        let err = parse_batch("SELECT @x").unwrap_err();
        assert_eq!(
            (err.number, err.text.as_str()),
            (137, "Must declare the scalar variable \"@x\".")
        );
        assert_eq!(parse_batch("SELECT @@NOPE").unwrap_err().number, 137);
    }

    #[test]
    fn cast_and_convert() {
        let Statement::Select(select) =
            one("SELECT CAST(SERVERPROPERTY('Edition') AS nvarchar(128)), CONVERT(int, '5')")
        else {
            panic!()
        };
        assert!(
            matches!(&select.items[0], SelectItem::Expr { expr: Expr::Cast { ty, .. }, .. } if ty.name == "nvarchar" && ty.args == vec![Some(128)])
        );
        assert!(
            matches!(&select.items[1], SelectItem::Expr { expr: Expr::Cast { ty, .. }, .. } if ty.name == "int")
        );
    }

    #[test]
    fn parenthesised_conditions() {
        let Statement::Select(select) =
            one("SELECT * FROM t WHERE (a = 1 OR b = 2) AND NOT c IS NULL")
        else {
            panic!()
        };
        assert!(matches!(select.filter, Some(Condition::And(..))));
        let Statement::Select(select) = one("SELECT * FROM t WHERE (a) = 1") else {
            panic!()
        };
        assert!(matches!(select.filter, Some(Condition::Compare(..))));
    }
}
