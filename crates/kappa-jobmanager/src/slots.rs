//! The slot pool: a job attempt of parallelism p takes p slots (one subtask of every vertex
//! per slot, as with Flink's slot sharing) and gives them back when it ends.

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Free and total slots of the cluster.
pub struct SlotPool {
    total: u32,
    free: Mutex<u32>,
    released: Notify,
}

impl SlotPool {
    pub fn new(total: u32) -> Self {
        Self {
            total,
            free: Mutex::new(total),
            released: Notify::new(),
        }
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    pub fn free(&self) -> u32 {
        *self.free.lock()
    }

    /// Takes `n` slots if that many are free.
    pub fn try_take(&self, n: u32) -> bool {
        let mut free = self.free.lock();
        if *free >= n {
            *free -= n;
            true
        } else {
            false
        }
    }

    pub fn give_back(&self, n: u32) {
        let mut free = self.free.lock();
        *free = (*free + n).min(self.total);
        drop(free);
        self.released.notify_waiters();
    }

    /// Resolves the next time slots are given back.
    pub async fn wait_for_release(&self) {
        self.released.notified().await;
    }
}
