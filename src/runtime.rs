//! The tokio runtime each server or client owns.

use tokio::runtime::Runtime;

thread_local! {
    static LOG_GUARD: std::cell::RefCell<Option<tracing::dispatcher::DefaultGuard>> =
        const { std::cell::RefCell::new(None) };
}

/// A multi-thread runtime of `workers` threads named `name`, whose threads
/// log through `logs` (so each server or client logs to its own host).
pub(crate) fn build(workers: usize, name: &str, logs: &tracing::Dispatch) -> std::io::Result<Runtime> {
    let logs = logs.clone();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .on_thread_start(move || {
            let guard = tracing::dispatcher::set_default(&logs);
            LOG_GUARD.with(|slot| *slot.borrow_mut() = Some(guard));
        })
        .on_thread_stop(|| LOG_GUARD.with(|slot| drop(slot.borrow_mut().take())))
        .build()
}
