//! Scanned QR text: parsing never panics; whatever parses re-serialises to text that parses to
//! the same payload, and its binary form is canonical.
#![no_main]

use carekey_core::pairing::QrPayload;
use carekey_core::wire::Wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = QrPayload::parse(text) {
        let again = QrPayload::parse(&p.to_text()).expect("own text parses");
        assert_eq!(again, p);
        let bytes = p.to_bytes();
        assert_eq!(QrPayload::from_bytes(&bytes).expect("own bytes decode"), p);
        assert!(bytes.len() <= carekey_core::pairing::MAX_QR_BINARY_LEN);
    }
});
