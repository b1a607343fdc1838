//! trybuild UI tests: every error `#[ws_action]` and `actions![]` can emit has a case in
//! `ui/fail` with its `.stderr` snapshot; `ui/pass` holds every supported handler shape.
//! Regenerate snapshots with `TRYBUILD=overwrite cargo test -p venturekit-ws-macros --test ui`.
//!
//! They live in the macro crate so that trybuild's builds depend on venturekit-ws without
//! default features: no AWS SDK to compile.

#[test]
fn ui() {
    // trybuild passes silently when a glob matches nothing: make sure the cases are there.
    for (dir, at_least) in [("tests/ui/pass", 2), ("tests/ui/fail", 20)] {
        let cases = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .filter(|entry| {
                entry
                    .as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "rs"))
            })
            .count();
        assert!(cases >= at_least, "{dir} holds only {cases} cases");
    }
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
