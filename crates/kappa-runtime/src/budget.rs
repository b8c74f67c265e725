//! The memory one job's state may take in one taskmanager: every stateful operator of the
//! job's attempt charges the bytes it holds to one shared [`StateBudget`], and a charge
//! beyond the limit is refused, so the job fails with the reason instead of the process
//! running out of memory (and taking every other job on it along).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The state limit of one job attempt in this process, and what its operators hold now.
#[derive(Debug)]
pub struct StateBudget {
    /// None: no limit (only counted).
    limit: Option<u64>,
    held: AtomicU64,
}

/// A charge would take the job's state beyond its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the job's state in this taskmanager would reach {} (an estimate of the memory it takes), beyond its limit of {}",
    bytesize::ByteSize(*.would_hold),
    bytesize::ByteSize(*.limit)
)]
pub struct OverBudget {
    pub would_hold: u64,
    pub limit: u64,
}

impl StateBudget {
    /// A budget of `limit` bytes (None: unlimited).
    pub fn new(limit: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            limit,
            held: AtomicU64::new(0),
        })
    }

    /// Bytes held by all charges now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// A charge of nothing yet, released when dropped.
    pub fn charge(self: &Arc<Self>) -> StateCharge {
        StateCharge {
            budget: Arc::clone(self),
            held: 0,
        }
    }
}

/// The bytes one operator holds against its job's [`StateBudget`]; dropping it gives them
/// back (a cancelled or failed subtask frees its state).
#[derive(Debug)]
pub struct StateCharge {
    budget: Arc<StateBudget>,
    held: u64,
}

impl StateCharge {
    /// Takes `bytes` more, unless the job would go beyond its limit (then nothing is taken).
    pub fn grow(&mut self, bytes: u64) -> Result<(), OverBudget> {
        let before = self.budget.held.fetch_add(bytes, Ordering::Relaxed);
        let after = before.saturating_add(bytes);
        if let Some(limit) = self.budget.limit
            && after > limit
        {
            self.budget.held.fetch_sub(bytes, Ordering::Relaxed);
            return Err(OverBudget {
                would_hold: after,
                limit,
            });
        }
        self.held += bytes;
        Ok(())
    }

    /// Gives back `bytes` (at most what this charge holds).
    pub fn shrink(&mut self, bytes: u64) {
        let bytes = bytes.min(self.held);
        self.held -= bytes;
        self.budget.held.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes this charge holds.
    pub fn held(&self) -> u64 {
        self.held
    }
}

impl Drop for StateCharge {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.held, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_of_one_job_share_its_limit_and_are_given_back() {
        let budget = StateBudget::new(Some(100));
        let mut a = budget.charge();
        let mut b = budget.charge();
        a.grow(60).unwrap();
        assert_eq!(
            b.grow(50),
            Err(OverBudget {
                would_hold: 110,
                limit: 100
            })
        );
        assert_eq!(budget.held(), 60, "a refused charge takes nothing");
        b.grow(40).unwrap();
        assert_eq!(budget.held(), 100);
        a.shrink(1000);
        assert_eq!((a.held(), budget.held()), (0, 40));
        drop(b);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn without_a_limit_every_charge_is_counted() {
        let budget = StateBudget::new(None);
        let mut a = budget.charge();
        a.grow(u64::MAX / 2).unwrap();
        a.grow(u64::MAX / 2).unwrap();
        assert_eq!(budget.held(), u64::MAX - 1);
    }

    #[test]
    fn the_error_names_both_sizes() {
        let e = OverBudget {
            would_hold: 3 << 20,
            limit: 2 << 20,
        };
        assert_eq!(
            e.to_string(),
            "the job's state in this taskmanager would reach 3.0 MiB (an estimate of the memory it takes), beyond its limit of 2.0 MiB"
        );
    }
}
