//! Serving a stand-in's router on loopback from a thread of its own, so
//! both async tests and tests that run a module binary can use it.

use std::sync::mpsc;

/// Serve `app` on a free loopback port until the test process ends;
/// returns its `http://127.0.0.1:<port>` base.
pub fn serve(app: axum::Router) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("stand-in runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind the stand-in");
            let base = format!("http://{}", listener.local_addr().expect("local addr"));
            tx.send(base).expect("hand out the address");
            axum::serve(listener, app)
                .await
                .expect("serve the stand-in");
        });
    });
    rx.recv().expect("the stand-in's address")
}
