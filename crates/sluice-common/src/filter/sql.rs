//! SQL92 filter expressions: parsed by `sqlparser`, compiled here into [`Node`]s that
//! [`super::eval`] walks. The grammar (docs/FILTERS.md) is RocketMQ's subset and more:
//! comparisons, `BETWEEN`, `IN`, `IS [NOT] NULL`, `AND`/`OR`/`NOT`, parentheses, `TRUE`/`FALSE`,
//! `NULL`, string, integer and float literals, and `[NOT] CONTAINS|STARTSWITH|ENDSWITH`.
//! Unquoted `TAGS` and `KEY` name the message's tag and key; any other identifier (or a
//! double-quoted one) names a property.

use sqlparser::ast::{BinaryOperator, Expr, InTarget, UnaryOperator, Value};
use sqlparser::dialect::{Dialect, GenericDialect, Precedence};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token};

use super::FilterError;

/// Longest SQL expression accepted, in bytes.
pub const MAX_SQL_EXPRESSION_BYTES: usize = 4096;
/// Most distinct properties one expression may name: each is a slot filled in one pass over
/// a message's properties, kept on the stack.
pub const MAX_PROPERTIES: usize = 16;
/// Deepest nesting accepted (sqlparser's recursion limit).
const MAX_DEPTH: usize = 64;

/// A literal of the expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `NULL`.
    Null,
    /// `TRUE` or `FALSE`.
    Bool(bool),
    /// An integer that fits 64 bits.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A single-quoted string.
    Str(Box<str>),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `<>` or `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// The string operators RocketMQ added to SQL92.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOp {
    /// `a CONTAINS 'x'`
    Contains,
    /// `a STARTSWITH 'x'`
    StartsWith,
    /// `a ENDSWITH 'x'`
    EndsWith,
}

/// A compiled expression node. Variant fields are the operands the variant's doc names.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A constant.
    Literal(Literal),
    /// A property, by its slot in [`SqlFilter::properties`].
    Property(u8),
    /// The message's tag (`TAGS`).
    Tags,
    /// The message's key (`KEY`).
    Key,
    /// `NOT e`
    Not(Box<Node>),
    /// `a AND b`
    And(Box<Node>, Box<Node>),
    /// `a OR b`
    Or(Box<Node>, Box<Node>),
    /// `a <op> b`
    Compare(Cmp, Box<Node>, Box<Node>),
    /// `e [NOT] BETWEEN low AND high`
    Between { value: Box<Node>, low: Box<Node>, high: Box<Node>, negated: bool },
    /// `e [NOT] IN (a, b, ...)`
    In { value: Box<Node>, list: Vec<Node>, negated: bool },
    /// `e IS [NOT] NULL`
    IsNull { value: Box<Node>, negated: bool },
    /// `a [NOT] CONTAINS|STARTSWITH|ENDSWITH b`
    Text { op: TextOp, value: Box<Node>, pattern: Box<Node>, negated: bool },
}

/// A compiled SQL filter.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFilter {
    pub(super) root: Node,
    /// The properties the expression names, in slot order.
    pub(super) properties: Vec<Box<str>>,
    expression: Box<str>,
}

impl SqlFilter {
    /// Parses and compiles `expression`. Errors give the line and column and what was wrong.
    pub fn parse(expression: &str) -> Result<SqlFilter, FilterError> {
        if expression.len() > MAX_SQL_EXPRESSION_BYTES {
            return Err(FilterError::sql(
                expression,
                format!("the expression is {} bytes; at most {MAX_SQL_EXPRESSION_BYTES}", expression.len()),
            ));
        }
        let ast = parse_ast(expression).map_err(|e| FilterError::sql(expression, parser_message(e, expression)))?;
        let mut compiler = Compiler { properties: Vec::new() };
        let root = compiler.node(&ast).map_err(|e| FilterError::sql(expression, e))?;
        Ok(SqlFilter { root, properties: compiler.properties, expression: expression.into() })
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The compiled tree.
    pub fn root(&self) -> &Node {
        &self.root
    }
}

fn parse_ast(expression: &str) -> Result<Expr, ParserError> {
    let dialect = FilterDialect;
    let mut parser = Parser::new(&dialect).with_recursion_limit(MAX_DEPTH).try_with_sql(expression)?;
    let expr = parser.parse_expr()?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(ParserError::ParserError(format!(
            "Expected: end of expression (AND, OR, or an operator before it), found: {} at {}",
            next.token, next.span.start
        )));
    }
    Ok(expr)
}

/// sqlparser's message without its "sql parser error: " prefix, and with a position: one
/// found at the end of the input comes without any.
fn parser_message(e: ParserError, expression: &str) -> String {
    let message = match e {
        ParserError::TokenizerError(s) | ParserError::ParserError(s) => s,
        ParserError::RecursionLimitExceeded => return format!("nested deeper than {MAX_DEPTH} levels"),
    };
    if message.contains("Line: ") {
        return message;
    }
    let line = expression.lines().count().max(1);
    let column = expression.lines().last().map_or(0, |l| l.chars().count()) + 1;
    format!("{message} at Line: {line}, Column: {column} (the end of the expression)")
}

/// The generic SQL dialect, plus RocketMQ's infix `[NOT] CONTAINS`, `STARTSWITH` and
/// `ENDSWITH` at the precedence of `LIKE`.
#[derive(Debug)]
struct FilterDialect;

fn text_op(token: &Token) -> Option<TextOp> {
    let Token::Word(w) = token else { return None };
    if w.quote_style.is_some() {
        return None;
    }
    let v = w.value.as_str();
    if v.eq_ignore_ascii_case("CONTAINS") {
        Some(TextOp::Contains)
    } else if v.eq_ignore_ascii_case("STARTSWITH") {
        Some(TextOp::StartsWith)
    } else if v.eq_ignore_ascii_case("ENDSWITH") {
        Some(TextOp::EndsWith)
    } else {
        None
    }
}

fn is_not(token: &Token) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("NOT"))
}

/// The text operator starting at the next token, and whether `NOT` precedes it.
fn next_text_op(parser: &Parser) -> Option<(TextOp, bool)> {
    let first = &parser.peek_nth_token_ref(0).token;
    if let Some(op) = text_op(first) {
        return Some((op, false));
    }
    if is_not(first) {
        return text_op(&parser.peek_nth_token_ref(1).token).map(|op| (op, true));
    }
    None
}

impl Dialect for FilterDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        GenericDialect.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        GenericDialect.is_identifier_part(ch)
    }

    fn parse_infix(&self, parser: &mut Parser, expr: &Expr, _precedence: u8) -> Option<Result<Expr, ParserError>> {
        let (op, negated) = next_text_op(parser)?;
        if negated {
            parser.advance_token();
        }
        parser.advance_token();
        let right = match parser.parse_subexpr(self.prec_value(Precedence::Like)) {
            Ok(right) => right,
            Err(e) => return Some(Err(e)),
        };
        let name = match op {
            TextOp::Contains => "CONTAINS",
            TextOp::StartsWith => "STARTSWITH",
            TextOp::EndsWith => "ENDSWITH",
        };
        let name = if negated { format!("NOT {name}") } else { name.to_owned() };
        Some(Ok(Expr::BinaryOp {
            left: Box::new(expr.clone()),
            op: BinaryOperator::Custom(name),
            right: Box::new(right),
        }))
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        next_text_op(parser).map(|_| Ok(self.prec_value(Precedence::Like)))
    }
}

struct Compiler {
    properties: Vec<Box<str>>,
}

type Compiled = Result<Node, String>;

impl Compiler {
    fn node(&mut self, e: &Expr) -> Compiled {
        let boxed = |c: &mut Compiler, e: &Expr| c.node(e).map(Box::new);
        Ok(match e {
            Expr::Nested(inner) => self.node(inner)?,
            Expr::Identifier(ident) => self.name(&ident.value, ident.quote_style.is_none(), ident.span.start)?,
            Expr::CompoundIdentifier(parts) => {
                let name: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
                self.name(&name.join("."), false, parts[0].span.start)?
            }
            Expr::Value(v) => Node::Literal(literal(&v.value, false).map_err(|m| at(v.span.start, m))?),
            Expr::UnaryOp { op: UnaryOperator::Not, expr } => Node::Not(boxed(self, expr)?),
            Expr::UnaryOp { op: op @ (UnaryOperator::Minus | UnaryOperator::Plus), expr } => match &**expr {
                Expr::Value(v) => {
                    Node::Literal(literal(&v.value, *op == UnaryOperator::Minus).map_err(|m| at(v.span.start, m))?)
                }
                other => return Err(unsupported(other, "a sign before anything but a number")),
            },
            Expr::BinaryOp { left, op, right } => self.binary(left, op, right, e)?,
            Expr::Between { expr, negated, low, high } => Node::Between {
                value: boxed(self, expr)?,
                low: boxed(self, low)?,
                high: boxed(self, high)?,
                negated: *negated,
            },
            Expr::In { expr, target: InTarget::List(list), negated, global: false } => Node::In {
                value: boxed(self, expr)?,
                list: list.iter().map(|item| self.node(item)).collect::<Result<_, _>>()?,
                negated: *negated,
            },
            Expr::IsNull(expr) => Node::IsNull { value: boxed(self, expr)?, negated: false },
            Expr::IsNotNull(expr) => Node::IsNull { value: boxed(self, expr)?, negated: true },
            other => return Err(unsupported(other, describe(other))),
        })
    }

    fn binary(&mut self, left: &Expr, op: &BinaryOperator, right: &Expr, whole: &Expr) -> Compiled {
        let (l, r) = (Box::new(self.node(left)?), Box::new(self.node(right)?));
        let cmp = |c| Ok(Node::Compare(c, l.clone(), r.clone()));
        match op {
            BinaryOperator::And => Ok(Node::And(l, r)),
            BinaryOperator::Or => Ok(Node::Or(l, r)),
            BinaryOperator::Eq => cmp(Cmp::Eq),
            BinaryOperator::NotEq => cmp(Cmp::Ne),
            BinaryOperator::Lt => cmp(Cmp::Lt),
            BinaryOperator::LtEq => cmp(Cmp::Le),
            BinaryOperator::Gt => cmp(Cmp::Gt),
            BinaryOperator::GtEq => cmp(Cmp::Ge),
            BinaryOperator::Custom(name) => {
                let negated = name.starts_with("NOT ");
                let op = match name.trim_start_matches("NOT ") {
                    "CONTAINS" => TextOp::Contains,
                    "STARTSWITH" => TextOp::StartsWith,
                    _ => TextOp::EndsWith,
                };
                Ok(Node::Text { op, value: l, pattern: r, negated })
            }
            other => Err(unsupported(whole, &format!("the operator {other}"))),
        }
    }

    /// An identifier: `TAGS` or `KEY` when unquoted and upper-case, else a property.
    fn name(&mut self, name: &str, unquoted: bool, location: Location) -> Compiled {
        match name {
            "TAGS" if unquoted => return Ok(Node::Tags),
            "KEY" if unquoted => return Ok(Node::Key),
            _ => {}
        }
        if let Some(slot) = self.properties.iter().position(|p| &**p == name) {
            return Ok(Node::Property(slot as u8));
        }
        if self.properties.len() == MAX_PROPERTIES {
            return Err(at(
                location,
                format!("{name:?} is property {}; an expression may name at most {MAX_PROPERTIES}", MAX_PROPERTIES + 1),
            ));
        }
        self.properties.push(name.into());
        Ok(Node::Property((self.properties.len() - 1) as u8))
    }
}

fn literal(v: &Value, negate: bool) -> Result<Literal, String> {
    let sign = if negate { "-" } else { "" };
    match v {
        Value::Number(digits, _) => {
            let text = format!("{sign}{digits}");
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Literal::Int(i));
            }
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Literal::Float(f)),
                _ => Err(format!("{text} is not a number this filter can hold (64-bit integer or finite float)")),
            }
        }
        _ if negate => Err(format!("a sign before {v}: only numbers take one")),
        Value::SingleQuotedString(s) => Ok(Literal::Str(s.as_str().into())),
        Value::Boolean(b) => Ok(Literal::Bool(*b)),
        Value::Null => Ok(Literal::Null),
        other => Err(format!(
            "the literal {other} is not supported: use 'single-quoted strings', numbers, TRUE, FALSE or NULL"
        )),
    }
}

fn at(location: Location, message: String) -> String {
    format!("{message} at {location}")
}

fn unsupported(e: &Expr, what: &str) -> String {
    use sqlparser::ast::Spanned;
    let location = e.span().start;
    format!(
        "{what} is not supported in filters, at {location}: use comparisons (= <> < <= > >=), BETWEEN, IN, IS [NOT] \
         NULL, [NOT] CONTAINS/STARTSWITH/ENDSWITH, AND, OR, NOT and parentheses (docs/FILTERS.md)"
    )
}

/// A short name for an expression kind the filter grammar leaves out.
fn describe(e: &Expr) -> &'static str {
    match e {
        Expr::Like { .. } | Expr::ILike { .. } => "LIKE",
        Expr::Function(_) => "a function call",
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::In { .. } => "a subquery or IN over anything but a list",
        Expr::Case { .. } => "CASE",
        Expr::Cast { .. } => "CAST",
        Expr::IsTrue(_) | Expr::IsFalse(_) | Expr::IsNotTrue(_) | Expr::IsNotFalse(_) => "IS TRUE/FALSE",
        _ => "this expression",
    }
}
