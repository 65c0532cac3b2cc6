//! Evaluating a compiled SQL filter against one message, with SQL's three-valued logic.
//!
//! Property values are text. Their type comes from what they are compared with: a number
//! makes them a number (an integer compared with a float is compared as numbers), a string
//! keeps them text, `TRUE`/`FALSE` makes them a boolean (`true`/`false`, any case). Two
//! property values compare as numbers when both read as numbers, else as text. A missing
//! property, tag or key is NULL: a comparison with NULL is UNKNOWN, and UNKNOWN does not match.
//! A value that cannot take the type asked of it is an evaluation error: the message does not
//! match and the caller counts it. `AND` with a FALSE side is FALSE and `OR` with a TRUE side
//! is TRUE whatever the other side is (error or UNKNOWN), so the order of evaluation never
//! changes a result. Nothing here allocates.

use std::cmp::Ordering;

use super::sql::{Cmp, Literal, MAX_PROPERTIES, Node, SqlFilter, TextOp};

/// Why a message could not be evaluated. The message does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// A value compared with a number does not read as one.
    #[error("a value compared with a number is not a number")]
    NotANumber,
    /// A value used as a condition, or compared with TRUE/FALSE, is not `true` or `false`.
    #[error("a value used as a condition is not true or false")]
    NotABoolean,
    /// Values of types that do not compare (a number with a string literal, an ordering of
    /// booleans, a text operator on a number).
    #[error("values of different types are compared")]
    TypeMismatch,
    /// The key is used as text but is not UTF-8.
    #[error("the key is not UTF-8")]
    KeyNotUtf8,
}

/// SQL truth values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    /// TRUE.
    True,
    /// FALSE.
    False,
    /// UNKNOWN (NULL involved).
    Unknown,
}

type Eval = Result<Truth, EvalError>;

impl Truth {
    fn of(b: bool) -> Truth {
        if b { Truth::True } else { Truth::False }
    }

    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }
}

/// A value during evaluation.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string literal: always text.
    Str(&'a str),
    /// A message's property, tag or key: typed by what it meets.
    Text(&'a str),
}

/// What one message offers an expression: its tag, key and named properties' values.
pub(super) struct Fields<'a> {
    pub tag: Option<&'a str>,
    pub key: Option<&'a [u8]>,
    pub slots: [Option<&'a str>; MAX_PROPERTIES],
}

impl SqlFilter {
    /// Evaluates against a message with `tag`, `key` and `properties` (the first of several
    /// properties of one name counts). `Ok(true)` only when the expression is TRUE.
    pub fn eval<'a>(
        &self,
        tag: Option<&'a str>,
        key: Option<&'a [u8]>,
        properties: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<bool, EvalError> {
        let mut fields = Fields { tag, key, slots: [None; MAX_PROPERTIES] };
        if !self.properties.is_empty() {
            for (name, value) in properties {
                if let Some(slot) = self.properties.iter().position(|p| **p == *name)
                    && fields.slots[slot].is_none()
                {
                    fields.slots[slot] = Some(value);
                }
            }
        }
        truth(&self.root, &fields).map(|t| t == Truth::True)
    }
}

/// The truth of `node` as a condition.
fn truth(node: &Node, f: &Fields) -> Eval {
    match node {
        Node::Not(inner) => truth(inner, f).map(Truth::not),
        Node::And(a, b) => and(truth(a, f), || truth(b, f)),
        Node::Or(a, b) => or(truth(a, f), || truth(b, f)),
        Node::Compare(op, a, b) => compare(*op, value(a, f)?, value(b, f)?),
        Node::Between { value: v, low, high, negated } => {
            let v = value(v, f)?;
            let above = value(low, f).and_then(|low| compare(Cmp::Ge, v, low));
            let t = and(above, || compare(Cmp::Le, v, value(high, f)?))?;
            Ok(if *negated { t.not() } else { t })
        }
        Node::In { value: v, list, negated } => {
            let v = value(v, f)?;
            let mut t: Eval = Ok(Truth::False);
            for item in list {
                t = or(t, || compare(Cmp::Eq, v, value(item, f)?));
                if t == Ok(Truth::True) {
                    break;
                }
            }
            t.map(|t| if *negated { t.not() } else { t })
        }
        Node::IsNull { value: v, negated } => {
            let null = matches!(value(v, f)?, Val::Null);
            Ok(Truth::of(null != *negated))
        }
        Node::Text { op, value: v, pattern, negated } => {
            let t = text(*op, value(v, f)?, value(pattern, f)?)?;
            Ok(if *negated { t.not() } else { t })
        }
        leaf => match value(leaf, f)? {
            Val::Null => Ok(Truth::Unknown),
            Val::Bool(b) => Ok(Truth::of(b)),
            Val::Text(t) => as_bool(t).map(Truth::of).ok_or(EvalError::NotABoolean),
            Val::Int(_) | Val::Float(_) | Val::Str(_) => Err(EvalError::NotABoolean),
        },
    }
}

/// FALSE if either side is; otherwise an error if either is; UNKNOWN if either is; else TRUE.
fn and(a: Eval, b: impl FnOnce() -> Eval) -> Eval {
    if a == Ok(Truth::False) {
        return a;
    }
    match (a, b()) {
        (_, Ok(Truth::False)) => Ok(Truth::False),
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(Truth::Unknown), _) | (_, Ok(Truth::Unknown)) => Ok(Truth::Unknown),
        _ => Ok(Truth::True),
    }
}

/// TRUE if either side is; otherwise an error if either is; UNKNOWN if either is; else FALSE.
fn or(a: Eval, b: impl FnOnce() -> Eval) -> Eval {
    if a == Ok(Truth::True) {
        return a;
    }
    match (a, b()) {
        (_, Ok(Truth::True)) => Ok(Truth::True),
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(Truth::Unknown), _) | (_, Ok(Truth::Unknown)) => Ok(Truth::Unknown),
        _ => Ok(Truth::False),
    }
}

/// The value of a leaf; a condition used as a value (`(a > 1) = TRUE`) is its truth.
fn value<'a>(node: &'a Node, f: &Fields<'a>) -> Result<Val<'a>, EvalError> {
    Ok(match node {
        Node::Literal(Literal::Null) => Val::Null,
        Node::Literal(Literal::Bool(b)) => Val::Bool(*b),
        Node::Literal(Literal::Int(i)) => Val::Int(*i),
        Node::Literal(Literal::Float(x)) => Val::Float(*x),
        Node::Literal(Literal::Str(s)) => Val::Str(s),
        Node::Property(slot) => f.slots[*slot as usize].map_or(Val::Null, Val::Text),
        Node::Tags => f.tag.map_or(Val::Null, Val::Text),
        Node::Key => match f.key {
            None => Val::Null,
            Some(k) => Val::Text(std::str::from_utf8(k).map_err(|_| EvalError::KeyNotUtf8)?),
        },
        condition => match truth(condition, f)? {
            Truth::Unknown => Val::Null,
            t => Val::Bool(t == Truth::True),
        },
    })
}

fn compare(op: Cmp, a: Val, b: Val) -> Eval {
    let Some(order) = order(a, b)? else { return Ok(Truth::Unknown) };
    // Booleans are equal or not; they have no order.
    if matches!((a, b), (Val::Bool(_), _) | (_, Val::Bool(_))) && !matches!(op, Cmp::Eq | Cmp::Ne) {
        return Err(EvalError::TypeMismatch);
    }
    Ok(Truth::of(match op {
        Cmp::Eq => order == Ordering::Equal,
        Cmp::Ne => order != Ordering::Equal,
        Cmp::Lt => order == Ordering::Less,
        Cmp::Le => order != Ordering::Greater,
        Cmp::Gt => order == Ordering::Greater,
        Cmp::Ge => order != Ordering::Less,
    }))
}

/// How `a` orders against `b`, `None` when either is NULL (or a float comparison is
/// undefined, which finite values never are).
fn order(a: Val, b: Val) -> Result<Option<Ordering>, EvalError> {
    use Val::*;
    Ok(match (a, b) {
        (Null, _) | (_, Null) => None,
        (Int(x), Int(y)) => Some(x.cmp(&y)),
        (Int(_) | Float(_), Int(_) | Float(_)) => float(a).partial_cmp(&float(b)),
        (Text(t), Int(_) | Float(_)) => order(number(t)?, b)?,
        (Int(_) | Float(_), Text(t)) => order(a, number(t)?)?,
        (Text(x), Text(y)) => match (number(x), number(y)) {
            (Ok(nx), Ok(ny)) => order(nx, ny)?,
            _ => Some(x.cmp(y)),
        },
        (Str(x) | Text(x), Str(y) | Text(y)) => Some(x.cmp(y)),
        (Bool(x), Bool(y)) => Some(x.cmp(&y)),
        (Text(t), Bool(y)) => Some(as_bool(t).ok_or(EvalError::NotABoolean)?.cmp(&y)),
        (Bool(x), Text(t)) => Some(x.cmp(&as_bool(t).ok_or(EvalError::NotABoolean)?)),
        _ => return Err(EvalError::TypeMismatch),
    })
}

fn float(v: Val) -> f64 {
    match v {
        Val::Int(i) => i as f64,
        Val::Float(x) => x,
        _ => unreachable!("only numbers are promoted"),
    }
}

/// Reads text as a number: an integer if it is one, else a finite decimal float. `NaN`,
/// `inf` and hexadecimal are not numbers here.
fn number(t: &str) -> Result<Val<'_>, EvalError> {
    let t = t.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E')) {
        return Err(EvalError::NotANumber);
    }
    if let Ok(i) = t.parse::<i64>() {
        return Ok(Val::Int(i));
    }
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(Val::Float(x)),
        _ => Err(EvalError::NotANumber),
    }
}

fn as_bool(t: &str) -> Option<bool> {
    if t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn text(op: TextOp, a: Val, b: Val) -> Eval {
    let (Val::Str(s) | Val::Text(s), Val::Str(p) | Val::Text(p)) = (a, b) else {
        return match (a, b) {
            (Val::Null, _) | (_, Val::Null) => Ok(Truth::Unknown),
            _ => Err(EvalError::TypeMismatch),
        };
    };
    Ok(Truth::of(match op {
        TextOp::Contains => s.contains(p),
        TextOp::StartsWith => s.starts_with(p),
        TextOp::EndsWith => s.ends_with(p),
    }))
}
