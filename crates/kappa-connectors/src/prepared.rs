//! Sink output closed at a checkpoint barrier, kept by the checkpoint it was closed for until
//! that checkpoint (or a later one) completes: the exactly-once file, parquet and iceberg sinks
//! commit it then.

/// Output of type `T` by checkpoint id, in the order it was prepared.
pub(crate) struct Prepared<T>(Vec<(u64, T)>);

impl<T> Default for Prepared<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Prepared<T> {
    /// Keeps `output`, closed at the barrier of checkpoint `n`.
    pub fn push(&mut self, n: u64, output: T) {
        self.0.push((n, output));
    }

    /// Takes the output of checkpoint `n` and of every earlier one (a completed checkpoint
    /// stands for those before it whose notice was lost), in the order it was prepared.
    pub fn take_due(&mut self, n: u64) -> Vec<(u64, T)> {
        let (due, later) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|(id, _)| *id <= n);
        self.0 = later;
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completed_checkpoint_takes_its_output_and_earlier_ones_only() {
        let mut p = Prepared::default();
        for n in [1, 3, 2, 4] {
            p.push(n, format!("out{n}"));
        }
        let ids = |due: Vec<(u64, String)>| due.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(ids(p.take_due(2)), [1, 2]);
        assert_eq!(ids(p.take_due(2)), Vec::<u64>::new());
        assert_eq!(ids(p.take_due(u64::MAX)), [3, 4]);
    }
}
