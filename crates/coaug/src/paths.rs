//! Where coaug finds things that live outside the repository.

use std::path::PathBuf;

/// The peer benchmark scripts (`bm25s_bench.py`, `llamacpp_bench.py`, `setup.sh`).
/// `$COAUG_PEERS` wins; otherwise the workplace layout, `../shared/peers` beside the checkout.
pub fn peers_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("COAUG_PEERS").map(PathBuf::from)).unwrap_or_else(|| PathBuf::from("../shared/peers"))
}
