//! Per-request crypto floor of an audited GET: parse + `verify_strict` of a fetch receipt with
//! a reader key seen for the first time (the point is decompressed) and with a cached one,
//! against a bare `ed25519_dalek` `verify_strict` of the same signature (and, for scale, the
//! decompression alone). `cargo bench -p carekey-relay --bench receipt`.

use std::hint::black_box;
use std::time::Duration;

use carekey_relay::token::{FETCH_RECEIPT_LABEL, RECEIPT_VERSION, Receipt};
use criterion::{BatchSize, Criterion};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::OsRng;

/// A receipt as a doctor's client builds it (relay-formats.md "Fetch receipt") and the exact
/// message it signs.
fn receipt(reader: &SigningKey) -> (Vec<u8>, Vec<u8>) {
    let object = "00112233445566778899aabbccddeeff";
    let mut r = vec![RECEIPT_VERSION];
    r.extend_from_slice(&[7u8; 16]);
    r.extend_from_slice(&(object.len() as u16).to_be_bytes());
    r.extend_from_slice(object.as_bytes());
    r.extend_from_slice(reader.verifying_key().as_bytes());
    r.extend_from_slice(&1_700_000_000u64.to_be_bytes());
    r.extend_from_slice(&[9u8; 16]);
    let mut m = FETCH_RECEIPT_LABEL.to_vec();
    m.push(0);
    m.extend_from_slice(&r);
    r.extend_from_slice(&reader.sign(&m).to_bytes());
    (r, m)
}

fn parse_verify(bytes: Vec<u8>) {
    let rc = Receipt::parse(bytes).expect("parses");
    rc.verify().expect("verifies");
}

fn bench(c: &mut Criterion) {
    let reader = SigningKey::generate(&mut OsRng);
    let (bytes, msg) = receipt(&reader);
    let sig = Signature::from_slice(&bytes[bytes.len() - 64..]).expect("64 bytes");
    let vk = reader.verifying_key();
    let mut g = c.benchmark_group("receipt");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    // A fresh reader key per iteration (made in the untimed setup): always a cache miss.
    g.bench_function("parse_verify_cold_key", |b| {
        b.iter_batched(
            || receipt(&SigningKey::generate(&mut OsRng)).0,
            |r| parse_verify(black_box(r)),
            BatchSize::SmallInput,
        )
    });
    parse_verify(bytes.clone());
    g.bench_function("parse_verify_cached_key", |b| {
        b.iter_batched(
            || bytes.clone(),
            |r| parse_verify(black_box(r)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("dalek_verify_strict", |b| {
        b.iter(|| {
            black_box(&vk)
                .verify_strict(black_box(&msg), black_box(&sig))
                .expect("verifies")
        })
    });
    g.bench_function("dalek_key_decompress", |b| {
        b.iter(|| VerifyingKey::from_bytes(black_box(vk.as_bytes())).expect("valid key"))
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
