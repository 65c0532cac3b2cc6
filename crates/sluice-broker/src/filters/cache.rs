//! Compiled filters by expression, so a subscription's expression is parsed once, not at every
//! fetch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sluice_common::filter::{Filter, FilterError};

/// Distinct expressions kept compiled. Subscriptions reuse a handful; a client inventing new
/// ones at every fetch only makes the cache start over, it cannot grow it.
const MAX_ENTRIES: usize = 1024;

/// Compiled filters keyed by their tag and SQL expressions.
#[derive(Debug, Default)]
pub struct FilterCache {
    compiled: Mutex<HashMap<(String, String), Arc<Filter>>>,
}

impl FilterCache {
    /// The filter of `tags` and `sql` (either may be empty); `None` when it selects every
    /// message.
    pub fn get(&self, tags: &str, sql: &str) -> Result<Option<Arc<Filter>>, FilterError> {
        if tags.trim().is_empty() && sql.trim().is_empty() {
            return Ok(None);
        }
        let key = (tags.to_owned(), sql.to_owned());
        if let Some(f) = self.compiled.lock().expect("filter cache lock").get(&key) {
            return Ok(Some(Arc::clone(f)));
        }
        let Some(filter) = Filter::compile(tags, sql)? else { return Ok(None) };
        let filter = Arc::new(filter);
        let mut compiled = self.compiled.lock().expect("filter cache lock");
        if compiled.len() >= MAX_ENTRIES {
            compiled.clear();
        }
        compiled.insert(key, Arc::clone(&filter));
        Ok(Some(filter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_once_and_stays_bounded() {
        let cache = FilterCache::default();
        assert!(cache.get("", " ").unwrap().is_none());
        assert!(cache.get("*", "").unwrap().is_none());
        let a = cache.get("TagA", "").unwrap().unwrap();
        let again = cache.get("TagA", "").unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &again), "the second fetch reuses the compiled filter");
        assert!(cache.get("", "price >").is_err());
        for i in 0..(MAX_ENTRIES + 10) {
            cache.get(&format!("T{i}"), "").unwrap();
        }
        assert!(cache.compiled.lock().unwrap().len() <= MAX_ENTRIES);
    }
}
