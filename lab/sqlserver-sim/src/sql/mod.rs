//! T-SQL, as much of it as octobackup sends: a tokenizer, an AST and a
//! recursive-descent parser. Errors carry SQL Server's message numbers.

pub mod ast;
pub mod lexer;
pub mod parser;

pub use parser::parse_batch;

/// A compile-time error, reported like SQL Server reports it (Msg 102, 105, 156, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub number: i32,
    pub class: u8,
    pub state: u8,
    pub text: String,
    /// 1-based line of the batch.
    pub line: i32,
}

impl SyntaxError {
    pub fn new(number: i32, text: impl Into<String>, line: i32) -> Self {
        Self {
            number,
            class: 15,
            state: 1,
            text: text.into(),
            line,
        }
    }
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Msg {}, Level {}, Line {}: {}",
            self.number, self.class, self.line, self.text
        )
    }
}

impl std::error::Error for SyntaxError {}
