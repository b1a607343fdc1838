//! trybuild UI tests: every error `#[ws_action]` and `actions![]` can emit has a case in
//! `ui/fail` with its `.stderr` snapshot; `ui/pass` holds every supported handler shape.
//! Regenerate snapshots with `TRYBUILD=overwrite cargo test -p venturekit-ws-tests --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
