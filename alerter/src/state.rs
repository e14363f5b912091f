//! The alerter's small persistent state in one sled database (`<data_dir>/alerter/state.sled`):
//! a tree per concern, values JSON. Trees: `rules` (alert state of every rule, so a restart
//! neither re-pages nor forgets a pending `for` clock), `silences`, `nflog` (what was
//! notified to whom, so a restart does not notify twice), `attempts` (delivery history).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A failure of the state database, naming what was being done.
#[derive(Debug, thiserror::Error)]
#[error("alerter state ({what}): {message}")]
pub struct StateError {
    pub what: String,
    pub message: String,
}

impl StateError {
    fn new(what: &str, e: impl std::fmt::Display) -> Self {
        StateError {
            what: what.to_string(),
            message: e.to_string(),
        }
    }
}

/// The alerter's state database. Cheap to clone (sled handles are shared).
#[derive(Clone)]
pub struct StateDb {
    db: sled::Db,
}

/// One named tree of JSON values.
#[derive(Clone)]
pub struct StateTree {
    name: &'static str,
    tree: sled::Tree,
}

impl StateDb {
    /// Opens (creating) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| StateError::new("creating its directory", e))?;
        let db = sled::open(dir.join("state.sled")).map_err(|e| StateError::new("opening", e))?;
        Ok(StateDb { db })
    }

    /// A database that lives in memory only, for tests.
    pub fn temporary() -> Result<Self, StateError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|e| StateError::new("opening a temporary database", e))?;
        Ok(StateDb { db })
    }

    pub fn tree(&self, name: &'static str) -> Result<StateTree, StateError> {
        let tree = self
            .db
            .open_tree(name)
            .map_err(|e| StateError::new(name, e))?;
        Ok(StateTree { name, tree })
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), StateError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| StateError::new("flushing", e))
    }
}

impl StateTree {
    pub fn put<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StateError::new(self.name, e))?;
        self.tree
            .insert(key, bytes)
            .map(|_| ())
            .map_err(|e| StateError::new(self.name, e))
    }

    /// The value at `key`; a value that no longer decodes is reported, not ignored.
    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StateError> {
        match self
            .tree
            .get(key)
            .map_err(|e| StateError::new(self.name, e))?
        {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StateError::new(self.name, e)),
        }
    }

    pub fn remove(&self, key: &[u8]) -> Result<(), StateError> {
        self.tree
            .remove(key)
            .map(|_| ())
            .map_err(|e| StateError::new(self.name, e))
    }

    /// Every entry in key order. Entries that no longer decode are skipped with a warning:
    /// one bad entry must not hide the rest.
    pub fn entries<T: DeserializeOwned>(&self) -> Result<Vec<(Vec<u8>, T)>, StateError> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (k, v) = item.map_err(|e| StateError::new(self.name, e))?;
            match serde_json::from_slice(&v) {
                Ok(value) => out.push((k.to_vec(), value)),
                Err(e) => {
                    tracing::warn!(tree = self.name, error = %e, "skipping an undecodable state entry")
                }
            }
        }
        Ok(out)
    }

    /// Makes this tree's writes durable (sled otherwise flushes every 500 ms). Blocks on
    /// an fsync: async callers run it on a blocking thread.
    pub fn flush(&self) -> Result<(), StateError> {
        self.tree
            .flush()
            .map(|_| ())
            .map_err(|e| StateError::new(self.name, e))
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Removes the `count` first (smallest-key) entries. Callers track their own count:
    /// sled's `len()` walks the whole tree.
    pub fn remove_oldest(&self, count: usize) -> Result<(), StateError> {
        for _ in 0..count {
            if self
                .tree
                .pop_min()
                .map_err(|e| StateError::new(self.name, e))?
                .is_none()
            {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_removing_the_oldest_keeps_the_newest() {
        let db = StateDb::temporary().unwrap();
        let t = db.tree("t").unwrap();
        for i in 0u64..5 {
            t.put(&i.to_be_bytes(), &format!("v{i}")).unwrap();
        }
        assert_eq!(t.get::<String>(&3u64.to_be_bytes()).unwrap().unwrap(), "v3");
        t.remove_oldest(3).unwrap();
        let left: Vec<String> = t.entries().unwrap().into_iter().map(|(_, v)| v).collect();
        assert_eq!(left, vec!["v3", "v4"]);
    }
}
