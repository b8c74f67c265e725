//! The keyed state operators keep, as a trait: keys live in key groups so state can be split
//! among subtasks; the RocksDB implementation is in kappa-state.

use std::ops::RangeInclusive;

/// Called with (key group, key, value) for each entry of a scan.
pub type ScanFn<'a> = dyn FnMut(u32, &[u8], &[u8]) + 'a;

/// A failure of the state backend, described.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StateFailure(pub String);

/// The keyed state of one stateful subtask.
pub trait KeyedState: Send {
    /// Stages a write of `value` under (`key_group`, `key`); applied by [`KeyedState::commit`].
    fn put(&mut self, key_group: u32, key: &[u8], value: &[u8]);
    /// Stages a delete.
    fn delete(&mut self, key_group: u32, key: &[u8]);
    /// Applies the staged writes atomically.
    fn commit(&mut self) -> Result<(), StateFailure>;
    /// Calls `f(key_group, key, value)` for every entry in the key-group range, in key order.
    fn scan(&self, groups: RangeInclusive<u32>, f: &mut ScanFn<'_>) -> Result<(), StateFailure>;
}

/// Calls `restore(key_group, key, value)` for every entry of `state` in the key-group range
/// `groups` (read first, so `restore` may change its operator); returns how many there were.
pub fn restore_each(
    state: &dyn KeyedState,
    groups: RangeInclusive<u32>,
    mut restore: impl FnMut(u32, &[u8], &[u8]) -> Result<(), StateFailure>,
) -> Result<usize, StateFailure> {
    let mut entries: Vec<(u32, Vec<u8>, Vec<u8>)> = Vec::new();
    state.scan(groups, &mut |kg, k, v| {
        entries.push((kg, k.to_vec(), v.to_vec()))
    })?;
    for (kg, key, value) in &entries {
        restore(*kg, key, value)?;
    }
    Ok(entries.len())
}

/// Keyed state in a map: a stand-in for RocksDB in the unit tests of operators.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;

    /// (key group, key) in [`MapState`].
    pub(crate) type StateKey = (u32, Vec<u8>);

    /// Keyed state in a map: a stand-in for RocksDB in this component's unit tests.
    #[derive(Default)]
    pub(crate) struct MapState {
        pub(crate) committed: BTreeMap<StateKey, Vec<u8>>,
        /// Writes (Some) and deletes (None) waiting for commit.
        staged: Vec<(StateKey, Option<Vec<u8>>)>,
    }

    impl super::KeyedState for MapState {
        fn put(&mut self, kg: u32, key: &[u8], value: &[u8]) {
            self.staged.push(((kg, key.to_vec()), Some(value.to_vec())));
        }
        fn delete(&mut self, kg: u32, key: &[u8]) {
            self.staged.push(((kg, key.to_vec()), None));
        }
        fn commit(&mut self) -> Result<(), super::StateFailure> {
            for (k, v) in self.staged.drain(..) {
                match v {
                    Some(v) => self.committed.insert(k, v),
                    None => self.committed.remove(&k),
                };
            }
            Ok(())
        }
        fn scan(
            &self,
            groups: std::ops::RangeInclusive<u32>,
            f: &mut super::ScanFn<'_>,
        ) -> Result<(), super::StateFailure> {
            for ((kg, k), v) in &self.committed {
                if groups.contains(kg) {
                    f(*kg, k, v);
                }
            }
            Ok(())
        }
    }
}
