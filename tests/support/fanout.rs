//! Shared by the fan-out benchmark and `vk-fanout`: a store of N authenticated connections
//! and a management API stand-in that answers every post with 200 at once.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use std::sync::Arc;
use venturekit_ws::clock::now_secs;
use venturekit_ws::{Connection, ConnectionStore, Identity, MemoryStore};

/// An in-memory store holding `n` authenticated connections (`conn00000=` …), one user each.
pub async fn store_with(n: usize) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    for i in 0..n {
        let id = format!("conn{i:05}=");
        store
            .save(&Connection::unauthenticated(&id, 1, now_secs() + 3600))
            .await
            .unwrap();
        let identity = Identity {
            user_id: format!("u{i}"),
            tenant_id: None,
            email: None,
            claims: Default::default(),
        };
        store
            .authenticate(&id, &identity, now_secs() + 3600)
            .await
            .unwrap();
    }
    store
}

/// Serves `POST /bench/@connections/{id}` → 200 on `listener` until the task is dropped.
/// Returns the management endpoint (`http://127.0.0.1:PORT/bench`).
pub async fn serve_fast_management_api(listener: tokio::net::TcpListener) -> String {
    let app = Router::new().route(
        "/bench/@connections/{id}",
        post(|| async { StatusCode::OK }),
    );
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/bench")
}
