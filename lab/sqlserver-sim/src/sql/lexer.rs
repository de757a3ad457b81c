//! Splits a batch into tokens the way SQL Server does: N'..' and '..' strings
//! with '' escapes, [bracketed] identifiers with ]] escapes, "quoted"
//! identifiers with "" escapes, -- and nested /* */ comments.

use super::SyntaxError;

#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// A regular identifier or keyword (unquoted). Includes @variables and @@globals.
    Word(String),
    /// A delimited identifier: [x] or "x", escapes already resolved.
    QuotedIdent(String),
    /// A string literal, escapes resolved; `national` for N'..'.
    Str { value: String, national: bool },
    /// An integer or decimal number as written.
    Number(String),
    /// 0x... binary literal.
    Binary(Vec<u8>),
    /// Punctuation or operator: ( ) , . ; = < > <= >= <> != * + - / %
    Symbol(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    /// The token as written in the batch (for error messages).
    pub text: String,
    /// 1-based line where the token starts.
    pub line: i32,
}

impl Token {
    /// True when this is the unquoted word `kw` (case-insensitive).
    pub fn is_word(&self, kw: &str) -> bool {
        matches!(&self.kind, TokenKind::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    pub fn is_symbol(&self, s: &str) -> bool {
        matches!(&self.kind, TokenKind::Symbol(x) if *x == s)
    }
}

const SYMBOLS: [&str; 16] = [
    "<=", ">=", "<>", "!=", "(", ")", ",", ".", ";", "=", "<", ">", "*", "+", "-", "/",
];

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '@' || c == '#'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '@' || c == '#' || c == '$'
}

/// Tokenizes a whole batch.
pub fn tokenize(sql: &str) -> Result<Vec<Token>, SyntaxError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut line = 1i32;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        // -- comment to end of line
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        // /* comment */, nested as SQL Server allows
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            let start_line = line;
            let mut depth = 1;
            i += 2;
            while depth > 0 {
                match (chars.get(i), chars.get(i + 1)) {
                    (None, _) => {
                        return Err(SyntaxError::new(
                            113,
                            "Missing end comment mark '*/'.",
                            start_line,
                        ));
                    }
                    (Some('*'), Some('/')) => {
                        depth -= 1;
                        i += 2;
                    }
                    (Some('/'), Some('*')) => {
                        depth += 1;
                        i += 2;
                    }
                    (Some(ch), _) => {
                        if *ch == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            continue;
        }
        let start = i;
        let start_line = line;
        // N'...' national string
        if (c == 'N' || c == 'n') && chars.get(i + 1) == Some(&'\'') {
            let (value, end, lines) = read_quoted(&chars, i + 1, '\'', start_line)?;
            line += lines;
            i = end;
            tokens.push(Token {
                kind: TokenKind::Str {
                    value,
                    national: true,
                },
                text: chars[start..i].iter().collect(),
                line: start_line,
            });
            continue;
        }
        if c == '\'' {
            let (value, end, lines) = read_quoted(&chars, i, '\'', start_line)?;
            line += lines;
            i = end;
            tokens.push(Token {
                kind: TokenKind::Str {
                    value,
                    national: false,
                },
                text: chars[start..i].iter().collect(),
                line: start_line,
            });
            continue;
        }
        if c == '[' {
            let (value, end, lines) = read_quoted(&chars, i, ']', start_line)?;
            line += lines;
            i = end;
            tokens.push(Token {
                kind: TokenKind::QuotedIdent(value),
                text: chars[start..i].iter().collect(),
                line: start_line,
            });
            continue;
        }
        if c == '"' {
            let (value, end, lines) = read_quoted(&chars, i, '"', start_line)?;
            line += lines;
            i = end;
            tokens.push(Token {
                kind: TokenKind::QuotedIdent(value),
                text: chars[start..i].iter().collect(),
                line: start_line,
            });
            continue;
        }
        // 0x binary literal
        if c == '0' && matches!(chars.get(i + 1), Some('x') | Some('X')) {
            i += 2;
            while i < chars.len() && chars[i].is_ascii_hexdigit() {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let mut hex_digits = text[2..].to_string();
            if hex_digits.len() % 2 == 1 {
                hex_digits.insert(0, '0');
            }
            let bytes = hex::decode(&hex_digits).map_err(|_| syntax_near(&text, start_line))?;
            tokens.push(Token {
                kind: TokenKind::Binary(bytes),
                text,
                line: start_line,
            });
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            if text.matches('.').count() > 1 {
                return Err(syntax_near(&text, start_line));
            }
            tokens.push(Token {
                kind: TokenKind::Number(text.clone()),
                text,
                line: start_line,
            });
            continue;
        }
        if is_ident_start(c) {
            while i < chars.len() && is_ident_continue(chars[i]) {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            tokens.push(Token {
                kind: TokenKind::Word(text.clone()),
                text,
                line: start_line,
            });
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        if let Some(symbol) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
            i += symbol.chars().count();
            tokens.push(Token {
                kind: TokenKind::Symbol(symbol),
                text: symbol.to_string(),
                line: start_line,
            });
            continue;
        }
        return Err(syntax_near(&c.to_string(), start_line));
    }
    Ok(tokens)
}

/// Reads a quoted run starting at `open` (the opening quote). A doubled
/// closing quote is an escaped quote. Returns (value, index after the closing
/// quote, newlines inside).
fn read_quoted(
    chars: &[char],
    open: usize,
    close: char,
    line: i32,
) -> Result<(String, usize, i32), SyntaxError> {
    let mut value = String::new();
    let mut i = open + 1;
    let mut lines = 0;
    loop {
        match chars.get(i) {
            None => {
                let mut err = SyntaxError::new(
                    105,
                    format!("Unclosed quotation mark after the character string '{value}'."),
                    line,
                );
                err.line = line + lines;
                return Err(err);
            }
            Some(ch) if *ch == close => {
                if chars.get(i + 1) == Some(&close) {
                    value.push(close);
                    i += 2;
                } else {
                    return Ok((value, i + 1, lines));
                }
            }
            Some(ch) => {
                if *ch == '\n' {
                    lines += 1;
                }
                value.push(*ch);
                i += 1;
            }
        }
    }
}

fn syntax_near(text: &str, line: i32) -> SyntaxError {
    SyntaxError::new(102, format!("Incorrect syntax near '{text}'."), line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<TokenKind> {
        tokenize(sql).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn strings_with_doubled_quotes() {
        assert_eq!(
            kinds("N'it''s' 'a'"),
            vec![
                TokenKind::Str {
                    value: "it's".into(),
                    national: true
                },
                TokenKind::Str {
                    value: "a".into(),
                    national: false
                }
            ]
        );
    }

    #[test]
    fn bracketed_identifier_with_escaped_bracket() {
        assert_eq!(
            kinds("[Octo]]pus]"),
            vec![TokenKind::QuotedIdent("Octo]pus".into())]
        );
        assert_eq!(
            kinds("\"a\"\"b\""),
            vec![TokenKind::QuotedIdent("a\"b".into())]
        );
    }

    #[test]
    fn comments_are_skipped_and_lines_counted() {
        let tokens = tokenize("-- one\nSELECT /* two\n /* nested */ */ 1\n;").unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens[0].line, 2);
        assert!(tokens[0].is_word("select"));
        assert_eq!(tokens[1].kind, TokenKind::Number("1".into()));
        assert_eq!(tokens[1].line, 3);
        assert_eq!(tokens[2].line, 4);
    }

    #[test]
    fn words_symbols_and_globals() {
        assert_eq!(
            kinds("@@SPID<>x.y>=0x0A1"),
            vec![
                TokenKind::Word("@@SPID".into()),
                TokenKind::Symbol("<>"),
                TokenKind::Word("x".into()),
                TokenKind::Symbol("."),
                TokenKind::Word("y".into()),
                TokenKind::Symbol(">="),
                TokenKind::Binary(vec![0x00, 0xA1]),
            ]
        );
    }

    #[test]
    fn n_alone_is_a_word() {
        assert_eq!(kinds("n"), vec![TokenKind::Word("n".into())]);
    }

    #[test]
    fn unclosed_quote_is_msg_105() {
        let err = tokenize("SELECT 'abc").unwrap_err();
        assert_eq!(err.number, 105);
        assert_eq!(
            err.text,
            "Unclosed quotation mark after the character string 'abc'."
        );
        assert_eq!(tokenize("SELECT [abc").unwrap_err().number, 105);
    }

    #[test]
    fn unclosed_comment_is_msg_113() {
        assert_eq!(tokenize("SELECT 1 /* x").unwrap_err().number, 113);
    }

    #[test]
    fn stray_character_is_msg_102() {
        let err = tokenize("SELECT ` ").unwrap_err();
        assert_eq!(err.number, 102);
        assert_eq!(err.text, "Incorrect syntax near '`'.");
    }
}
