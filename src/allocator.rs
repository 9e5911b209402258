//! The engine's allocator: jemalloc, for the engine's own (Rust) allocations only.
//!
//! glibc's malloc keeps memory freed by worker threads in per-thread arenas; under
//! churning sessions and server restarts the process grew by two thirds over ten
//! minutes with the heap in use flat (docs/BENCHMARKS.md, "Soak"). jemalloc returns
//! dirty pages to the system after a decay time. The host's own `malloc` (and
//! SQLite's) is untouched: jemalloc's symbols are prefixed.
//!
//! Tools that interpose `malloc`, valgrind first, cannot see jemalloc's heap, so
//! `IMBED_ALLOCATOR=system` in the environment sends the engine's allocations to
//! the C library instead. It is read once, at the first allocation, and never
//! changes afterwards, so every block is freed by the allocator that made it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

use tikv_jemallocator::Jemalloc;

#[global_allocator]
static ALLOCATOR: EngineAllocator = EngineAllocator;

struct EngineAllocator;

const UNDECIDED: u8 = 0;
const JEMALLOC: u8 = 1;
const SYSTEM: u8 = 2;

static CHOICE: AtomicU8 = AtomicU8::new(UNDECIDED);

fn system() -> bool {
    match CHOICE.load(Ordering::Relaxed) {
        UNDECIDED => decide(),
        choice => choice == SYSTEM,
    }
}

#[cold]
fn decide() -> bool {
    // getenv does not allocate, which matters inside the allocator. Threads that
    // decide at once read the same environment and store the same answer.
    // SAFETY: a NUL-terminated name; the value, when there is one, is a C string.
    let system = unsafe {
        let value = libc::getenv(c"IMBED_ALLOCATOR".as_ptr());
        !value.is_null() && std::ffi::CStr::from_ptr(value).to_bytes() == b"system"
    };
    CHOICE.store(if system { SYSTEM } else { JEMALLOC }, Ordering::Relaxed);
    system
}

// SAFETY: each call forwards to one of two allocators that uphold the
// contract themselves, and the choice between them never changes once made.
unsafe impl GlobalAlloc for EngineAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe {
            if system() {
                System.alloc(layout)
            } else {
                Jemalloc.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe {
            if system() {
                System.alloc_zeroed(layout)
            } else {
                Jemalloc.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract; `ptr` came from the same allocator.
        unsafe {
            if system() {
                System.dealloc(ptr, layout)
            } else {
                Jemalloc.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract; `ptr` came from the same allocator.
        unsafe {
            if system() {
                System.realloc(ptr, layout, new_size)
            } else {
                Jemalloc.realloc(ptr, layout, new_size)
            }
        }
    }
}
