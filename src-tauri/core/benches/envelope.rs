//! Envelope seal+open of 1 MiB against the raw `chacha20poly1305` crate, same run, same data.
//!
//! Criterion reports both (and, for scale, raw + wiping the plaintext as our API does); the final
//! line is the throughput ratio ours/raw (goal ≥ 0.9), the median of 41 interleaved rounds of 16
//! seal+opens each, alternating which side goes first, so machine noise hits both sides alike:
//! `RESULT envelope_vs_raw_1MiB <ratio>`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use carekey_core::envelope::{self, Context, ObjectKind};
use carekey_core::keys::ContentKey;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use criterion::{Criterion, Throughput};
use rand_core::{OsRng, RngCore};

const MIB: usize = 1024 * 1024;

struct Data {
    key: ContentKey,
    raw: XChaCha20Poly1305,
    pt: Vec<u8>,
    id: [u8; 16],
}

fn ours(d: &Data) -> usize {
    let ctx = Context::new(ObjectKind::RecordBlob, &d.id, 1);
    let env = envelope::seal(&d.key, &ctx, &d.pt, &mut OsRng);
    envelope::open(&d.key, &ctx, &env).expect("opens").len()
}

/// The same work without our layer: random nonce, a comparable AAD, seal, open.
fn raw_roundtrip(d: &Data) -> Vec<u8> {
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut nonce);
    let aad = [0u8; 40];
    let n = XNonce::from_slice(&nonce);
    let ct = d
        .raw
        .encrypt(
            n,
            Payload {
                msg: &d.pt,
                aad: &aad,
            },
        )
        .expect("seals");
    d.raw
        .decrypt(
            n,
            Payload {
                msg: &ct,
                aad: &aad,
            },
        )
        .expect("opens")
}

fn raw(d: &Data) -> usize {
    raw_roundtrip(d).len()
}

/// Raw, plus wiping the plaintext on drop as our API does.
fn raw_zeroized(d: &Data) -> usize {
    zeroize::Zeroizing::new(raw_roundtrip(d)).len()
}

fn main() {
    let key = ContentKey::random(&mut OsRng);
    let raw_cipher = XChaCha20Poly1305::new(key.expose_secret().into());
    let mut pt = vec![0u8; MIB];
    OsRng.fill_bytes(&mut pt);
    let d = Data {
        key,
        raw: raw_cipher,
        pt,
        id: [7; 16],
    };

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3));
    let mut g = c.benchmark_group("seal+open 1 MiB");
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("carekey envelope", |b| b.iter(|| black_box(ours(&d))));
    g.bench_function("raw chacha20poly1305", |b| b.iter(|| black_box(raw(&d))));
    g.bench_function("raw + zeroize", |b| b.iter(|| black_box(raw_zeroized(&d))));
    g.finish();
    c.final_summary();

    // Interleaved rounds, alternating which side goes first; median of per-round ratios.
    let time16 = |f: fn(&Data) -> usize| {
        let t = Instant::now();
        for _ in 0..16 {
            black_box(f(&d));
        }
        t.elapsed().as_secs_f64()
    };
    let mut ratios = Vec::new();
    for round in 0..41 {
        let (raw_t, ours_t) = if round % 2 == 0 {
            let r = time16(raw);
            (r, time16(ours))
        } else {
            let o = time16(ours);
            (time16(raw), o)
        };
        ratios.push(raw_t / ours_t);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "RESULT envelope_vs_raw_1MiB {:.3}",
        ratios[ratios.len() / 2]
    );
}
