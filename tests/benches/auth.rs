//! `auth` verification cost: HS256 and RS256 (and ES256) signature checks plus claim and
//! tenant-rule checks, per token.
//!
//! `cargo bench -p venturekit-ws-tests --bench auth`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::hint::black_box;
use venturekit_ws::Config;
use venturekit_ws::auth::{Verifier, resolve_tenant};
use venturekit_ws::config::JwtKey;

fn key(name: &str) -> String {
    std::fs::read_to_string(format!("{}/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn bench(c: &mut Criterion) {
    let claims = json!({"sub": "alice", "exp": jsonwebtoken::get_current_timestamp() + 3600,
        "email": "a@example.com", "tenantId": ["acme", "globex"]});
    let cases = [
        (
            "hs256",
            JwtKey::Secret(b"bench-secret".to_vec()),
            Algorithm::HS256,
            EncodingKey::from_secret(b"bench-secret"),
        ),
        (
            "rs256",
            JwtKey::PublicKeyPem(key("rsa_public.pem")),
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(key("rsa_private.pem").as_bytes()).unwrap(),
        ),
        (
            "es256",
            JwtKey::PublicKeyPem(key("ec_public.pem")),
            Algorithm::ES256,
            EncodingKey::from_ec_pem(key("ec_private.pem").as_bytes()).unwrap(),
        ),
    ];
    let mut group = c.benchmark_group("auth_verify");
    for (name, public, alg, private) in cases {
        let verifier = Verifier::new(&public, &Config::default()).unwrap();
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, &private).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let v = verifier.verify(black_box(&token)).unwrap();
                resolve_tenant(&v, Some("globex"), false).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
