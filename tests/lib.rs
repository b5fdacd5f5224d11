//! Cross-crate tests live in this package (see `formats.rs`): the relay must not depend on
//! `carekey-core`, so the byte formats of docs/relay-formats.md are implemented twice and
//! checked against each other here. The client's end-to-end tests against a relay process are
//! in `src-tauri/client/tests`.
