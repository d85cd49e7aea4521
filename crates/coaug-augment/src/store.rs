//! The augmentation store: every generated augmentation, in SQLite, keyed by its fingerprint.
//!
//! WAL mode with `synchronous=NORMAL`: a committed batch survives `kill -9` and Ctrl-C (only a
//! power loss could undo the last commits), and readers never block the writer.

use std::collections::HashSet;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::key::AugmentationKey;
use crate::prompts::{Retriever, Role};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS augmentations (
    key              TEXT PRIMARY KEY NOT NULL,
    item_id          TEXT NOT NULL,
    role             TEXT NOT NULL,
    retriever        TEXT NOT NULL,
    model            TEXT NOT NULL,
    raw_response     TEXT NOT NULL,
    text             TEXT NOT NULL,
    format_valid     INTEGER NOT NULL,
    generated_tokens INTEGER NOT NULL,
    created_at_ms    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS augmentations_item ON augmentations (item_id);
";

const COLUMNS: &str = "key, item_id, role, retriever, model, raw_response, text, format_valid, generated_tokens, created_at_ms";

/// One stored augmentation. `item_id` is the first item that asked for it; items with identical
/// input share the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAugmentation {
    pub key: AugmentationKey,
    pub item_id: String,
    pub role: Role,
    pub retriever: Retriever,
    /// The generator's fingerprint.
    pub model: String,
    /// The reply as generated, so it can be parsed again under other rules.
    pub raw_response: String,
    /// The parsed augmentation.
    pub text: String,
    pub format_valid: bool,
    pub generated_tokens: usize,
    pub created_at_ms: i64,
}

pub struct AugmentStore {
    conn: Connection,
}

impl AugmentStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create the store's folder {}", dir.display()))?;
        }
        let conn = Connection::open(path).with_context(|| format!("cannot open the augmentation store {}", path.display()))?;
        Self::init(conn).with_context(|| format!("augmentation store {}", path.display()))
    }

    /// A store that lives and dies with the process (tests, dry runs).
    pub fn open_in_memory() -> anyhow::Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> anyhow::Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        // In-memory databases answer "memory"; files must switch to WAL.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !matches!(mode.as_str(), "wal" | "memory") {
            bail!("cannot switch to WAL mode (journal mode is {mode})");
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            bail!("written by a newer coaug (schema {version}, this one reads up to {SCHEMA_VERSION})");
        }
        conn.execute_batch(SCHEMA).context("cannot create the schema")?;
        // Only a new file is written to: readers polling a store must not contend with its writer.
        if version != SCHEMA_VERSION {
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        Ok(Self { conn })
    }

    pub fn get(&self, key: &AugmentationKey) -> anyhow::Result<Option<StoredAugmentation>> {
        let mut stmt = self.conn.prepare_cached(&format!("SELECT {COLUMNS} FROM augmentations WHERE key = ?1"))?;
        Ok(stmt.query_row([key.as_str()], read_row).optional()?)
    }

    /// One lookup per key, in order.
    pub fn get_many(&self, keys: &[AugmentationKey]) -> anyhow::Result<Vec<Option<StoredAugmentation>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    pub fn contains(&self, key: &AugmentationKey) -> anyhow::Result<bool> {
        let mut stmt = self.conn.prepare_cached("SELECT 1 FROM augmentations WHERE key = ?1")?;
        Ok(stmt.exists([key.as_str()])?)
    }

    /// The keys not yet stored, each once, in the order first given.
    pub fn missing(&self, keys: &[AugmentationKey]) -> anyhow::Result<Vec<AugmentationKey>> {
        let mut seen = HashSet::new();
        let mut missing = Vec::new();
        for key in keys {
            if seen.insert(key) && !self.contains(key)? {
                missing.push(key.clone());
            }
        }
        Ok(missing)
    }

    /// Stores a batch in one transaction: all of it or, if the process dies, none of it.
    /// A key already present keeps its first row. Returns how many rows were new.
    pub fn put_batch(&mut self, rows: &[StoredAugmentation]) -> anyhow::Result<usize> {
        let tx = self.conn.transaction()?;
        let mut inserted = 0;
        {
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT OR IGNORE INTO augmentations ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?;
            for row in rows {
                inserted += stmt.execute(params![
                    row.key.as_str(),
                    row.item_id,
                    row.role.as_str(),
                    row.retriever.as_str(),
                    row.model,
                    row.raw_response,
                    row.text,
                    row.format_valid,
                    row.generated_tokens as i64,
                    row.created_at_ms,
                ])?;
            }
        }
        tx.commit().context("cannot commit the batch")?;
        Ok(inserted)
    }

    pub fn len(&self) -> anyhow::Result<usize> {
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM augmentations", [], |r| r.get(0))?;
        Ok(n as usize)
    }

    pub fn is_empty(&self) -> anyhow::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Every row, ordered by key (so two stores compare row by row).
    pub fn all(&self) -> anyhow::Result<Vec<StoredAugmentation>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {COLUMNS} FROM augmentations ORDER BY key"))?;
        let rows = stmt.query_map([], read_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn read_row(row: &Row<'_>) -> rusqlite::Result<StoredAugmentation> {
    let bad = |col: usize, e: anyhow::Error| rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, e.into());
    let key: String = row.get(0)?;
    let role: String = row.get(2)?;
    let retriever: String = row.get(3)?;
    Ok(StoredAugmentation {
        key: AugmentationKey::from_hex(key).map_err(|e| bad(0, e))?,
        item_id: row.get(1)?,
        role: role.parse().map_err(|e| bad(2, e))?,
        retriever: retriever.parse().map_err(|e| bad(3, e))?,
        model: row.get(4)?,
        raw_response: row.get(5)?,
        text: row.get(6)?,
        format_valid: row.get(7)?,
        generated_tokens: row.get::<_, i64>(8)? as usize,
        created_at_ms: row.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::DecodeSettings;

    fn row(input: &str, item: &str, text: &str) -> StoredAugmentation {
        StoredAugmentation {
            key: AugmentationKey::new("m", "p", Role::Document, &DecodeSettings::greedy(8), input),
            item_id: item.into(),
            role: Role::Document,
            retriever: Retriever::Sparse,
            model: "m".into(),
            raw_response: format!("<answer>{text}</answer>"),
            text: text.into(),
            format_valid: true,
            generated_tokens: 3,
            created_at_ms: 1,
        }
    }

    #[test]
    fn put_get_roundtrip_and_first_row_wins() {
        let mut store = AugmentStore::open_in_memory().unwrap();
        let a = row("input a", "d1", "alpha");
        let b = row("input b", "d2", "beta");
        assert_eq!(store.put_batch(&[a.clone(), b.clone()]).unwrap(), 2);
        assert_eq!(store.get(&a.key).unwrap(), Some(a.clone()));
        // Same key again (e.g. a duplicate document): ignored, the first stays.
        let again = StoredAugmentation { item_id: "d3".into(), text: "other".into(), ..a.clone() };
        assert_eq!(store.put_batch(&[again]).unwrap(), 0);
        assert_eq!(store.get(&a.key).unwrap().unwrap().item_id, "d1");
        assert_eq!(store.len().unwrap(), 2);
        let absent = row("input c", "d4", "gamma").key;
        assert_eq!(store.get(&absent).unwrap(), None);
        assert_eq!(store.get_many(&[absent.clone(), b.key.clone()]).unwrap(), vec![None, Some(b.clone())]);
    }

    #[test]
    fn missing_is_deduplicated_and_ordered() {
        let mut store = AugmentStore::open_in_memory().unwrap();
        let (a, b, c) = (row("a", "1", "x"), row("b", "2", "y"), row("c", "3", "z"));
        store.put_batch(std::slice::from_ref(&b)).unwrap();
        let asked = [c.key.clone(), b.key.clone(), a.key.clone(), c.key.clone()];
        assert_eq!(store.missing(&asked).unwrap(), vec![c.key, a.key]);
    }

    #[test]
    fn file_store_is_wal_and_persists_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/aug.sqlite");
        let r = row("a", "1", "x");
        {
            let mut store = AugmentStore::open(&path).unwrap();
            store.put_batch(std::slice::from_ref(&r)).unwrap();
            let mode: String = store.conn.query_row("PRAGMA journal_mode", [], |x| x.get(0)).unwrap();
            assert_eq!(mode, "wal");
        }
        let store = AugmentStore::open(&path).unwrap();
        assert_eq!(store.all().unwrap(), vec![r]);
    }

    #[test]
    fn newer_schema_is_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aug.sqlite");
        drop(AugmentStore::open(&path).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let err = format!("{:#}", AugmentStore::open(&path).err().unwrap());
        assert!(err.contains("aug.sqlite") && err.contains("schema 99"), "{err}");
    }
}
