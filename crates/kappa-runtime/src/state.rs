//! The keyed state operators keep, as a trait: keys live in key groups so state can be split
//! among subtasks; the RocksDB implementation is in kappa-state.

use std::ops::RangeInclusive;

/// Called with (key group, key, value) for each entry of a scan; the scan goes on while it
/// returns true.
pub type ScanFn<'a> = dyn FnMut(u32, &[u8], &[u8]) -> bool + 'a;

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
    /// Calls `f(key_group, key, value)` for the entries in the key-group range, in key order,
    /// while it returns true.
    fn scan(&self, groups: RangeInclusive<u32>, f: &mut ScanFn<'_>) -> Result<(), StateFailure>;
    /// Calls `f(key_group, key, value)` for the entries of `key_group` from `from` on, in key
    /// order, while it returns true.
    fn scan_from(
        &self,
        key_group: u32,
        from: &[u8],
        f: &mut ScanFn<'_>,
    ) -> Result<(), StateFailure>;
    /// The committed value under (`key_group`, `key`).
    fn get(&self, key_group: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StateFailure>;
    /// Bytes the state takes in its store (0 for state that is not in one).
    fn stored_bytes(&self) -> u64 {
        0
    }
}

/// Calls `restore(key_group, key, value)` for every entry of `state` in the key-group range
/// `groups` as it is read (state larger than memory is never read whole), up to the first
/// failure; returns how many there were.
pub fn restore_each(
    state: &dyn KeyedState,
    groups: RangeInclusive<u32>,
    mut restore: impl FnMut(u32, &[u8], &[u8]) -> Result<(), StateFailure>,
) -> Result<usize, StateFailure> {
    let mut restored = 0;
    let mut failed = None;
    state.scan(groups, &mut |kg, k, v| match restore(kg, k, v) {
        Ok(()) => {
            restored += 1;
            true
        }
        Err(e) => {
            failed = Some(e);
            false
        }
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(restored),
    }
}

/// Keyed state in a map: a stand-in for RocksDB in the unit tests of operators.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;

    /// (key group, key) in [`MapState`].
    pub(crate) type StateKey = (u32, Vec<u8>);

    /// Writes (Some) and deletes (None) waiting for commit.
    #[derive(Default)]
    struct Staged(Vec<(StateKey, Option<Vec<u8>>)>);

    impl Staged {
        fn stage(&mut self, kg: u32, key: &[u8], value: Option<&[u8]>) {
            self.0.push(((kg, key.to_vec()), value.map(<[u8]>::to_vec)));
        }

        /// Applies what is staged to `map`, in order.
        fn apply(&mut self, map: &mut BTreeMap<StateKey, Vec<u8>>) {
            for (k, v) in self.0.drain(..) {
                match v {
                    Some(v) => map.insert(k, v),
                    None => map.remove(&k),
                };
            }
        }
    }

    /// Keyed state in a map: a stand-in for RocksDB in this component's unit tests.
    #[derive(Default)]
    pub(crate) struct MapState {
        pub(crate) committed: BTreeMap<StateKey, Vec<u8>>,
        staged: Staged,
    }

    impl super::KeyedState for MapState {
        fn put(&mut self, kg: u32, key: &[u8], value: &[u8]) {
            self.staged.stage(kg, key, Some(value));
        }
        fn delete(&mut self, kg: u32, key: &[u8]) {
            self.staged.stage(kg, key, None);
        }
        fn commit(&mut self) -> Result<(), super::StateFailure> {
            self.staged.apply(&mut self.committed);
            Ok(())
        }
        fn scan(
            &self,
            groups: std::ops::RangeInclusive<u32>,
            f: &mut super::ScanFn<'_>,
        ) -> Result<(), super::StateFailure> {
            for ((kg, k), v) in &self.committed {
                if groups.contains(kg) && !f(*kg, k, v) {
                    break;
                }
            }
            Ok(())
        }
        fn scan_from(
            &self,
            kg: u32,
            from: &[u8],
            f: &mut super::ScanFn<'_>,
        ) -> Result<(), super::StateFailure> {
            for ((_, k), v) in self
                .committed
                .range((kg, from.to_vec())..(kg + 1, Vec::new()))
            {
                if !f(kg, k, v) {
                    break;
                }
            }
            Ok(())
        }
        fn get(&self, kg: u32, key: &[u8]) -> Result<Option<Vec<u8>>, super::StateFailure> {
            Ok(self.committed.get(&(kg, key.to_vec())).cloned())
        }
    }

    /// Handles on one [`MapState`], each staging its writes, as handles on one RocksDB are
    /// (an operator's spill store and its checkpoint part).
    #[derive(Default)]
    pub(crate) struct SharedState {
        map: std::sync::Arc<parking_lot::Mutex<MapState>>,
        staged: Staged,
    }

    impl SharedState {
        /// Another handle on the same state.
        pub(crate) fn handle(&self) -> Self {
            Self {
                map: std::sync::Arc::clone(&self.map),
                staged: Staged::default(),
            }
        }

        /// The committed entries.
        pub(crate) fn len(&self) -> usize {
            self.map.lock().committed.len()
        }
    }

    impl super::KeyedState for SharedState {
        fn put(&mut self, kg: u32, key: &[u8], value: &[u8]) {
            self.staged.stage(kg, key, Some(value));
        }
        fn delete(&mut self, kg: u32, key: &[u8]) {
            self.staged.stage(kg, key, None);
        }
        fn commit(&mut self) -> Result<(), super::StateFailure> {
            self.staged.apply(&mut self.map.lock().committed);
            Ok(())
        }
        fn scan(
            &self,
            groups: std::ops::RangeInclusive<u32>,
            f: &mut super::ScanFn<'_>,
        ) -> Result<(), super::StateFailure> {
            super::KeyedState::scan(&*self.map.lock(), groups, f)
        }
        fn scan_from(
            &self,
            kg: u32,
            from: &[u8],
            f: &mut super::ScanFn<'_>,
        ) -> Result<(), super::StateFailure> {
            super::KeyedState::scan_from(&*self.map.lock(), kg, from, f)
        }
        fn get(&self, kg: u32, key: &[u8]) -> Result<Option<Vec<u8>>, super::StateFailure> {
            super::KeyedState::get(&*self.map.lock(), kg, key)
        }
    }
}
