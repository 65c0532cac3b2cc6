//! [`MessageFilter`]: which messages a consumer receives, decided on the broker
//! (docs/FILTERS.md).

use sluice_common::filter::Filter;

use crate::ErrorCode;
use crate::error::{Error, Result};

/// Which messages a consumer receives: a tag expression (`TagA || TagB`), an SQL92 expression
/// over the tag (`TAGS`), key (`KEY`) and properties (`price > 100 AND region IN ('eu')`), or
/// both (a message must pass both). The broker evaluates it: messages that do not match never
/// cross the network, and the consumer's position moves past them.
///
/// ```
/// use sluice_client::MessageFilter;
/// let filter = MessageFilter::tags("TagA || TagB").and_sql("price > 100");
/// assert!(filter.validate().is_ok());
/// assert!(MessageFilter::sql("price >").validate().is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    tags: String,
    sql: String,
}

impl MessageFilter {
    /// Messages whose tag the expression names: `*` (every message), `TagA`, `TagA || TagB`.
    pub fn tags(expression: impl Into<String>) -> MessageFilter {
        MessageFilter { tags: expression.into(), sql: String::new() }
    }

    /// Messages for which the SQL92 expression is TRUE.
    pub fn sql(expression: impl Into<String>) -> MessageFilter {
        MessageFilter { tags: String::new(), sql: expression.into() }
    }

    /// Also requires the SQL92 expression to be TRUE.
    pub fn and_sql(self, expression: impl Into<String>) -> MessageFilter {
        MessageFilter { sql: expression.into(), ..self }
    }

    /// Also requires the tag to be one the expression names.
    pub fn and_tags(self, expression: impl Into<String>) -> MessageFilter {
        MessageFilter { tags: expression.into(), ..self }
    }

    /// The tag expression ("" for none).
    pub fn tag_expression(&self) -> &str {
        &self.tags
    }

    /// The SQL expression ("" for none).
    pub fn sql_expression(&self) -> &str {
        &self.sql
    }

    /// Checks both expressions as the broker will: a malformed one is an error with
    /// [`ErrorCode::InvalidFilter`] giving the position and what was expected.
    pub fn validate(&self) -> Result<()> {
        Filter::compile(&self.tags, &self.sql)
            .map(drop)
            .map_err(|e| Error::broker(ErrorCode::InvalidFilter, format!("{e} (docs/FILTERS.md)")))
    }
}
