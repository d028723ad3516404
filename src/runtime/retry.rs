//! Retry policy as a pure function: exponential backoff from the task's `retry_delay`,
//! with jitter so that runs failing together do not retry in lockstep.

use std::time::Duration;

/// The longest wait between two attempts, whatever the base and attempt.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);

/// Delay before the attempt after `attempt` (1-based) failed: `base * 2^(attempt-1)`,
/// capped at [`MAX_BACKOFF`], scaled by `jitter` ∈ [0, 1) into the range [75%, 125%).
pub(crate) fn backoff(base: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let raw = base.saturating_mul(1u32 << exp).min(MAX_BACKOFF);
    let factor = 0.75 + 0.5 * jitter.clamp(0.0, 1.0);
    raw.mul_f64(factor).min(MAX_BACKOFF)
}

/// Whether a failed attempt (1-based) is followed by another.
pub(crate) fn should_retry(attempt: u32, max_retries: u32, permanent: bool) -> bool {
    !permanent && attempt <= max_retries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_attempt_around_the_base() {
        let base = Duration::from_secs(10);
        assert_eq!(backoff(base, 1, 0.5), Duration::from_secs(10));
        assert_eq!(backoff(base, 2, 0.5), Duration::from_secs(20));
        assert_eq!(backoff(base, 3, 0.5), Duration::from_secs(40));
    }

    #[test]
    fn jitter_spans_three_quarters_to_five_quarters() {
        let base = Duration::from_secs(8);
        assert_eq!(backoff(base, 1, 0.0), Duration::from_secs(6));
        assert!(backoff(base, 1, 0.999) < Duration::from_secs(10));
        assert!(backoff(base, 1, 0.999) > Duration::from_millis(9990));
    }

    #[test]
    fn capped_at_a_day() {
        assert_eq!(backoff(Duration::from_secs(3600), 40, 1.0), MAX_BACKOFF);
    }

    #[test]
    fn retries_until_max_then_stops_and_never_for_permanent_errors() {
        assert!(should_retry(1, 2, false));
        assert!(should_retry(2, 2, false));
        assert!(!should_retry(3, 2, false));
        assert!(!should_retry(1, 0, false));
        assert!(!should_retry(1, 5, true));
    }
}
