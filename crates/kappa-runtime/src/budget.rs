//! The memory one job's state may take in one taskmanager: every stateful operator of the
//! job's attempt charges the bytes it holds to one shared [`StateBudget`], and a charge
//! beyond the limit is refused, so the job fails with the reason instead of the process
//! running out of memory (and taking every other job on it along). An operator whose state
//! spills to disk charges its cache to the taskmanager's budget too
//! ([`StateBudget::cache_charge`]) and, refused, evicts instead of failing.

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
            cache: None,
            held: 0,
        }
    }

    /// Takes `bytes` unless that goes beyond the limit (then nothing is taken).
    fn take(&self, bytes: u64) -> Result<(), OverBudget> {
        let before = self.held.fetch_add(bytes, Ordering::Relaxed);
        let after = before.saturating_add(bytes);
        if let Some(limit) = self.limit
            && after > limit
        {
            self.held.fetch_sub(bytes, Ordering::Relaxed);
            return Err(OverBudget {
                would_hold: after,
                limit,
            });
        }
        Ok(())
    }

    /// A charge of nothing yet against this budget and `cache`, the taskmanager's memory for
    /// the caches of state that spills to disk: a growth both allow is taken from both.
    pub fn cache_charge(self: &Arc<Self>, cache: &Arc<StateBudget>) -> StateCharge {
        StateCharge {
            budget: Arc::clone(self),
            cache: Some(Arc::clone(cache)),
            held: 0,
        }
    }
}

/// The bytes one operator holds against its job's [`StateBudget`] (and, for a cache of
/// spilled state, the taskmanager's); dropping it gives them back (a cancelled or failed
/// subtask frees its state).
#[derive(Debug)]
pub struct StateCharge {
    budget: Arc<StateBudget>,
    cache: Option<Arc<StateBudget>>,
    held: u64,
}

impl StateCharge {
    /// Takes `bytes` more, unless the job (or the taskmanager's cache) would go beyond its
    /// limit (then nothing is taken).
    pub fn grow(&mut self, bytes: u64) -> Result<(), OverBudget> {
        self.budget.take(bytes)?;
        if let Some(cache) = &self.cache
            && let Err(e) = cache.take(bytes)
        {
            self.budget.held.fetch_sub(bytes, Ordering::Relaxed);
            return Err(e);
        }
        self.held += bytes;
        Ok(())
    }

    /// Takes `bytes` more whatever the limits: for what must be in memory to go on (a cache
    /// that has evicted everything it may).
    pub fn force(&mut self, bytes: u64) {
        for b in std::iter::once(&self.budget).chain(&self.cache) {
            b.held.fetch_add(bytes, Ordering::Relaxed);
        }
        self.held += bytes;
    }

    /// Gives back `bytes` (at most what this charge holds).
    pub fn shrink(&mut self, bytes: u64) {
        let bytes = bytes.min(self.held);
        self.held -= bytes;
        for b in std::iter::once(&self.budget).chain(&self.cache) {
            b.held.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Bytes this charge holds.
    pub fn held(&self) -> u64 {
        self.held
    }
}

impl Drop for StateCharge {
    fn drop(&mut self) {
        self.shrink(self.held);
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
    fn a_cache_charge_takes_from_both_budgets_and_either_refuses() {
        let job = StateBudget::new(Some(100));
        let cache = StateBudget::new(Some(50));
        let mut c = job.cache_charge(&cache);
        c.grow(40).unwrap();
        assert_eq!(
            c.grow(20),
            Err(OverBudget {
                would_hold: 60,
                limit: 50
            })
        );
        assert_eq!(
            (job.held(), cache.held()),
            (40, 40),
            "nothing taken from either"
        );
        let mut other = job.charge();
        other.grow(55).unwrap();
        assert_eq!(
            c.grow(10).unwrap_err().limit,
            100,
            "the job's own limit refuses too"
        );
        c.force(30);
        assert_eq!((c.held(), job.held(), cache.held()), (70, 125, 70));
        drop(c);
        assert_eq!((job.held(), cache.held()), (55, 0));
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
