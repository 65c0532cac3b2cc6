//! Tag expressions: `*`, `TagA`, `TagA || TagB || TagC` (docs/FILTERS.md).
//!
//! A tag matches exactly and case-sensitively. `*` matches every message, tagged or not; any
//! other expression matches only messages whose tag is one of those named. Whitespace around
//! tags and `||` is ignored, so a tag in an expression cannot contain whitespace or `|` (a
//! message whose tag does can be selected with SQL: `TAGS = 'a b'`).

use super::FilterError;

/// Longest tag expression accepted, in bytes: a limit on what a subscription can make the
/// broker hold and compare.
pub const MAX_TAG_EXPRESSION_BYTES: usize = 4096;

/// A compiled tag expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilter {
    /// The tags named, sorted and without duplicates; empty for `*`.
    tags: Vec<Box<str>>,
    /// The tag-summary bits of `tags` (see [`tag_summary_bit`]).
    summary_mask: u64,
}

impl TagFilter {
    /// Parses `expression`. Errors give the byte column (from 1) and what was expected there.
    pub fn parse(expression: &str) -> Result<TagFilter, FilterError> {
        let err = |column: usize, message: String| Err(FilterError::tags(expression, column, message));
        if expression.len() > MAX_TAG_EXPRESSION_BYTES {
            return err(1, format!("the expression is {} bytes; at most {MAX_TAG_EXPRESSION_BYTES}", expression.len()));
        }
        if expression.trim() == "*" {
            return Ok(TagFilter { tags: Vec::new(), summary_mask: 0 });
        }
        let mut tags = Vec::new();
        let mut at = 0;
        for part in expression.split("||") {
            let column = at + part.len() - part.trim_start().len() + 1;
            let tag = part.trim();
            if tag.is_empty() {
                let what = if at == 0 { "a tag or `*`" } else { "a tag after `||`" };
                return err(column.min(expression.len() + 1), format!("expected {what}"));
            }
            if let Some(bad) = tag.find(|c: char| c == '|' || c.is_whitespace() || c == '*') {
                let c = tag[bad..].chars().next().expect("found a char");
                return err(
                    column + bad,
                    format!("unexpected {c:?} in tag {tag:?}: separate tags with `||`; `*` stands alone"),
                );
            }
            tags.push(Box::<str>::from(tag));
            at += part.len() + 2;
        }
        tags.sort_unstable();
        tags.dedup();
        let summary_mask = tags.iter().fold(0, |mask, t| mask | tag_summary_bit(t));
        Ok(TagFilter { tags, summary_mask })
    }

    /// Whether this is `*`.
    pub fn is_all(&self) -> bool {
        self.tags.is_empty()
    }

    /// Whether a message tagged `tag` matches.
    pub fn matches(&self, tag: Option<&str>) -> bool {
        if self.is_all() {
            return true;
        }
        let Some(tag) = tag else { return false };
        // A handful of tags is the usual case; a binary search keeps long lists cheap too.
        self.tags.binary_search_by(|t| (**t).cmp(tag)).is_ok()
    }

    /// Whether a batch whose tag summary is `summary` may hold a matching message. `false`
    /// means it certainly holds none.
    pub fn may_match_summary(&self, summary: u64) -> bool {
        self.is_all() || summary & self.summary_mask != 0
    }

    /// The expression in canonical form: `*`, or the tags sorted and joined by ` || `.
    pub fn canonical(&self) -> String {
        if self.is_all() { "*".to_owned() } else { self.tags.join(" || ") }
    }
}

/// The bit a message tagged `tag` sets in its batch's tag summary (docs/FORMAT.md): bit
/// `crc32(tag) mod 64`, with the CRC-32/IEEE the batch checksum uses.
pub fn tag_summary_bit(tag: &str) -> u64 {
    1u64 << (crc32fast::hash(tag.as_bytes()) & 63)
}
