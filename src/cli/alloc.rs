//! The allocator, owned by the binary: mimalloc (allocation-heavy ingestion of millions of
//! small strings runs markedly faster on it), its purge delay, and the hooks the library
//! calls through `billrun::perf::memory`. What each setting bought is measured in
//! docs/BENCHMARKS-HISTORY.md and summarized in docs/DECISIONS.md ("allocator", "exit").

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e` of `mimalloc.h`, the
/// same in mimalloc 2 and 3; `libmimalloc-sys` names only some options). Checked in the tests.
pub const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keep freed memory for 3 s before returning it to the OS (mimalloc 3's default: 1 s): a
/// run frees and reallocates hundreds of MiB from one phase to the next, and memory returned
/// too early comes back as page faults on zeroed pages. `MIMALLOC_PURGE_DELAY` in the
/// environment wins. The allocator is built with `no_thp` (Cargo.toml): it never advises
/// transparent huge pages, whose first touch zeroes 2 MiB at a time.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an integer option of the allocator; any value is valid.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 3000) };
    }
    billrun::perf::memory::set_release(release_memory);
    billrun::perf::memory::set_leave_to_exit(true);
}

/// Return the memory freed so far to the OS now rather than after the purge delay
/// (`mi_collect(true)`: the calling thread's heap and the shared arenas).
fn release_memory() {
    // SAFETY: a request to the allocator; valid on any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Flush stdout and stderr and end the process, skipping the at-exit handlers: mimalloc
/// (linked statically) would return every free span to the OS at exit, which the kernel's
/// teardown of the process does anyway. Everything a run writes is closed and fsynced
/// before.
pub fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process; nothing runs after it.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_before_use_numa_nodes_with_its_default() {
        // mimalloc.h: `..., mi_option_purge_delay, mi_option_use_numa_nodes, ...`.
        assert_eq!(MI_OPTION_PURGE_DELAY + 1, libmimalloc_sys::mi_option_use_numa_nodes);
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reads an integer option (mimalloc 3's default purge delay: 1000 ms).
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, 1000);
            tune();
            // SAFETY: as above.
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, 3000);
        }
    }
}
