//! Validated topic names.

use std::fmt;
use std::str::FromStr;

/// The longest topic name accepted, in bytes (Kafka's limit, so names move between systems).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// A topic name that has passed validation: 1 to 249 ASCII letters, digits, `.`, `_` or `-`,
/// and neither `.` nor `..`. Names starting with `__` are reserved for internal topics such as
/// `__consumer_offsets`; [`TopicName::is_internal`] tells them apart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName(String);

/// Why a string is not a valid topic name. The message says what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTopicName {
    /// The name is empty.
    #[error("topic name is empty; use 1 to {MAX_TOPIC_NAME_LEN} characters from [a-zA-Z0-9._-]")]
    Empty,
    /// The name is longer than [`MAX_TOPIC_NAME_LEN`].
    #[error("topic name is {0} bytes long; the limit is {MAX_TOPIC_NAME_LEN}")]
    TooLong(usize),
    /// The name contains a character outside `[a-zA-Z0-9._-]`.
    #[error("topic name contains {0:?} at byte {1}; only [a-zA-Z0-9._-] are allowed")]
    BadCharacter(char, usize),
    /// The name is `.` or `..`, which would clash with directory names.
    #[error("topic name {0:?} is reserved; choose another")]
    Reserved(String),
}

impl TopicName {
    /// Validates `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<TopicName, InvalidTopicName> {
        let name = name.into();
        if name.is_empty() {
            return Err(InvalidTopicName::Empty);
        }
        if name.len() > MAX_TOPIC_NAME_LEN {
            return Err(InvalidTopicName::TooLong(name.len()));
        }
        if let Some((at, c)) =
            name.char_indices().find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(InvalidTopicName::BadCharacter(c, at));
        }
        if name == "." || name == ".." {
            return Err(InvalidTopicName::Reserved(name));
        }
        Ok(TopicName(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of Sluice's internal topics (names starting with `__`).
    pub fn is_internal(&self) -> bool {
        self.0.starts_with("__")
    }
}

impl FromStr for TopicName {
    type Err = InvalidTopicName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TopicName::new(s)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_style_names() {
        for ok in ["orders", "orders.v2", "a_b-c", "__consumer_offsets", "X9"] {
            assert_eq!(TopicName::new(ok).unwrap().as_str(), ok);
        }
        assert!(TopicName::new("__delay").unwrap().is_internal());
        assert!(!TopicName::new("orders").unwrap().is_internal());
        assert!(TopicName::new(&"a".repeat(MAX_TOPIC_NAME_LEN)[..]).is_ok());
    }

    #[test]
    fn rejects_bad_names_with_a_reason() {
        assert_eq!(TopicName::new(""), Err(InvalidTopicName::Empty));
        assert_eq!(TopicName::new("a".repeat(250)), Err(InvalidTopicName::TooLong(250)));
        assert_eq!(TopicName::new("a b"), Err(InvalidTopicName::BadCharacter(' ', 1)));
        assert_eq!(TopicName::new("ä"), Err(InvalidTopicName::BadCharacter('ä', 0)));
        assert_eq!(TopicName::new("a/b"), Err(InvalidTopicName::BadCharacter('/', 1)));
        assert_eq!(TopicName::new(".."), Err(InvalidTopicName::Reserved("..".into())));
        let msg = TopicName::new("a b").unwrap_err().to_string();
        assert!(msg.contains("[a-zA-Z0-9._-]"), "{msg}");
    }
}
