//! [`ConfigChange`]: how a request to alter a setting says what becomes of it.

/// A change of one optional setting: a new value, or back to the broker default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigChange<T> {
    /// Set it to this value.
    Set(T),
    /// Unset it: the broker default applies again.
    Clear,
}

impl<T: Copy> ConfigChange<T> {
    /// The setting after this change.
    pub fn value(self) -> Option<T> {
        match self {
            ConfigChange::Set(v) => Some(v),
            ConfigChange::Clear => None,
        }
    }
}
