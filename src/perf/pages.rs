//! Page faults, taken where they cost least. Fresh memory is mapped and zeroed by the kernel
//! on first touch, on whichever thread touches it first; the large tables of a run
//! (the state's row vectors, the usage_id check's sets) are touched on the pool, every
//! thread a share, before the thread that fills them gets there. Measured in
//! docs/BENCHMARKS-HISTORY.md (10M accounts: ~3.6 s of one thread's page zeroing spread
//! over the pool).

/// Write a zero to one byte of every 4 KiB of `bytes`, so that the kernel maps (and zeroes)
/// its pages now, on the calling thread, rather than on the first write of whichever thread
/// gets there. Only for memory whose contents do not matter yet: unused capacity, or zeros.
pub fn touch_pages(bytes: &mut [std::mem::MaybeUninit<u8>]) {
    for page in bytes.iter_mut().step_by(4096) {
        // SAFETY: a write to memory the slice owns; volatile so that it is kept.
        unsafe { std::ptr::write_volatile(page.as_mut_ptr(), 0) };
    }
}

/// Touch every page of `v`'s unused capacity (from 64 MiB up), on the pool, so that the
/// kernel maps and zeroes those pages now on every thread rather than one at a time on the
/// thread that merges rows into `v` (the state tables' vectors at millions of rows).
pub fn fault_in_spare<T>(v: &mut Vec<T>) {
    use rayon::prelude::*;
    let spare = v.spare_capacity_mut();
    let bytes = std::mem::size_of_val(spare);
    if bytes < 1 << 26 {
        return;
    }
    // SAFETY: the spare capacity is memory the vector owns; viewed as bytes, still uninit.
    let raw = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<std::mem::MaybeUninit<u8>>(), bytes) };
    raw.par_chunks_mut(1 << 20).for_each(touch_pages);
}
