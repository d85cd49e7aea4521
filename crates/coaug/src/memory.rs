//! Allocator settings for a process that frees and reallocates tensors of tens of megabytes
//! every transformer layer.
//!
//! glibc serves such blocks with fresh `mmap`s (its threshold adapts, up to 32 MiB) or
//! trims them off the heap top when freed, so the next layer pays page faults and kernel
//! zeroing to get the same memory back: 15% of a batched prefill's time on this machine
//! (perf: `exc_page_fault`, `clear_page_erms`), and 17% faster prefill once kept.

/// Keeps freed blocks of up to 32 MiB in the heap for reuse, and the heap from shrinking
/// below 1 GiB of slack. One arena for every thread: generation runs on rayon's workers, and
/// with an arena per thread their freed blocks were out of reach of the main thread's next
/// job (peak RSS 3.5 → 5.0–5.7 GB, and the training step after a batched generation 1.3–1.6×
/// slower from fresh page faults, `coaug bench lm`).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Undoes [`keep_freed_memory`]'s slack for a process with no LM in it (`coaug index`): freed
/// memory goes back to the system, so the phases of building an index (the tantivy writer, then
/// loading postings) do not add up in the peak RSS. A million generated documents: 2.10 GiB
/// peak with the LM's settings, see docs/results/scale.md for the figure after.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; malloc_trim only releases free memory.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 10);
        libc::malloc_trim(0);
    }
}
