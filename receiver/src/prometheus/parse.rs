//! Reading a PromQL expression of the subset into an [`Expr`]: a tokenizer and a
//! precedence-climbing parser following Prometheus's grammar (operator precedence `^` over
//! `* / %` over `+ -` over comparisons, `^` right-associative, unary minus below `^`).
//!
//! Total: any input gives an expression or a [`ParseError`] (never a panic), with the byte
//! position where reading stopped. Valid PromQL outside the subset (other functions and
//! aggregations, set operators, `group_left`, subqueries, `@`, strings) is recognised and
//! refused as [`ParseError::Unsupported`], naming the construct, so a client learns it is not
//! supported rather than that it is malformed.

use std::fmt;

use super::functions::RangeFunction;

/// Longest expression read, in bytes.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;
/// Deepest nesting of parentheses, calls and operators read.
pub const MAX_DEPTH: usize = 200;

/// A parsed expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A number literal such as `2`, `1.5e3`, `0x1f`, `Inf` or `NaN`: the same scalar at every
    /// step.
    Number(f64),
    /// An instant vector selector.
    Selector(Selector),
    /// A range vector selector `x[d]`: only valid as a function's argument or alone at the top
    /// of an instant query.
    Range(RangeSelector),
    /// A range function over a range selector; `quantile` is φ of `quantile_over_time`.
    Call {
        /// Which function, such as `rate` or `avg_over_time`.
        function: RangeFunction,
        /// φ, the first argument of `quantile_over_time` (a scalar expression, read per step);
        /// `None` for every other function.
        quantile: Option<Box<Expr>>,
        /// The range vector the function runs over, one window per step.
        range: RangeSelector,
    },
    /// An aggregation such as `sum by (site) (x)`: one series per group of the inner vector's
    /// series.
    Aggregate {
        /// Which aggregation: `sum`, `avg`, `min`, `max` or `count`.
        aggregation: Aggregation,
        /// `by (…)` or `without (…)`; `None` aggregates every series into one without labels.
        grouping: Option<Grouping>,
        /// The instant vector aggregated.
        expr: Box<Expr>,
    },
    /// A binary operation such as `a / b`, `x > bool 10` or `a + on (site) b`.
    Binary {
        /// The arithmetic or comparison operator.
        operator: Operator,
        /// The `bool` modifier: a comparison gives 1 or 0 instead of filtering. Only set on
        /// comparisons; required between two scalars.
        return_bool: bool,
        /// `on (…)` or `ignoring (…)` for one-to-one vector matching; `None` matches on every
        /// label but the metric name. Only set when both sides are instant vectors.
        matching: Option<Grouping>,
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// Unary minus, `-x`: every value negated; vector results lose the metric name.
    Negate(Box<Expr>),
}

/// What an expression evaluates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// One number per step, such as `2` or `2 * 3`.
    Scalar,
    /// An instant vector: series with one value per step, such as `x` or `rate(x[5m])`.
    Vector,
    /// A range vector: series with every sample of a window, such as `x[5m]`.
    Matrix,
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueType::Scalar => "scalar",
            ValueType::Vector => "instant vector",
            ValueType::Matrix => "range vector",
        })
    }
}

impl Expr {
    /// The type of the expression's value.
    pub fn value_type(&self) -> ValueType {
        match self {
            Expr::Number(_) => ValueType::Scalar,
            Expr::Range(_) => ValueType::Matrix,
            Expr::Negate(inner) => inner.value_type(),
            Expr::Binary { lhs, rhs, .. } => {
                if lhs.value_type() == ValueType::Scalar && rhs.value_type() == ValueType::Scalar {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            Expr::Selector(_) | Expr::Call { .. } | Expr::Aggregate { .. } => ValueType::Vector,
        }
    }
}

/// Series picked by label matchers (the metric name is a `__name__` matcher), shifted back by
/// `offset_ns`.
#[derive(Debug, Clone)]
pub struct Selector {
    /// The matchers: a leading metric name first, then those between the braces. A series is
    /// picked when it passes every one; at least one refuses the empty value, as Prometheus
    /// requires.
    pub matchers: Vec<Matcher>,
    /// The `offset` modifier in ns: positive looks back (`offset 1h`), negative forward
    /// (`offset -1h`); 0 without one.
    pub offset_ns: i64,
}

/// A selector with the length of its window.
#[derive(Debug, Clone)]
pub struct RangeSelector {
    /// The series picked and their offset.
    pub selector: Selector,
    /// The window's length in ns, the `[d]` of `x[d]`: each step reads `(t − range, t]`.
    /// Positive.
    pub range_ns: i64,
}

/// One label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label compared, `__name__` for the metric name.
    pub label: String,
    /// The comparison and the value or regular expression compared with.
    pub op: MatchOp,
}

/// How a matcher compares a label's value ("" when the series lacks the label).
#[derive(Debug, Clone)]
pub enum MatchOp {
    /// `label="value"`: the value is exactly this.
    Equal(String),
    /// `label!="value"`: the value is anything but this.
    NotEqual(String),
    /// Fully anchored, as PromQL's regular expressions are.
    Matches(regex::Regex),
    /// `label!~"re"`: the value does not match the fully anchored expression.
    NotMatches(regex::Regex),
}

impl Matcher {
    /// Whether `value` passes.
    pub fn accepts(&self, value: &str) -> bool {
        match &self.op {
            MatchOp::Equal(wanted) => wanted == value,
            MatchOp::NotEqual(unwanted) => unwanted != value,
            MatchOp::Matches(regex) => regex.is_match(value),
            MatchOp::NotMatches(regex) => !regex.is_match(value),
        }
    }
}

/// `by (…)` / `on (…)` (include) or `without (…)` / `ignoring (…)` (exclude).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    /// `by (…)` or `on (…)`: only these labels count.
    Include(Vec<String>),
    /// `without (…)` or `ignoring (…)`: every label counts but these and the metric name.
    Exclude(Vec<String>),
}

/// The aggregations of the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// `sum`: the total of the group's values at each step.
    Sum,
    /// `avg`: the mean of the group's values at each step.
    Avg,
    /// `min`: the smallest of the group's values at each step.
    Min,
    /// `max`: the largest of the group's values at each step.
    Max,
    /// `count`: how many of the group's series have a value at each step.
    Count,
}

/// The binary operators of the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`: division by zero gives ±Inf or NaN, as in Prometheus.
    Div,
    /// `%`: the remainder, with the sign of the left operand.
    Mod,
    /// `^`: power, right-associative and binding tightest.
    Pow,
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `>`.
    Gt,
    /// `<`.
    Lt,
    /// `>=`.
    Ge,
    /// `<=`.
    Le,
}

impl Operator {
    /// Whether the operator compares (`==`, `!=`, `>`, `<`, `>=`, `<=`): such an operator
    /// filters a vector, or gives 1 and 0 with `bool`.
    pub fn is_comparison(self) -> bool {
        matches!(self, Operator::Eq | Operator::Ne | Operator::Gt | Operator::Lt | Operator::Ge | Operator::Le)
    }

    fn precedence(self) -> u8 {
        match self {
            Operator::Pow => 4,
            Operator::Mul | Operator::Div | Operator::Mod => 3,
            Operator::Add | Operator::Sub => 2,
            _ => 1,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Operator::Add => "+",
            Operator::Sub => "-",
            Operator::Mul => "*",
            Operator::Div => "/",
            Operator::Mod => "%",
            Operator::Pow => "^",
            Operator::Eq => "==",
            Operator::Ne => "!=",
            Operator::Gt => ">",
            Operator::Lt => "<",
            Operator::Ge => ">=",
            Operator::Le => "<=",
        }
    }
}

/// Why an expression was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not PromQL (or not well-typed), at a byte position.
    #[error("parse error at position {position}: {message}")]
    Invalid {
        /// Byte offset into the expression where reading stopped.
        position: usize,
        /// What was expected or what is wrong there, such as an unclosed brace.
        message: String,
    },
    /// PromQL outside the subset.
    #[error("not supported by diode's PromQL subset: {0}")]
    Unsupported(String),
}

const AGGREGATIONS: [&str; 5] = ["sum", "avg", "min", "max", "count"];
const OTHER_AGGREGATIONS: [&str; 9] =
    ["topk", "bottomk", "quantile", "stddev", "stdvar", "count_values", "group", "limitk", "limit_ratio"];
/// The functions of the subset, for messages.
pub const FUNCTIONS: &str = "rate, increase, delta, irate, avg_over_time, min_over_time, max_over_time, \
                             sum_over_time, count_over_time, last_over_time, stddev_over_time, quantile_over_time";

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Duration(i64),
    Identifier(String),
    Text(String),
    Operator(Operator),
    /// `and`, `or`, `unless`, `atan2`.
    SetOperator(String),
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    LeftBracket,
    RightBracket,
    Comma,
    Colon,
    At,
    /// `=`, `=~`, `!~` (and `!=`, shared with the operator).
    Equals,
    RegexMatch,
    RegexNoMatch,
    End,
}

fn describe(token: &Token) -> String {
    match token {
        Token::Number(n) => format!("number {n}"),
        Token::Duration(_) => "a duration".to_owned(),
        Token::Identifier(name) => format!("identifier {name:?}"),
        Token::Text(_) => "a string".to_owned(),
        Token::Operator(op) => format!("operator {:?}", op.symbol()),
        Token::SetOperator(op) => format!("operator {op:?}"),
        Token::LeftParen => "\"(\"".to_owned(),
        Token::RightParen => "\")\"".to_owned(),
        Token::LeftBrace => "\"{\"".to_owned(),
        Token::RightBrace => "\"}\"".to_owned(),
        Token::LeftBracket => "\"[\"".to_owned(),
        Token::RightBracket => "\"]\"".to_owned(),
        Token::Comma => "\",\"".to_owned(),
        Token::Colon => "\":\"".to_owned(),
        Token::At => "\"@\"".to_owned(),
        Token::Equals => "\"=\"".to_owned(),
        Token::RegexMatch => "\"=~\"".to_owned(),
        Token::RegexNoMatch => "\"!~\"".to_owned(),
        Token::End => "the end of the query".to_owned(),
    }
}

/// Reads a PromQL expression.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(ParseError::Invalid {
            position: 0,
            message: format!("the query is {} bytes; the limit is {MAX_QUERY_BYTES}", text.len()),
        });
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, at: 0, depth: 0 };
    let expr = parser.expression(0)?;
    if parser.peek() != &Token::End {
        return Err(parser.unexpected("an operator or the end of the query"));
    }
    Ok(expr)
}

/// Reads a series selector (`match[]` of the series and label routes).
pub fn parse_selector(text: &str) -> Result<Selector, ParseError> {
    match parse(text)? {
        Expr::Selector(selector) => Ok(selector),
        _ => Err(ParseError::Invalid { position: 0, message: format!("{text:?} is not a series selector") }),
    }
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut at = 0;
    let invalid = |position: usize, message: String| ParseError::Invalid { position, message };
    while at < bytes.len() {
        let start = at;
        let byte = bytes[at];
        let two = bytes.get(at..at + 2).unwrap_or(&[]);
        let token = match byte {
            b' ' | b'\t' | b'\n' | b'\r' => {
                at += 1;
                continue;
            }
            b'#' => {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
                continue;
            }
            b'(' => Token::LeftParen,
            b')' => Token::RightParen,
            b'{' => Token::LeftBrace,
            b'}' => Token::RightBrace,
            b'[' => Token::LeftBracket,
            b']' => Token::RightBracket,
            b',' => Token::Comma,
            b'@' => Token::At,
            b'+' => Token::Operator(Operator::Add),
            b'-' => Token::Operator(Operator::Sub),
            b'*' => Token::Operator(Operator::Mul),
            b'/' => Token::Operator(Operator::Div),
            b'%' => Token::Operator(Operator::Mod),
            b'^' => Token::Operator(Operator::Pow),
            b'=' if two == b"==" => Token::Operator(Operator::Eq),
            b'=' if two == b"=~" => Token::RegexMatch,
            b'=' => Token::Equals,
            b'!' if two == b"!=" => Token::Operator(Operator::Ne),
            b'!' if two == b"!~" => Token::RegexNoMatch,
            b'>' if two == b">=" => Token::Operator(Operator::Ge),
            b'>' => Token::Operator(Operator::Gt),
            b'<' if two == b"<=" => Token::Operator(Operator::Le),
            b'<' => Token::Operator(Operator::Lt),
            b':' => Token::Colon,
            b'"' | b'\'' | b'`' => {
                let (value, end) = read_string(text, at)?;
                tokens.push((start, Token::Text(value)));
                at = end;
                continue;
            }
            b'0'..=b'9' | b'.' => {
                let (token, end) = read_number_or_duration(text, at)?;
                tokens.push((start, token));
                at = end;
                continue;
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let mut end = at;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':')
                {
                    end += 1;
                }
                let word = &text[at..end];
                let token = match word.to_ascii_lowercase().as_str() {
                    "and" | "or" | "unless" | "atan2" => Token::SetOperator(word.to_ascii_lowercase()),
                    "inf" => Token::Number(f64::INFINITY),
                    "nan" => Token::Number(f64::NAN),
                    _ => Token::Identifier(word.to_owned()),
                };
                tokens.push((start, token));
                at = end;
                continue;
            }
            _ => {
                let character = text[at..].chars().next().unwrap_or('?');
                return Err(invalid(at, format!("unexpected character {character:?}")));
            }
        };
        at += match token {
            Token::Operator(Operator::Eq | Operator::Ne | Operator::Ge | Operator::Le)
            | Token::RegexMatch
            | Token::RegexNoMatch => 2,
            _ => 1,
        };
        tokens.push((start, token));
    }
    tokens.push((text.len(), Token::End));
    Ok(tokens)
}

/// A quoted string from `start` (its opening quote): its value and the byte after it. Double
/// and single quotes take Go's escapes (`\n`, `\t`, `\\`, `\"`, `\'`, `\xHH`, `\uHHHH`);
/// backticks none.
fn read_string(text: &str, start: usize) -> Result<(String, usize), ParseError> {
    let quote = text.as_bytes()[start] as char;
    let mut value = String::new();
    let mut chars = text[start + 1..].char_indices();
    let unterminated = || ParseError::Invalid { position: start, message: "unterminated quoted string".to_owned() };
    while let Some((offset, c)) = chars.next() {
        if c == quote {
            return Ok((value, start + 1 + offset + 1));
        }
        if c != '\\' || quote == '`' {
            value.push(c);
            continue;
        }
        let (_, escaped) = chars.next().ok_or_else(unterminated)?;
        let mut hex = |digits: usize| -> Result<char, ParseError> {
            let code: String = (0..digits).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
            u32::from_str_radix(&code, 16).ok().filter(|_| code.len() == digits).and_then(char::from_u32).ok_or(
                ParseError::Invalid {
                    position: start + 1 + offset,
                    message: format!("invalid escape \\{escaped}{code}"),
                },
            )
        };
        value.push(match escaped {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'v' => '\u{b}',
            '\\' | '"' | '\'' => escaped,
            'x' => hex(2)?,
            'u' => hex(4)?,
            'U' => hex(8)?,
            other => {
                return Err(ParseError::Invalid {
                    position: start + 1 + offset,
                    message: format!("unknown escape sequence \\{other}"),
                });
            }
        });
    }
    Err(unterminated())
}

const DURATION_UNITS_NS: [(&str, i64); 7] = [
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
    ("w", 604_800_000_000_000),
    ("y", 31_536_000_000_000_000),
];

/// A number (decimal, exponent, `0x` hex) or a duration (`5m`, `1h30m`) from `start`.
fn read_number_or_duration(text: &str, start: usize) -> Result<(Token, usize), ParseError> {
    let bytes = text.as_bytes();
    let mut end = start;
    while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'.' || bytes[end] == b'_') {
        // An exponent's sign belongs to the number.
        end += 1;
        if end < bytes.len()
            && (bytes[end] == b'+' || bytes[end] == b'-')
            && matches!(bytes[end - 1], b'e' | b'E')
            && !text[start..end].starts_with("0x")
        {
            end += 1;
        }
    }
    let word = &text[start..end];
    let invalid = || ParseError::Invalid { position: start, message: format!("{word:?} is not a number or duration") };
    if let Some(hex) = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        let value = i64::from_str_radix(hex, 16).map_err(|_| invalid())?;
        return Ok((Token::Number(value as f64), end));
    }
    if let Ok(value) = word.parse::<f64>() {
        return Ok((Token::Number(value), end));
    }
    parse_duration_ns(word).map(|ns| (Token::Duration(ns), end)).ok_or_else(invalid)
}

/// `1h30m`-style durations: units ms, s, m, h, d, w, y, each once, largest first.
pub fn parse_duration_ns(word: &str) -> Option<i64> {
    let mut rest = word;
    let mut total: i64 = 0;
    // Units ranked by size (their index in DURATION_UNITS_NS); each must be smaller than the last.
    let mut previous_rank = usize::MAX;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let number: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // "ms" is tried before "m".
        let (rank, (unit, ns)) = DURATION_UNITS_NS.iter().enumerate().find(|(_, (unit, _))| rest.starts_with(unit))?;
        if rank >= previous_rank {
            return None;
        }
        previous_rank = rank;
        rest = &rest[unit.len()..];
        total = total.checked_add(number.checked_mul(*ns)?)?;
    }
    Some(total)
}

fn unexpected_at(position: usize, token: &Token, wanted: &str) -> ParseError {
    ParseError::Invalid { position, message: format!("unexpected {}; expected {wanted}", describe(token)) }
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.at].1
    }

    fn position(&self) -> usize {
        self.tokens[self.at].0
    }

    fn next(&mut self) -> Token {
        let token = self.tokens[self.at].1.clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        token
    }

    fn unexpected(&self, wanted: &str) -> ParseError {
        unexpected_at(self.position(), self.peek(), wanted)
    }

    fn invalid(&self, message: String) -> ParseError {
        ParseError::Invalid { position: self.position(), message }
    }

    fn expect(&mut self, token: Token, wanted: &str) -> Result<(), ParseError> {
        if *self.peek() == token {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected(wanted))
        }
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Token::Identifier(word) if word.eq_ignore_ascii_case(keyword))
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.invalid(format!("the query nests deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// Binary operators of at least `min_precedence`, climbing.
    fn expression(&mut self, min_precedence: u8) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut lhs = self.unary()?;
        loop {
            if let Token::SetOperator(op) = self.peek() {
                return Err(ParseError::Unsupported(format!("the operator {op}")));
            }
            let Token::Operator(operator) = *self.peek() else { break };
            let precedence = operator.precedence();
            if precedence < min_precedence {
                break;
            }
            self.next();
            let (return_bool, matching) = self.modifiers(operator)?;
            // `^` is right-associative: its right side may hold another `^`.
            let next_min = if operator == Operator::Pow { precedence } else { precedence + 1 };
            let rhs = self.expression(next_min)?;
            lhs = self.binary(operator, return_bool, matching, lhs, rhs)?;
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn binary(
        &self,
        operator: Operator,
        return_bool: bool,
        matching: Option<Grouping>,
        lhs: Expr,
        rhs: Expr,
    ) -> Result<Expr, ParseError> {
        let (left, right) = (lhs.value_type(), rhs.value_type());
        if left == ValueType::Matrix || right == ValueType::Matrix {
            return Err(self.invalid(format!(
                "binary expression must contain only scalar and instant vector types (operator {:?})",
                operator.symbol()
            )));
        }
        let both_scalars = left == ValueType::Scalar && right == ValueType::Scalar;
        if operator.is_comparison() && both_scalars && !return_bool {
            return Err(self.invalid("comparisons between scalars must use BOOL modifier".to_owned()));
        }
        if return_bool && !operator.is_comparison() {
            return Err(self.invalid("bool modifier can only be used on comparison operators".to_owned()));
        }
        if matching.is_some() && (left == ValueType::Scalar || right == ValueType::Scalar) {
            return Err(self.invalid("vector matching only allowed between instant vectors".to_owned()));
        }
        Ok(Expr::Binary { operator, return_bool, matching, lhs: Box::new(lhs), rhs: Box::new(rhs) })
    }

    /// `bool`, `on (…)` / `ignoring (…)` after a binary operator; `group_left`/`group_right`
    /// are refused.
    fn modifiers(&mut self, operator: Operator) -> Result<(bool, Option<Grouping>), ParseError> {
        let return_bool = if self.is_keyword("bool") {
            self.next();
            true
        } else {
            false
        };
        let matching = if self.is_keyword("on") {
            self.next();
            Some(Grouping::Include(self.label_list()?))
        } else if self.is_keyword("ignoring") {
            self.next();
            Some(Grouping::Exclude(self.label_list()?))
        } else {
            None
        };
        if self.is_keyword("group_left") || self.is_keyword("group_right") {
            return Err(ParseError::Unsupported(format!(
                "group_left and group_right (many-to-one matching) after {:?}",
                operator.symbol()
            )));
        }
        Ok((return_bool, matching))
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Token::Operator(Operator::Sub) => {
                self.next();
                // Unary minus binds less tightly than `^`: -2^2 is -4.
                let operand = self.power_operand()?;
                Ok(match operand {
                    Expr::Number(n) => Expr::Number(-n),
                    Expr::Range(_) => return Err(self.invalid("unary minus of a range vector".to_owned())),
                    other => Expr::Negate(Box::new(other)),
                })
            }
            Token::Operator(Operator::Add) => {
                self.next();
                self.power_operand()
            }
            _ => self.postfix(),
        }
    }

    /// A primary with any `^` chain after it.
    fn power_operand(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut base = self.unary()?;
        if *self.peek() == Token::Operator(Operator::Pow) {
            self.next();
            let (return_bool, matching) = self.modifiers(Operator::Pow)?;
            let exponent = self.expression(Operator::Pow.precedence())?;
            base = self.binary(Operator::Pow, return_bool, matching, base, exponent)?;
        }
        self.depth -= 1;
        Ok(base)
    }

    /// A primary with its `[range]`, `offset` and `@`.
    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut expr = self.primary()?;
        loop {
            match self.peek() {
                Token::LeftBracket => {
                    self.next();
                    let range_ns = self.duration("a range such as 5m")?;
                    if *self.peek() == Token::Colon {
                        return Err(ParseError::Unsupported("subqueries (expr[range:step])".to_owned()));
                    }
                    self.expect(Token::RightBracket, "\"]\"")?;
                    expr = match expr {
                        Expr::Selector(selector) if selector.offset_ns == 0 => {
                            Expr::Range(RangeSelector { selector, range_ns })
                        }
                        Expr::Selector(_) => {
                            return Err(self.invalid("offset must come after the range: x[5m] offset 1h".to_owned()));
                        }
                        _ => return Err(ParseError::Unsupported("subqueries (a range of an expression)".to_owned())),
                    };
                }
                Token::At => return Err(ParseError::Unsupported("the @ modifier".to_owned())),
                Token::Identifier(word) if word.eq_ignore_ascii_case("offset") => {
                    self.next();
                    let negative = *self.peek() == Token::Operator(Operator::Sub);
                    if negative {
                        self.next();
                    }
                    let offset_ns = self.duration("an offset such as 1h")?;
                    let offset_ns = if negative { -offset_ns } else { offset_ns };
                    match &mut expr {
                        Expr::Selector(selector) if selector.offset_ns == 0 => selector.offset_ns = offset_ns,
                        Expr::Range(range) if range.selector.offset_ns == 0 => range.selector.offset_ns = offset_ns,
                        Expr::Selector(_) | Expr::Range(_) => return Err(self.invalid("offset given twice".to_owned())),
                        _ => return Err(self.invalid("offset applies only to a selector".to_owned())),
                    }
                }
                _ => return Ok(expr),
            }
        }
    }

    fn duration(&mut self, wanted: &str) -> Result<i64, ParseError> {
        let position = self.position();
        match self.next() {
            Token::Duration(ns) if ns > 0 => Ok(ns),
            Token::Number(seconds) if seconds > 0.0 && seconds * 1e9 < i64::MAX as f64 => Ok((seconds * 1e9) as i64),
            other => Err(unexpected_at(position, &other, wanted)),
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.peek().clone() {
            Token::Number(n) => {
                self.next();
                Ok(Expr::Number(n))
            }
            Token::Duration(ns) => {
                self.next();
                Ok(Expr::Number(ns as f64 / 1e9))
            }
            Token::Text(_) => Err(ParseError::Unsupported("string literals".to_owned())),
            Token::LeftParen => {
                self.next();
                let inner = self.expression(0)?;
                self.expect(Token::RightParen, "\")\"")?;
                Ok(inner)
            }
            Token::LeftBrace => {
                let matchers = self.matchers()?;
                self.selector(matchers)
            }
            Token::Identifier(word) => {
                self.next();
                let lower = word.to_ascii_lowercase();
                let followed_by_grouping =
                    *self.peek() == Token::LeftParen || self.is_keyword("by") || self.is_keyword("without");
                if followed_by_grouping && AGGREGATIONS.contains(&lower.as_str()) {
                    return self.aggregate(&lower);
                }
                if followed_by_grouping && OTHER_AGGREGATIONS.contains(&lower.as_str()) {
                    return Err(ParseError::Unsupported(format!(
                        "the aggregation {lower}; supported: {}",
                        AGGREGATIONS.join(", ")
                    )));
                }
                if *self.peek() == Token::LeftParen {
                    return self.call(&word);
                }
                let mut matchers = vec![Matcher { label: "__name__".to_owned(), op: MatchOp::Equal(word) }];
                if *self.peek() == Token::LeftBrace {
                    matchers.extend(self.matchers()?);
                }
                self.selector(matchers)
            }
            _ => Err(self.unexpected("a number, a selector, a function, an aggregation or \"(\"")),
        }
    }

    fn selector(&self, matchers: Vec<Matcher>) -> Result<Expr, ParseError> {
        if matchers.iter().all(|matcher| matcher.accepts("")) {
            return Err(self.invalid("vector selector must contain at least one non-empty matcher".to_owned()));
        }
        Ok(Expr::Selector(Selector { matchers, offset_ns: 0 }))
    }

    /// `{label op "value", …}`.
    fn matchers(&mut self) -> Result<Vec<Matcher>, ParseError> {
        self.expect(Token::LeftBrace, "\"{\"")?;
        let mut matchers = Vec::new();
        loop {
            if *self.peek() == Token::RightBrace {
                self.next();
                return Ok(matchers);
            }
            let position = self.position();
            let label = match self.next() {
                Token::Identifier(label) if !label.contains(':') => label,
                Token::Text(label) => label,
                other => return Err(unexpected_at(position, &other, "a label name")),
            };
            let op_token = self.next();
            let position = self.position();
            let value = match self.next() {
                Token::Text(value) => value,
                other => return Err(unexpected_at(position, &other, "a quoted label value")),
            };
            let regex = |value: &str| {
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|error| self.invalid(format!("invalid regular expression {value:?}: {error}")))
            };
            let op = match op_token {
                Token::Equals => MatchOp::Equal(value),
                Token::Operator(Operator::Ne) => MatchOp::NotEqual(value),
                Token::RegexMatch => MatchOp::Matches(regex(&value)?),
                Token::RegexNoMatch => MatchOp::NotMatches(regex(&value)?),
                _ => return Err(self.invalid(format!("expected =, !=, =~ or !~ after label {label:?}"))),
            };
            matchers.push(Matcher { label, op });
            match self.peek() {
                Token::Comma => {
                    self.next();
                }
                Token::RightBrace => {}
                Token::SetOperator(op) if op == "or" => {
                    return Err(ParseError::Unsupported("\"or\" between label matchers".to_owned()));
                }
                _ => return Err(self.unexpected("\",\" or \"}\"")),
            }
        }
    }

    /// `(label, …)`.
    fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect(Token::LeftParen, "\"(\" and a list of labels")?;
        let mut labels = Vec::new();
        loop {
            let position = self.position();
            match self.next() {
                Token::RightParen => return Ok(labels),
                Token::Identifier(label) => labels.push(label),
                Token::Text(label) => labels.push(label),
                other => return Err(unexpected_at(position, &other, "a label name or \")\"")),
            }
            let position = self.position();
            match self.next() {
                Token::Comma => {}
                Token::RightParen => return Ok(labels),
                other => return Err(unexpected_at(position, &other, "\",\" or \")\"")),
            }
        }
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        if self.is_keyword("by") {
            self.next();
            Ok(Some(Grouping::Include(self.label_list()?)))
        } else if self.is_keyword("without") {
            self.next();
            Ok(Some(Grouping::Exclude(self.label_list()?)))
        } else {
            Ok(None)
        }
    }

    fn aggregate(&mut self, name: &str) -> Result<Expr, ParseError> {
        let aggregation = match name {
            "sum" => Aggregation::Sum,
            "avg" => Aggregation::Avg,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            _ => Aggregation::Count,
        };
        let before = self.grouping()?;
        self.expect(Token::LeftParen, "\"(\"")?;
        let expr = self.expression(0)?;
        if *self.peek() == Token::Comma {
            return Err(self.invalid(format!("{name}() takes one argument")));
        }
        self.expect(Token::RightParen, "\")\"")?;
        let after = self.grouping()?;
        if before.is_some() && after.is_some() {
            return Err(self.invalid(format!("{name}() is grouped twice")));
        }
        if expr.value_type() != ValueType::Vector {
            return Err(self.invalid(format!(
                "expected type instant vector in aggregation expression, got {}",
                expr.value_type()
            )));
        }
        Ok(Expr::Aggregate { aggregation, grouping: before.or(after), expr: Box::new(expr) })
    }

    fn call(&mut self, name: &str) -> Result<Expr, ParseError> {
        let Some(function) = RangeFunction::named(name) else {
            return Err(ParseError::Unsupported(format!("the function {name}(); supported: {FUNCTIONS}")));
        };
        self.expect(Token::LeftParen, "\"(\"")?;
        let mut args = Vec::new();
        if *self.peek() != Token::RightParen {
            loop {
                args.push(self.expression(0)?);
                if *self.peek() != Token::Comma {
                    break;
                }
                self.next();
            }
        }
        self.expect(Token::RightParen, "\")\"")?;
        let expected = if function == RangeFunction::QuantileOverTime { 2 } else { 1 };
        if args.len() != expected {
            return Err(self.invalid(format!("{name}() takes {expected} argument(s), got {}", args.len())));
        }
        let Some(Expr::Range(range)) = args.pop() else {
            return Err(self.invalid(format!("{name}() takes a range vector such as x[5m] as its last argument")));
        };
        let quantile = match args.pop() {
            Some(phi) if phi.value_type() == ValueType::Scalar => Some(Box::new(phi)),
            Some(other) => {
                return Err(self.invalid(format!("{name}() takes a number first, got {}", other.value_type())));
            }
            None => None,
        };
        Ok(Expr::Call { function, quantile, range })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::prometheus::eval::{self, Limits, SampleBlocks, SampleSource, Steps, Value};

    struct Nothing;

    impl SampleSource for Nothing {
        fn blocks(&self, _: u32, _: i64, _: i64) -> SampleBlocks<'_> {
            Box::new(std::iter::empty())
        }
    }

    /// The value of a scalar expression.
    fn number(text: &str) -> f64 {
        let limits = Limits { lookback_ns: 1, max_samples: 10 };
        match eval::evaluate(&parse(text).unwrap(), &[], &Nothing, Steps::instant(0), limits).unwrap() {
            Value::Scalar(values) => values[0],
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn numbers_and_precedence_follow_prometheus() {
        assert_eq!(number("1 + 1"), 2.0);
        assert_eq!(number("2 * 3 + 4"), 10.0);
        assert_eq!(number("2 + 3 * 4"), 14.0);
        assert_eq!(number("2 ^ 3 ^ 2"), 512.0);
        assert_eq!(number("-2 ^ 2"), -4.0);
        assert_eq!(number("(1 + 2) * 3"), 9.0);
        assert_eq!(number("10 % 4 - 1"), 1.0);
        assert_eq!(number("1e3"), 1000.0);
        assert_eq!(number("0x10"), 16.0);
        assert_eq!(number("3 > bool 2"), 1.0);
        assert!(number("NaN").is_nan());
        assert_eq!(number("-Inf"), f64::NEG_INFINITY);
    }

    #[test]
    fn durations_read_largest_unit_first() {
        assert_eq!(parse_duration_ns("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration_ns("500ms"), Some(500_000_000));
        assert_eq!(parse_duration_ns("1m1h"), None);
        assert_eq!(parse_duration_ns("5"), None);
        assert_eq!(parse_duration_ns("5parsecs"), None);
    }

    #[test]
    fn selectors_with_names_matchers_ranges_and_offsets() {
        let Expr::Range(range) = parse(r#"plant1:boiler3:steam_temp{unit=~"C|K", site!="b"}[5m] offset 1h"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(range.range_ns, 300_000_000_000);
        assert_eq!(range.selector.offset_ns, 3_600_000_000_000);
        assert_eq!(range.selector.matchers.len(), 3);
        assert!(range.selector.matchers[1].accepts("K") && !range.selector.matchers[1].accepts("CK"));
        let Expr::Selector(selector) = parse(r#"{"diode_name"="a/b", x!~'y\x41'}"#).unwrap() else { panic!() };
        assert!(matches!(&selector.matchers[1].op, MatchOp::NotMatches(r) if r.as_str() == "^(?:yA)$"));
        let Expr::Call { function, quantile, .. } = parse("quantile_over_time(0.9, x[1m] offset -5m)").unwrap() else {
            panic!()
        };
        assert_eq!(function, RangeFunction::QuantileOverTime);
        assert!(quantile.is_some());
        let Expr::Aggregate { grouping, .. } = parse("sum(rate(x[5m])) by (unit)").unwrap() else { panic!() };
        assert_eq!(grouping, Some(Grouping::Include(vec!["unit".into()])));
    }

    #[test]
    fn malformed_queries_say_where() {
        for (query, expected) in [
            ("sum((", "position 5"),
            ("x{a=}", "quoted label value"),
            ("{}", "non-empty matcher"),
            (r#"{a=~""}"#, "non-empty matcher"),
            ("1 > 2", "BOOL"),
            ("rate(x)", "range vector"),
            ("x[5m] + 1", "binary expression"),
            ("x{a=~\"(\"}", "invalid regular expression"),
            ("\"unterminated", "unterminated"),
            ("sum(x) by (a) by (b)", "position"),
            ("x $ y", "unexpected character '$'"),
        ] {
            let error = parse(query).unwrap_err().to_string();
            assert!(error.contains(expected), "{query}: {error}");
        }
    }

    #[test]
    fn promql_outside_the_subset_is_named() {
        for (query, named) in [
            ("topk(3, x)", "topk"),
            ("x and y", "and"),
            ("x or y", "or"),
            ("abs(x)", "abs()"),
            ("rate(x[5m:1m])", "subqueries"),
            ("x @ 100", "@ modifier"),
            ("x * on(unit) group_left y", "group_left"),
            ("stddev by (a) (x)", "stddev"),
            ("\"text\"", "string"),
            ("label_replace(x, \"a\", \"b\", \"c\", \"d\")", "label_replace()"),
        ] {
            match parse(query) {
                Err(ParseError::Unsupported(what)) => assert!(what.contains(named), "{query}: {what}"),
                other => panic!("{query}: {other:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn any_text_gives_an_expression_or_an_error(text in "\\PC{0,60}") {
            let _ = parse(&text);
        }

        #[test]
        fn promql_like_text_gives_an_expression_or_an_error(
            text in "[a-z_(){}\\[\\]=~!\"',0-9 +*/^<>.-]{0,40}"
        ) {
            let _ = parse(&text);
        }
    }
}
