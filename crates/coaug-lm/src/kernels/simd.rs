//! Run-time choice of the widest vector instructions for the hand-written kernels.

/// The widest vector instructions this CPU has. The kernels (`attention`, `rms_norm`,
/// `swiglu`) are plain loops the compiler vectorizes; without `-C target-cpu` it may only
/// assume SSE2, so each kernel is compiled again inside functions that enable AVX2+FMA or
/// AVX-512 and picked at run time. (`q8`'s integer kernels narrow this choice to the
/// instructions they need, see `q8::kernels::dot_level`.)
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SimdLevel {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

pub(crate) fn simd_level() -> SimdLevel {
    static LEVEL: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::env::var_os("COAUG_NO_SIMD_DISPATCH").is_some() {
                return SimdLevel::Baseline;
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("fma") {
                return SimdLevel::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Baseline
    })
}

/// Compiles `$method` of `$ty` again inside functions that enable wider vector instructions,
/// and picks one at run time.
macro_rules! multiversion {
    ($ty:ty, $method:ident, $avx2:ident, $avx512:ident, $dispatch:ident ($($arg:ident: $t:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2(m: &$ty, $($arg: $t),*) {
            m.$method($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
        unsafe fn $avx512(m: &$ty, $($arg: $t),*) {
            m.$method($($arg),*)
        }

        fn $dispatch(level: $crate::kernels::simd::SimdLevel, m: &$ty, $($arg: $t),*) {
            match level {
                // SAFETY: `simd_level` detected these instructions on this CPU.
                #[cfg(target_arch = "x86_64")]
                $crate::kernels::simd::SimdLevel::Avx512 => unsafe { $avx512(m, $($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::kernels::simd::SimdLevel::Avx2 => unsafe { $avx2(m, $($arg),*) },
                $crate::kernels::simd::SimdLevel::Baseline => m.$method($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;
