//! When to try a request again, and how long to wait first.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with full jitter: before retry `n` (1-based) wait a uniform draw from
/// `[0, min(max_delay, base_delay · 2^(n−1))]`, or what the server asked for in `Retry-After`
/// (capped at `max_delay`). Full jitter spreads the retries of many concurrent requests that
/// failed together (a server restarting) instead of sending them back in one wave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Tries per request, the first included (1: never retry).
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 8 tries over up to about a minute and a half of waiting: a server restart or a burst of
    /// rate limiting passes, a server that is down fails the items in reasonable time.
    fn default() -> Self {
        Self { max_attempts: 8, base_delay: Duration::from_millis(500), max_delay: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// The wait before retry `retry` (1 for the first retry), honouring the server's
    /// `Retry-After` when it gave one.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.max_delay);
        }
        let exp = 2u32.saturating_pow(retry.saturating_sub(1));
        let ceiling = self.base_delay.saturating_mul(exp).min(self.max_delay);
        ceiling.mul_f64(rng.random::<f64>())
    }
}

/// `Retry-After` as seconds (RFC 9110 also allows an HTTP date; servers that rate-limit
/// completions send seconds, and a date is treated as absent: the backoff applies).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_grows_exponentially_under_its_cap_and_honours_retry_after() {
        let policy = RetryPolicy { max_attempts: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for retry in 1..=8u32 {
            let ceiling = Duration::from_millis(100 * 2u64.pow(retry - 1)).min(Duration::from_secs(1));
            let draws: Vec<Duration> = (0..200).map(|_| policy.delay(retry, None, &mut rng)).collect();
            assert!(draws.iter().all(|d| *d <= ceiling), "retry {retry}: a draw above {ceiling:?}");
            // Jitter: the draws spread over the range rather than sitting on the ceiling.
            let max = *draws.iter().max().unwrap();
            let min = *draws.iter().min().unwrap();
            assert!(max > ceiling.mul_f64(0.8) && min < ceiling.mul_f64(0.2), "retry {retry}: {min:?}..{max:?} of {ceiling:?}");
        }
        assert_eq!(policy.delay(1, Some(Duration::from_millis(1500)), &mut rng), Duration::from_secs(1));
        assert_eq!(policy.delay(3, Some(Duration::from_millis(250)), &mut rng), Duration::from_millis(250));
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
