//! Subscription filters: which messages a consumer receives (docs/FILTERS.md). Pure logic, no
//! I/O: the SDK and the CLI compile an expression to check it before subscribing, the broker
//! compiles it once per subscription and evaluates it at fetch.
//!
//! A [`Filter`] is a tag expression ([`TagFilter`]: `*`, `TagA || TagB`), an SQL92 expression
//! over the tag, key and properties ([`SqlFilter`]), or both (a message must match both).
//! Evaluation reads a record's header fields, key and properties, never its value. A batch
//! whose tag summary (docs/FORMAT.md) shows none of a tag expression's tags is skipped whole.

mod eval;
mod sql;
mod tags;

pub use eval::{EvalError, Truth};
pub use sql::{Cmp, Literal, MAX_PROPERTIES, MAX_SQL_EXPRESSION_BYTES, Node, SqlFilter, TextOp};
pub use tags::{MAX_TAG_EXPRESSION_BYTES, TagFilter, tag_summary_bit};

use crate::record::{BatchHeader, RecordView};

/// A malformed filter expression: which one, where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} filter {expression:?}: {message}")]
pub struct FilterError {
    kind: &'static str,
    expression: String,
    message: String,
}

impl FilterError {
    fn tags(expression: &str, column: usize, message: String) -> FilterError {
        FilterError { kind: "tag", expression: shortened(expression), message: format!("{message} at column {column}") }
    }

    fn sql(expression: &str, message: String) -> FilterError {
        FilterError { kind: "SQL", expression: shortened(expression), message }
    }

    /// What was wrong, with its position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// An expression quoted in an error: long ones are cut, so errors stay readable.
fn shortened(expression: &str) -> String {
    const MAX_CHARS: usize = 120;
    match expression.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &expression[..cut]),
        None => expression.to_owned(),
    }
}

/// A compiled subscription filter: a tag expression, an SQL expression, or both.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    tags: Option<TagFilter>,
    sql: Option<SqlFilter>,
}

impl Filter {
    /// Compiles a tag expression and an SQL expression; an empty (or all-blank) one is absent.
    /// `Ok(None)` when neither selects anything (both absent, or the tag expression is `*`
    /// with no SQL): every message matches.
    pub fn compile(tag_expression: &str, sql_expression: &str) -> Result<Option<Filter>, FilterError> {
        let tags = match tag_expression.trim() {
            "" => None,
            t => Some(TagFilter::parse(t)?).filter(|t| !t.is_all()),
        };
        let sql = match sql_expression.trim() {
            "" => None,
            s => Some(SqlFilter::parse(s)?),
        };
        Ok((tags.is_some() || sql.is_some()).then_some(Filter { tags, sql }))
    }

    /// The tag expression, if any.
    pub fn tags(&self) -> Option<&TagFilter> {
        self.tags.as_ref()
    }

    /// The SQL expression, if any.
    pub fn sql(&self) -> Option<&SqlFilter> {
        self.sql.as_ref()
    }

    /// Whether a batch with `header` may hold a matching message; `false` means it holds
    /// none and need not be read. Only a tag expression can rule a batch out, and only a
    /// batch that carries a tag summary.
    pub fn batch_may_match(&self, header: &BatchHeader) -> bool {
        match (&self.tags, header.tag_summary) {
            (Some(tags), Some(summary)) => tags.may_match_summary(summary),
            _ => true,
        }
    }

    /// Whether `record` matches. An evaluation error means it does not; the caller counts it.
    pub fn matches(&self, record: &RecordView) -> Result<bool, EvalError> {
        if let Some(tags) = &self.tags
            && !tags.matches(record.tag())
        {
            return Ok(false);
        }
        match &self.sql {
            None => Ok(true),
            Some(sql) => sql.eval(record.tag(), record.key.as_deref(), record.properties()),
        }
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
