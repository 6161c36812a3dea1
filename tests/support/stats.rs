//! The one percentile the fault suite and the benchmarks report.

/// The `p`-th percentile (`p` in 0..=100) by the nearest-rank method: the
/// smallest sample with at least `p` % of the samples at or below it, that
/// is the `ceil(p / 100 * n)`-th smallest (at least the first). It is always
/// one of the samples, never an interpolation, so with fewer than 100
/// samples p99 is the maximum and p1 the minimum; p50 of an even count is
/// the lower of the two middle samples. `None` without samples.
pub fn percentile<T: Copy + PartialOrd>(samples: &[T], p: f64) -> Option<T> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}
