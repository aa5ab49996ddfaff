//! The agent's durable state in redb: the policy set, the inventory and the generation log.
//!
//! Every accepted change is committed here (redb's `Durability::Immediate`: on disk when
//! `commit` returns) before the API acknowledges it, so a restart, kill -9 included, finds
//! exactly what clients were told. The kernel side (pins, links, `state.json`) is the
//! loader's; on restart the agent compiles this state and adopts the pinned generation when
//! it matches (`engine.rs`).

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Policy name (with its extension: `web.sluice`, `np.yaml`) → its text.
const POLICIES: TableDefinition<&str, &str> = TableDefinition::new("policies");
/// Singletons: the inventory's name and text.
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// Generation number → [`GenerationRecord`] as JSON.
const GENERATIONS: TableDefinition<u64, &str> = TableDefinition::new("generations");

/// How many generation records are kept (older ones are dropped on each commit).
const GENERATIONS_KEPT: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("state database: {0}")]
    Db(#[from] redb::Error),
    #[error("state database: a generation record is not valid JSON: {0}")]
    Record(#[from] serde_json::Error),
}

impl From<redb::TransactionError> for StoreError {
    fn from(e: redb::TransactionError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::CommitError> for StoreError {
    fn from(e: redb::CommitError) -> Self {
        StoreError::Db(e.into())
    }
}

/// One generation the agent made live, for `GET /v1/generations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRecord {
    pub generation: u64,
    /// The bundle's sha256 (hex).
    pub bundle: String,
    /// What caused it: `put web.sluice`, `delete web.sluice`, `startup`.
    pub change: String,
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub programs_loaded: usize,
    pub hooks: usize,
    pub hooks_changed: usize,
    /// From change received to every hook flipped, in microseconds.
    pub swap_us: u64,
}

/// What a restart reads back.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub policies: BTreeMap<String, String>,
    /// (name, text)
    pub inventory: Option<(String, String)>,
}

pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) `<dir>/agent.redb`. redb locks the file: a second agent on the same
    /// state directory fails here.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("agent.redb");
        let db = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        // Create the tables so readers never meet a missing one.
        let tx = db.begin_write()?;
        tx.open_table(POLICIES)?;
        tx.open_table(META)?;
        tx.open_table(GENERATIONS)?;
        tx.commit()?;
        Ok(Store { db })
    }

    pub fn load(&self) -> Result<Loaded, StoreError> {
        let tx = self.db.begin_read()?;
        let mut out = Loaded::default();
        for row in tx.open_table(POLICIES)?.iter()? {
            let (k, v) = row?;
            out.policies
                .insert(k.value().to_string(), v.value().to_string());
        }
        let meta = tx.open_table(META)?;
        let name = meta.get("inventory_name")?.map(|v| v.value().to_string());
        let text = meta.get("inventory")?.map(|v| v.value().to_string());
        out.inventory = name.zip(text);
        Ok(out)
    }

    /// Sets (`Some`) or removes (`None`) one policy, durably.
    pub fn set_policy(&self, name: &str, text: Option<&str>) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(POLICIES)?;
            match text {
                Some(text) => {
                    t.insert(name, text)?;
                }
                None => {
                    t.remove(name)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn set_inventory(&self, name: &str, text: &str) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(META)?;
            t.insert("inventory_name", name)?;
            t.insert("inventory", text)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn record_generation(&self, r: &GenerationRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(r)?;
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(GENERATIONS)?;
            t.insert(r.generation, json.as_str())?;
            let cutoff = r.generation.saturating_sub(GENERATIONS_KEPT);
            t.retain(|k, _| k > cutoff)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The kept generation records, oldest first.
    pub fn generations(&self) -> Result<Vec<GenerationRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let mut out = Vec::new();
        for row in tx.open_table(GENERATIONS)?.iter()? {
            let (_, v) = row?;
            out.push(serde_json::from_str(v.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen() {
        let dir = std::env::temp_dir().join(format!("sluice-agent-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        {
            let s = Store::open(&dir).unwrap();
            s.set_inventory("inv.yaml", "endpoints: []\n").unwrap();
            s.set_policy("a.sluice", Some("x")).unwrap();
            s.set_policy("b.sluice", Some("y")).unwrap();
            s.set_policy("a.sluice", None).unwrap();
            for g in 1..=150 {
                s.record_generation(&GenerationRecord {
                    generation: g,
                    bundle: "00".into(),
                    change: "startup".into(),
                    at: 0,
                    programs_loaded: 0,
                    hooks: 0,
                    hooks_changed: 0,
                    swap_us: 0,
                })
                .unwrap();
            }
        }
        let s = Store::open(&dir).unwrap();
        let l = s.load().unwrap();
        assert_eq!(
            l.policies.into_iter().collect::<Vec<_>>(),
            vec![("b.sluice".to_string(), "y".to_string())]
        );
        assert_eq!(
            l.inventory,
            Some(("inv.yaml".to_string(), "endpoints: []\n".to_string()))
        );
        let g = s.generations().unwrap();
        assert_eq!(g.len(), GENERATIONS_KEPT as usize);
        assert_eq!(g.first().unwrap().generation, 51);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
