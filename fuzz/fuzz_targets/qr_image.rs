//! QR decoding and routing on hostile input: `decode_image` on arbitrary bytes, `decode_luma` on
//! arbitrary frames (dimensions from the first bytes, consistent and inconsistent with the data
//! length), `classify` on arbitrary text. None may panic; a Carekey classification re-classifies
//! to itself (normalisation is idempotent), and whatever decodes is text `classify` accepts
//! without panicking.
#![no_main]

use carekey_app::qr::{self, ScannedPayload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(texts) = qr::decode_image(data) {
        assert!(!texts.is_empty());
        for t in &texts {
            let _ = qr::classify(t);
        }
    }

    if let [a, b, c, rest @ ..] = data {
        // A width of 1..=4096 and the height the data gives: a well-formed frame.
        let w = (u32::from(u16::from_le_bytes([*a, *b])) % 4096) + 1;
        let h = u32::try_from(rest.len()).unwrap_or(u32::MAX) / w;
        if h > 0 {
            let luma = &rest[..(w * h) as usize];
            if let Ok(texts) = qr::decode_luma(w, h, luma) {
                assert!(!texts.is_empty());
            }
        }
        // Arbitrary dimensions against the same data: rejected or decoded, never a panic.
        let _ = qr::decode_luma(u32::from(*a) << (c % 24), u32::from(*b) + 1, rest);
    }

    if let Ok(text) = core::str::from_utf8(data) {
        if let Ok(p) = qr::classify(text) {
            let again = qr::classify(p.text()).expect("normalised text classifies");
            assert_eq!(again, p);
            if let ScannedPayload::Carekey(t) = &p {
                assert!(t.starts_with("CAREKEY:"));
                let _ = qr::render_svg(t, "QR code to show the doctor");
            }
        }
    }
});
