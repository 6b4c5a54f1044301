//! Keeping hearthd's memory flat under a login flood.
//!
//! Each argon2id hash allocates 19 MiB and frees it. glibc serves such
//! blocks with mmap, but after the first one is freed it raises its mmap
//! threshold to that size (the "dynamic threshold"), so later blocks come
//! from per-thread arenas and stay resident after they are freed: measured
//! at 221 MiB peak under a brute-force run (daemon/tests/brute_force.rs).
//! A fixed threshold turns the dynamic one off; every large block then goes
//! back to the kernel when it is freed.

/// Blocks at least this large are mmapped and returned on free.
const MMAP_THRESHOLD: i32 = 1024 * 1024;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn return_large_blocks_to_the_kernel() {
    // SAFETY: mallopt only changes allocator tuning; it is called once at
    // start-up, before any other thread exists.
    #[allow(unsafe_code)]
    let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    if ok != 1 {
        tracing::warn!("could not set the allocator's mmap threshold; memory may grow under load");
    }
}

/// Other C libraries (musl) do not keep large blocks in arenas.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_large_blocks_to_the_kernel() {}
