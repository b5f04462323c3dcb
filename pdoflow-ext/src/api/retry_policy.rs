//! How long a failed job waits before its next attempt.

use pgrx::datum::Interval;
use pgrx::prelude::*;

use crate::settings::{RETRY_BACKOFF_BASE_MS, RETRY_BACKOFF_MAX_MS};

/// Share of the delay that random jitter may take away, so jobs that failed
/// together (say, during an outage) do not all come back at the same instant.
const JITTER: f64 = 0.25;

/// Exponential backoff: `base * 2^(attempt - 1)`, capped at `max`, then
/// reduced by up to [`JITTER`]. `unit_random` is in `[0, 1)`.
pub fn backoff_ms(attempt: i32, base_ms: i32, max_ms: i32, unit_random: f64) -> i64 {
    let doublings = attempt.saturating_sub(1).clamp(0, 62) as u32;
    let exponential = i64::from(base_ms.max(0)).saturating_mul(1_i64 << doublings);
    let capped = exponential.min(i64::from(max_ms.max(0)));
    let jitter = (capped as f64 * JITTER * unit_random.clamp(0.0, 1.0)) as i64;
    capped - jitter
}

/// The delay before retrying a job whose attempt number `attempt` failed.
#[pg_extern(volatile, parallel_safe, name = "_retry_delay")]
fn retry_delay(attempt: i32) -> Interval {
    let ms = backoff_ms(
        attempt,
        RETRY_BACKOFF_BASE_MS.get(),
        RETRY_BACKOFF_MAX_MS.get(),
        rand::random::<f64>(),
    );
    Interval::from_micros(ms.saturating_mul(1_000))
}

#[cfg(test)]
mod unit_tests {
    use super::backoff_ms;

    #[test]
    fn doubles_per_attempt_without_jitter() {
        assert_eq!(backoff_ms(1, 1_000, 3_600_000, 0.0), 1_000);
        assert_eq!(backoff_ms(2, 1_000, 3_600_000, 0.0), 2_000);
        assert_eq!(backoff_ms(5, 1_000, 3_600_000, 0.0), 16_000);
    }

    #[test]
    fn is_capped_even_for_huge_attempt_numbers() {
        assert_eq!(backoff_ms(30, 1_000, 60_000, 0.0), 60_000);
        assert_eq!(
            backoff_ms(i32::MAX, i32::MAX, i32::MAX, 0.0),
            i64::from(i32::MAX)
        );
    }

    #[test]
    fn jitter_only_shortens_by_at_most_a_quarter() {
        assert_eq!(backoff_ms(1, 1_000, 3_600_000, 0.999_999), 751);
        assert_eq!(backoff_ms(1, 1_000, 3_600_000, 0.5), 875);
    }

    #[test]
    fn zero_base_means_retry_at_once() {
        assert_eq!(backoff_ms(7, 0, 3_600_000, 0.3), 0);
    }
}
