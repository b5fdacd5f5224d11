//! QR render and decode timings (`cargo bench -p carekey-app --bench qr`).
//!
//! - `app_qr_render_ms`: a real pairing payload → SVG (goal ≤ 5 ms).
//! - `app_qr_decode_720p_ms`: a 1280×720 grayscale frame with the pairing QR at 4 px per
//!   module (~210 px, a phone held at arm's length by a 720p webcam), off-centre, on an unevenly
//!   lit background with reduced contrast and noise → `decode_luma` (goal ≤ 10 ms).
//!   Also reported: a frame with no QR (what a camera loop pays most of the time).
//!
//! Each figure is the median of N timed runs after a warm-up.

use std::hint::black_box;
use std::time::Instant;

use carekey_app::qr;
use carekey_core::pairing::PatientPairing;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..runs.div_ceil(10) {
        f();
    }
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn pairing_text() -> String {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    PatientPairing::start("https://relay.carekey.example", id, 4_000_000_000, &mut rng)
        .expect("pairing starts")
        .qr()
        .to_text()
}

/// The photo-like 720p frame (the same recipe as tests/qr.rs).
fn frame(text: Option<&str>) -> (u32, u32, Vec<u8>) {
    let (w, h) = (1280u32, 720u32);
    let scale = 4u32;
    let at = (760u32, 230u32);
    let m = text.map(|t| qr::QrMatrix::encode(t).expect("encodes"));
    let q = qr::QUIET_ZONE;
    let mut px = vec![0u8; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            let light = 0.55
                + 0.45 * (f64::from(x) / f64::from(w)) * (1.0 - 0.4 * f64::from(y) / f64::from(h));
            let mut v = 150.0;
            if let Some(m) = &m {
                let size = m.modules() + 2 * q;
                let (qx, qy) = (x.wrapping_sub(at.0) / scale, y.wrapping_sub(at.1) / scale);
                if qx < size && qy < size {
                    let dark = qx >= q && qy >= q && m.is_dark(qx - q, qy - q);
                    v = if dark { 60.0 } else { 190.0 };
                }
            }
            px[(y * w + x) as usize] = (v * light).clamp(0.0, 255.0) as u8;
        }
    }
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    for p in &mut px {
        let n = (rng.next_u32() % 21) as i32 - 10;
        *p = (i32::from(*p) + n).clamp(0, 255) as u8;
    }
    (w, h, px)
}

fn main() {
    let text = pairing_text();

    let render = median_ms(500, || {
        black_box(qr::render_svg(black_box(&text), "QR code to show the doctor").expect("renders"));
    });
    println!("RESULT app_qr_render_ms {render:.3}");

    let (w, h, px) = frame(Some(&text));
    assert_eq!(
        qr::decode_luma(w, h, &px).expect("bench frame decodes"),
        vec![text.clone()]
    );
    let decode = median_ms(60, || {
        black_box(qr::decode_luma(w, h, black_box(&px)).expect("decodes"));
    });
    println!("RESULT app_qr_decode_720p_ms {decode:.3}");

    let (w, h, empty) = frame(None);
    let miss = median_ms(30, || {
        black_box(qr::decode_luma(w, h, black_box(&empty)).expect_err("no QR"));
    });
    println!("info: app_qr_decode_720p_no_qr_ms {miss:.3} (no QR in the frame: both passes)");
}
