//! The async runtime the synchronous callers (modules, the CLI) run the
//! client on.

use std::future::Future;

/// Run `future` to completion on a fresh multi-threaded tokio runtime
/// (hashing and TLS of parallel transfers use every core).
pub fn block_on<F: Future>(future: F) -> std::io::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("speculative-images-client")
        .build()?;
    let output = runtime.block_on(future);
    // Do not wait for idle pooled connections to wind down.
    runtime.shutdown_background();
    Ok(output)
}
