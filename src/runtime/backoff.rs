//! How a node's loops ride out a database they cannot reach: the first failure is
//! logged as an error, the ones that follow only at debug level, and each waits
//! longer than the one before (1 s, doubling, at most 5 s), so that an outage of a
//! minute costs a handful of log lines and attempts instead of one a second from
//! every loop; the first success after failures is logged too.

use std::time::Duration;

/// The first wait after a failure.
const FIRST: Duration = Duration::from_secs(1);
/// The longest wait.
const MOST: Duration = Duration::from_secs(5);

/// One loop's failures in a row.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Records a failure of `what` and returns how long to wait before trying again.
    pub(super) fn failed(&mut self, what: &str, error: &dyn std::fmt::Display) -> Duration {
        self.failures += 1;
        let wait = FIRST
            .saturating_mul(2u32.saturating_pow(self.failures - 1))
            .min(MOST);
        if self.failures == 1 {
            tracing::error!(%error, "{what}: database error; trying again, less often while it lasts");
        } else {
            tracing::debug!(%error, failures = self.failures, "{what}: database error");
        }
        wait
    }

    /// Records a success: the end of an outage, if there was one.
    pub(super) fn succeeded(&mut self, what: &str) {
        if self.failures > 0 {
            tracing::info!(
                failures = self.failures,
                "{what}: the database answers again"
            );
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_five_seconds_and_start_over_after_a_success() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..5).map(|_| b.failed("x", &"down").as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        b.succeeded("x");
        assert_eq!(b.failed("x", &"down"), FIRST);
    }
}
