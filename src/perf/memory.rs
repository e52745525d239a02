//! The allocator's owner (the binary) decides what happens to freed memory; the library only
//! says when. Two hooks, registered by `main` at start-up and off by default (tests run many
//! runs in one process, whose memory must be freed):
//!
//! - [`release_freed_memory`]: once the state is read, hand the memory freed so far back to
//!   the OS, on every pool thread (mimalloc's `mi_collect`): the run's peak moved from the
//!   usage phase to the rate phase.
//! - [`leave_to_exit`]: a published run's large structures and its thread pool are left to
//!   the process exit, which frees them all at once, instead of piece by piece.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static RELEASE: OnceLock<fn()> = OnceLock::new();
static LEAVE_TO_EXIT: AtomicBool = AtomicBool::new(false);

/// Register the allocator's "return freed memory now" (the binary's `mi_collect(true)`).
pub fn set_release(f: fn()) {
    let _ = RELEASE.set(f);
}

/// The process exits right after the run: large structures are left to the exit.
pub fn set_leave_to_exit(on: bool) {
    LEAVE_TO_EXIT.store(on, Ordering::Relaxed);
}

/// Return the memory freed so far to the OS, on every thread of the current pool.
pub fn release_freed_memory() {
    if let Some(f) = RELEASE.get() {
        rayon::broadcast(|_| f());
    }
}

/// Drop `v`, or leave it to the process exit when the binary said so.
pub fn leave_to_exit<T>(v: T) {
    if LEAVE_TO_EXIT.load(Ordering::Relaxed) {
        std::mem::forget(v);
    } else {
        drop(v);
    }
}
