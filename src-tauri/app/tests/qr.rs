//! QR rendering, decoding and routing (`carekey_app::qr`): real pairing payloads rendered to
//! SVG, rasterised from the SVG itself, degraded (blur, noise, a photo-like 720p frame) and
//! decoded back; PNG/JPEG files; every rejection path and its error code; payload routing.

use std::io::Cursor;

use carekey_app::qr::{
    self, MAX_IMAGE_BYTES, MAX_QR_TEXT_LEN, QUIET_ZONE, QrMatrix, QrMode, ScannedPayload,
};
use carekey_core::pairing::{PatientPairing, QR_V7_URL_LEN, QrPayload};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_core::OsRng;

const LABEL: &str = "QR code to show the doctor";

/// A real pairing text from the core, for a relay host of `host_len` characters.
fn pairing_text_with_host(host_len: usize) -> String {
    let host = format!("{}.example", "r".repeat(host_len - ".example".len()));
    let url = format!("https://{host}");
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    let p = PatientPairing::start(&url, id, 4_000_000_000, &mut OsRng).expect("pairing starts");
    let text = p.qr().to_text();
    assert_eq!(QrPayload::parse(&text).expect("parses"), *p.qr());
    text
}

fn pairing_text() -> String {
    pairing_text_with_host("relay.carekey.example".len())
}

/// A deterministic pairing text (for the degraded-image tests: same symbol every run).
fn seeded_pairing_text(seed: u64) -> String {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    PatientPairing::start("https://relay.carekey.example", id, 4_000_000_000, &mut rng)
        .expect("pairing starts")
        .qr()
        .to_text()
}

/// The SVG parsed back into its module grid (quiet zone included): the `viewBox` size and the
/// `M x y h n v1 h-n z` runs `render_svg` writes. This tests the document, not the encoder.
fn svg_grid(svg: &str) -> (u32, Vec<bool>) {
    let vb = svg
        .split("viewBox=\"0 0 ")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("viewBox");
    let (w, h) = vb.split_once(' ').expect("two numbers");
    assert_eq!(w, h, "square viewBox");
    let size: u32 = w.parse().expect("size");
    let d = svg
        .split(" d=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("path");
    let mut grid = vec![false; (size * size) as usize];
    for cmd in d.split('z').filter(|c| !c.is_empty()) {
        let rest = cmd.strip_prefix('M').expect("M");
        let (xy, run) = rest.split_once('h').expect("h");
        let (x, y) = xy.split_once(' ').expect("x y");
        let (x, y): (u32, u32) = (x.parse().expect("x"), y.parse().expect("y"));
        let run: u32 = run.split('v').next().expect("run").parse().expect("n");
        for i in 0..run {
            grid[(y * size + x + i) as usize] = true;
        }
    }
    (size, grid)
}

/// A grayscale frame, row-major.
#[derive(Clone)]
struct Frame {
    w: u32,
    h: u32,
    px: Vec<u8>,
}

impl Frame {
    fn get(&self, x: u32, y: u32) -> u8 {
        self.px[(y * self.w + x) as usize]
    }
}

/// The grid at `scale` pixels per module, `dark`/`light` levels.
fn rasterize(size: u32, grid: &[bool], scale: u32, dark: u8, light: u8) -> Frame {
    let w = size * scale;
    let mut px = vec![light; (w * w) as usize];
    for y in 0..w {
        for x in 0..w {
            if grid[((y / scale) * size + x / scale) as usize] {
                px[(y * w + x) as usize] = dark;
            }
        }
    }
    Frame { w, h: w, px }
}

fn render_frame(text: &str, scale: u32) -> Frame {
    let svg = qr::render_svg(text, LABEL).expect("renders");
    let (size, grid) = svg_grid(&svg.svg);
    rasterize(size, &grid, scale, 0, 255)
}

/// Box blur of radius `r` (a (2r+1)² window, clamped at the edges).
fn box_blur(f: &Frame, r: u32) -> Frame {
    let mut out = f.clone();
    for y in 0..f.h {
        for x in 0..f.w {
            let (x0, x1) = (x.saturating_sub(r), (x + r).min(f.w - 1));
            let (y0, y1) = (y.saturating_sub(r), (y + r).min(f.h - 1));
            let mut sum = 0u32;
            for yy in y0..=y1 {
                for xx in x0..=x1 {
                    sum += u32::from(f.get(xx, yy));
                }
            }
            let n = (x1 - x0 + 1) * (y1 - y0 + 1);
            out.px[(y * f.w + x) as usize] = (sum / n) as u8;
        }
    }
    out
}

/// Uniform noise in `-amp..=amp` on every pixel.
fn add_noise(f: &mut Frame, amp: i32, rng: &mut ChaCha20Rng) {
    let span = (2 * amp + 1) as u32;
    for p in &mut f.px {
        let n = (rng.next_u32() % span) as i32 - amp;
        *p = (i32::from(*p) + n).clamp(0, 255) as u8;
    }
}

/// A 1280×720 "photo": the code small and off-centre on a background lit unevenly (a diagonal
/// gradient times a soft spot), contrast squeezed to 60–190, slightly blurred and noisy.
fn photo_frame(text: &str, scale: u32, at: (u32, u32), seed: u64) -> Frame {
    let (w, h) = (1280u32, 720u32);
    let svg = qr::render_svg(text, LABEL).expect("renders");
    let (size, grid) = svg_grid(&svg.svg);
    let mut px = vec![0u8; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            // Paper/desk at ~0.45..1.0 of full light.
            let light = 0.55
                + 0.45 * (f64::from(x) / f64::from(w)) * (1.0 - 0.4 * f64::from(y) / f64::from(h));
            let (cx, cy) = (f64::from(x) - 300.0, f64::from(y) - 200.0);
            let spot = 1.0 + 0.25 * (-(cx * cx + cy * cy) / 200_000.0).exp();
            let mut v = 150.0; // background
            let (qx, qy) = (x.wrapping_sub(at.0), y.wrapping_sub(at.1));
            if qx < size * scale && qy < size * scale {
                v = if grid[((qy / scale) * size + qx / scale) as usize] {
                    60.0
                } else {
                    190.0
                };
            }
            px[(y * w + x) as usize] = (v * light * spot).clamp(0.0, 255.0) as u8;
        }
    }
    let mut f = box_blur(&Frame { w, h, px }, 1);
    add_noise(&mut f, 10, &mut ChaCha20Rng::seed_from_u64(seed));
    f
}

fn decode(f: &Frame) -> Vec<String> {
    qr::decode_luma(f.w, f.h, &f.px).expect("decodes")
}

fn encode_as(f: &Frame, format: image::ImageFormat) -> Vec<u8> {
    let img = image::GrayImage::from_raw(f.w, f.h, f.px.clone()).expect("sized");
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut out, format)
        .expect("encodes");
    out.into_inner()
}

fn code_of<T: std::fmt::Debug>(r: Result<T, carekey_app::AppError>) -> String {
    r.expect_err("should fail").code
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

#[test]
fn pairing_payload_renders_alphanumeric_at_version_7_or_less() {
    let text = pairing_text();
    assert!(text.len() > 150, "a real payload is ~159 characters");
    let svg = qr::render_svg(&text, LABEL).expect("renders");
    assert_eq!(svg.mode, QrMode::Alphanumeric);
    assert!(svg.version <= 7, "version {}", svg.version);
    assert_eq!(svg.modules, 17 + 4 * u32::from(svg.version));
    // The same text in byte mode would not fit version 7 at ECC M: so version ≤ 7 is itself
    // proof the alphanumeric segment was used.
    let mut bits = qrcode::bits::Bits::new(qrcode::Version::Normal(7));
    let byte_fits = bits.push_byte_data(text.as_bytes()).is_ok()
        && bits.push_terminator(qrcode::EcLevel::M).is_ok();
    assert!(!byte_fits);

    // The longest relay host the core promises keeps version 7.
    let longest = pairing_text_with_host(QR_V7_URL_LEN);
    let svg = qr::render_svg(&longest, LABEL).expect("renders");
    assert_eq!(svg.mode, QrMode::Alphanumeric);
    assert!(svg.version <= 7, "version {}", svg.version);
}

#[test]
fn svg_document_is_scalable_labelled_high_contrast() {
    let svg = qr::render_svg(&pairing_text(), LABEL).expect("renders");
    let s = &svg.svg;
    assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    let size = svg.modules + 2 * QUIET_ZONE;
    assert!(s.contains(&format!("viewBox=\"0 0 {size} {size}\"")));
    assert!(s.contains("role=\"img\""));
    assert!(s.contains(&format!("aria-label=\"{LABEL}\"")));
    assert!(s.contains("fill=\"#ffffff\"") && s.contains("fill=\"#000000\""));
    let root = s.split('>').next().expect("root tag");
    assert!(
        !root.contains("width") && !root.contains("height"),
        "{root}"
    );
    // The quiet zone is empty: no dark module in the outer 4 rows/columns.
    let (size, grid) = svg_grid(s);
    for y in 0..size {
        for x in 0..size {
            let border = x < QUIET_ZONE
                || y < QUIET_ZONE
                || x >= size - QUIET_ZONE
                || y >= size - QUIET_ZONE;
            if border {
                assert!(!grid[(y * size + x) as usize], "quiet zone at {x},{y}");
            }
        }
    }
}

#[test]
fn svg_grid_matches_matrix() {
    let text = pairing_text();
    let m = QrMatrix::encode(&text).expect("encodes");
    let (size, grid) = svg_grid(&m.to_svg(LABEL).svg);
    assert_eq!(size, m.modules() + 2 * QUIET_ZONE);
    for y in 0..m.modules() {
        for x in 0..m.modules() {
            assert_eq!(
                grid[((y + QUIET_ZONE) * size + x + QUIET_ZONE) as usize],
                m.is_dark(x, y)
            );
        }
    }
}

#[test]
fn render_rejects_empty_and_too_long() {
    assert_eq!(code_of(qr::render_svg("", LABEL)), "invalid_input");
    assert_eq!(
        code_of(qr::render_svg(&"A".repeat(MAX_QR_TEXT_LEN + 1), LABEL)),
        "invalid_input"
    );
    // Within the length bound but over the capacity of version 40 at ECC M (2331 bytes).
    let e = qr::render_svg(&"a".repeat(3000), LABEL).expect_err("too long");
    assert_eq!(e.code, "invalid_input");
    assert!(e.message.contains("too long"), "{}", e.message);
    // Non-alphanumeric text still renders (byte mode).
    let svg = qr::render_svg(
        "https://viewer.example/#shlink:/eyJ1cmwiOiJodHRwczovL2V4In0",
        LABEL,
    )
    .expect("renders");
    assert_eq!(svg.mode, QrMode::Mixed);
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

#[test]
fn render_then_decode_at_three_scales() {
    let text = pairing_text();
    for scale in [2, 4, 7] {
        let f = render_frame(&text, scale);
        assert_eq!(decode(&f), vec![text.clone()], "scale {scale}");
    }
}

#[test]
fn decodes_inverted_code() {
    let text = seeded_pairing_text(1);
    let mut f = render_frame(&text, 4);
    for p in &mut f.px {
        *p = 255 - *p;
    }
    assert_eq!(decode(&f), vec![text]);
}

#[test]
fn decodes_blurred() {
    let text = seeded_pairing_text(2);
    for (scale, r) in [(4, 1), (7, 2), (7, 3)] {
        let f = box_blur(&render_frame(&text, scale), r);
        assert_eq!(decode(&f), vec![text.clone()], "scale {scale} blur {r}");
    }
}

#[test]
fn decodes_noisy() {
    let text = seeded_pairing_text(3);
    let mut rng = ChaCha20Rng::seed_from_u64(33);
    for (scale, amp) in [(3, 60), (4, 90), (7, 110)] {
        let mut f = render_frame(&text, scale);
        add_noise(&mut f, amp, &mut rng);
        assert_eq!(decode(&f), vec![text.clone()], "scale {scale} noise ±{amp}");
    }
}

#[test]
fn decodes_photo_like_720p_frame() {
    let text = seeded_pairing_text(4);
    for (scale, at, seed) in [
        (4, (820, 260), 40),
        (3, (140, 420), 41),
        (6, (500, 120), 42),
    ] {
        let f = photo_frame(&text, scale, at, seed);
        assert_eq!((f.w, f.h), (1280, 720));
        assert_eq!(decode(&f), vec![text.clone()], "scale {scale} at {at:?}");
    }
}

/// A frame whose whole range is squeezed into a few grey levels: found (possibly on the
/// contrast-stretched retry).
#[test]
fn decodes_very_low_contrast() {
    let text = seeded_pairing_text(5);
    let svg = qr::render_svg(&text, LABEL).expect("renders");
    let (size, grid) = svg_grid(&svg.svg);
    let mut f = rasterize(size, &grid, 4, 118, 134);
    add_noise(&mut f, 2, &mut ChaCha20Rng::seed_from_u64(55));
    assert_eq!(decode(&f), vec![text]);
}

#[test]
fn decodes_two_codes_in_one_frame() {
    let (a, b) = (seeded_pairing_text(6), "SHC:/567629095243206034602924374044603122295953265460346029254077280433602870286471674522280928613331456437653141590640220306450459085643550341424541364037063665417137241236380304375622046737407532323347".to_owned());
    let (fa, fb) = (render_frame(&a, 4), render_frame(&b, 4));
    let (w, h) = (fa.w + fb.w + 40, fa.h.max(fb.h) + 40);
    let mut px = vec![255u8; (w * h) as usize];
    for (f, ox) in [(&fa, 10u32), (&fb, fa.w + 30)] {
        for y in 0..f.h {
            for x in 0..f.w {
                px[((y + 20) * w + x + ox) as usize] = f.get(x, y);
            }
        }
    }
    let mut found = qr::decode_luma(w, h, &px).expect("decodes");
    found.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(found, want);
}

#[test]
fn decode_image_png_and_jpeg() {
    let text = pairing_text();
    let f = photo_frame(&text, 4, (600, 300), 7);
    let png = encode_as(&f, image::ImageFormat::Png);
    assert_eq!(
        qr::decode_image(&png).expect("png decodes"),
        vec![text.clone()]
    );
    let jpeg = encode_as(&f, image::ImageFormat::Jpeg);
    assert_eq!(
        qr::decode_image(&jpeg).expect("jpeg decodes"),
        vec![text.clone()]
    );
    // An RGB PNG too (the file is converted to luma).
    let rgb = image::DynamicImage::ImageLuma8(
        image::GrayImage::from_raw(f.w, f.h, f.px.clone()).expect("sized"),
    )
    .into_rgb8();
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(rgb)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encodes");
    assert_eq!(
        qr::decode_image(out.get_ref()).expect("rgb decodes"),
        vec![text]
    );
}

// ---------------------------------------------------------------------------------------------
// Rejections
// ---------------------------------------------------------------------------------------------

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The start of a PNG (signature, IHDR, a truncated IDAT) announcing `w × h` 8-bit grayscale.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&w.to_be_bytes());
    chunk.extend_from_slice(&h.to_be_bytes());
    chunk.extend_from_slice(&[8, 0, 0, 0, 0]);
    v.extend_from_slice(&13u32.to_be_bytes());
    v.extend_from_slice(&chunk);
    v.extend_from_slice(&crc32(&chunk).to_be_bytes());
    // An IDAT chunk (a few bytes of a zlib stream), so the header reads as complete.
    let mut idat = b"IDAT".to_vec();
    idat.extend_from_slice(&[0x78, 0x9c, 0x63, 0x00, 0x00]);
    v.extend_from_slice(&5u32.to_be_bytes());
    v.extend_from_slice(&idat);
    v.extend_from_slice(&crc32(&idat).to_be_bytes());
    v
}

#[test]
fn decode_image_rejects_garbage_empty_and_oversized() {
    assert_eq!(code_of(qr::decode_image(&[])), "image_unreadable");
    assert_eq!(
        code_of(qr::decode_image(b"definitely not an image")),
        "image_unreadable"
    );
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut junk = vec![0u8; 4096];
    rng.fill_bytes(&mut junk);
    assert_eq!(code_of(qr::decode_image(&junk)), "image_unreadable");
    // A GIF header: a format this build does not read.
    assert_eq!(
        code_of(qr::decode_image(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")),
        "image_unreadable"
    );
    // A truncated PNG: header fine, no data.
    assert_eq!(
        code_of(qr::decode_image(&png_header(64, 64))),
        "image_unreadable"
    );
    // Announced dimensions are refused before any pixel is decoded.
    assert_eq!(
        code_of(qr::decode_image(&png_header(10_000, 10_000))),
        "image_too_large"
    );
    assert_eq!(
        code_of(qr::decode_image(&png_header(20_000, 1))),
        "image_too_large"
    );
    // Over 20 MiB of bytes.
    assert_eq!(
        code_of(qr::decode_image(&vec![0u8; MAX_IMAGE_BYTES + 1])),
        "image_too_large"
    );
    // A truncated real PNG and JPEG.
    let f = render_frame(&seeded_pairing_text(8), 4);
    for format in [image::ImageFormat::Png, image::ImageFormat::Jpeg] {
        let bytes = encode_as(&f, format);
        for cut in [8, 30, bytes.len() / 2] {
            let r = qr::decode_image(&bytes[..cut]);
            assert!(r.is_err(), "{format:?} cut at {cut}");
        }
    }
}

#[test]
fn decode_luma_rejects_bad_frames() {
    assert_eq!(code_of(qr::decode_luma(0, 10, &[])), "invalid_input");
    assert_eq!(code_of(qr::decode_luma(10, 0, &[])), "invalid_input");
    assert_eq!(code_of(qr::decode_luma(10, 10, &[0; 99])), "invalid_input");
    assert_eq!(code_of(qr::decode_luma(10, 10, &[0; 101])), "invalid_input");
    assert_eq!(
        code_of(qr::decode_luma(u32::MAX, u32::MAX, &[])),
        "image_too_large"
    );
    assert_eq!(code_of(qr::decode_luma(20_000, 1, &[])), "image_too_large");
    assert_eq!(code_of(qr::decode_luma(8000, 8000, &[])), "image_too_large");
}

#[test]
fn no_qr_in_plain_images() {
    let (w, h) = (320u32, 240u32);
    let gradient: Vec<u8> = (0..w * h).map(|i| ((i % w) * 255 / w) as u8).collect();
    let e = qr::decode_luma(w, h, &gradient).expect_err("nothing there");
    assert_eq!(e.code, "no_qr");
    assert_eq!(e.message, "no QR code found in the image");
    assert_eq!(
        code_of(qr::decode_luma(w, h, &vec![128; (w * h) as usize])),
        "no_qr"
    );
    let mut noise = vec![0u8; (w * h) as usize];
    ChaCha20Rng::seed_from_u64(10).fill_bytes(&mut noise);
    assert_eq!(code_of(qr::decode_luma(w, h, &noise)), "no_qr");
    let png = encode_as(&Frame { w, h, px: gradient }, image::ImageFormat::Png);
    assert_eq!(code_of(qr::decode_image(&png)), "no_qr");
    assert_eq!(code_of(qr::decode_luma(1, 1, &[0])), "no_qr");
}

/// Random small frames and byte strings: errors, never a panic.
#[test]
fn random_inputs_do_not_panic() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    for _ in 0..200 {
        let w = 1 + rng.next_u32() % 64;
        let h = 1 + rng.next_u32() % 64;
        let mut px = vec![0u8; (w * h) as usize];
        rng.fill_bytes(&mut px);
        // Blocky noise looks more like finder patterns than white noise does.
        let block = 1 + rng.next_u32() % 4;
        let px: Vec<u8> = (0..w * h)
            .map(|i| px[(((i / w) / block * block) * w + (i % w) / block * block) as usize] & 0x80)
            .map(|v| if v != 0 { 255 } else { 0 })
            .collect();
        let _ = qr::decode_luma(w, h, &px);
    }
    let png = encode_as(
        &render_frame(&seeded_pairing_text(12), 2),
        image::ImageFormat::Png,
    );
    for _ in 0..100 {
        let mut b = png.clone();
        let i = rng.next_u32() as usize % b.len();
        b[i] ^= 1 << (rng.next_u32() % 8);
        let _ = qr::decode_image(&b);
    }
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

#[test]
fn classify_carekey_any_case_normalised() {
    let text = pairing_text();
    assert_eq!(
        qr::classify(&text).expect("carekey"),
        ScannedPayload::Carekey(text.clone())
    );
    let lower = format!("  {}\n", text.to_ascii_lowercase());
    let p = qr::classify(&lower).expect("carekey");
    assert_eq!(p, ScannedPayload::Carekey(text.clone()));
    assert_eq!(p.kind(), "carekey");
    // The normalised text is what the core parses.
    QrPayload::parse(p.text()).expect("parses");
    assert_eq!(p.into_carekey().expect("carekey"), text);
}

#[test]
fn classify_smart_health_links_and_cards() {
    let shl = "shlink:/eyJ1cmwiOiJodHRwczovL2V4YW1wbGUuY29tL3NobC8xIiwiZmxhZyI6IkxQIn0";
    assert_eq!(
        qr::classify(shl).expect("shl"),
        ScannedPayload::SmartHealthLink(shl.to_owned())
    );
    let viewer = format!("https://viewer.example/#{shl}");
    assert_eq!(
        qr::classify(&viewer).expect("viewer shl"),
        ScannedPayload::SmartHealthLink(shl.to_owned())
    );
    let viewer = format!("https://viewer.example/path?x=1#{shl}");
    assert_eq!(
        qr::classify(&viewer).expect("viewer shl"),
        ScannedPayload::SmartHealthLink(shl.to_owned())
    );
    let shc = "shc:/56762909524320603460292437404460312229595326546034602925407728043360287028647167452228092861333145643765314159064022030645045908564355034142454136403706366541713724123638030437562204673740753232392543344";
    let p = qr::classify(shc).expect("shc");
    assert_eq!(p, ScannedPayload::SmartHealthCard(shc.to_owned()));
    assert_eq!(p.kind(), "smart_health_card");
    // Uppercase scheme (QR alphanumeric mode) and a chunked card.
    let p = qr::classify("SHC:/1/2/5676290952432060346029").expect("shc");
    assert_eq!(
        p,
        ScannedPayload::SmartHealthCard("shc:/1/2/5676290952432060346029".to_owned())
    );

    // The session layer's answer for both: honest not_supported.
    let e = qr::classify(shl)
        .expect("shl")
        .into_carekey()
        .expect_err("not yet");
    assert_eq!(e.code, "not_supported");
    assert_eq!(e.message, "SMART Health Links are not supported yet");
    let e = qr::not_supported_yet(&qr::classify(shc).expect("shc")).expect("not yet");
    assert_eq!(e.code, "not_supported");
    assert_eq!(e.message, "SMART Health Cards are not supported yet");
    assert!(qr::not_supported_yet(&qr::classify(&pairing_text()).expect("ck")).is_none());
}

#[test]
fn classify_rejects_unknown_text() {
    for text in [
        "",
        "   ",
        "hello",
        "https://example.com/",
        "https://viewer.example/#notshlink",
        "CAREKEY:",
        "shlink:/",
        "shc:/",
        "shc:/abc",
        "WIFI:S:net;T:WPA;P:pw;;",
        "xCAREKEY:ABC",
    ] {
        let e = qr::classify(text).expect_err(text);
        assert_eq!(e.code, "not_supported", "{text:?}");
        assert_eq!(
            e.message,
            "this QR code is not a Carekey, SMART Health Link or SMART Health Card code"
        );
    }
    let e = qr::classify(&"A".repeat(MAX_QR_TEXT_LEN + 1)).expect_err("too long");
    assert_eq!(e.code, "invalid_input");
    // Multi-byte text near the bound: no panic on char boundaries.
    let _ = qr::classify(&"é".repeat(MAX_QR_TEXT_LEN / 2));
    let _ = qr::classify("ü");
    let _ = qr::classify("carekeü");
}

#[test]
fn scanned_payload_serialises_with_kind_tag() {
    let v =
        serde_json::to_value(ScannedPayload::SmartHealthLink("shlink:/x".into())).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"kind": "smart_health_link", "text": "shlink:/x"})
    );
    let v = serde_json::to_value(ScannedPayload::Carekey("CAREKEY:AB".into())).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"kind": "carekey", "text": "CAREKEY:AB"})
    );
    let back: ScannedPayload =
        serde_json::from_value(serde_json::json!({"kind": "smart_health_card", "text": "shc:/1"}))
            .expect("parses");
    assert_eq!(back, ScannedPayload::SmartHealthCard("shc:/1".into()));
}

/// Writes the fuzz seed corpus when `CAREKEY_WRITE_QR_CORPUS` names a directory (run by hand:
/// `CAREKEY_WRITE_QR_CORPUS=fuzz/corpus/qr_image cargo test -p carekey-app --test qr corpus`).
#[test]
fn write_fuzz_corpus_when_asked() {
    let Some(dir) = std::env::var_os("CAREKEY_WRITE_QR_CORPUS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    let text = seeded_pairing_text(13);
    let f = render_frame(&text, 2);
    let png = encode_as(&f, image::ImageFormat::Png);
    assert_eq!(
        qr::decode_image(&png).expect("seed decodes"),
        vec![text.clone()]
    );
    std::fs::write(dir.join("pairing_2px.png"), &png).expect("write");
    std::fs::write(dir.join("pairing.txt"), &text).expect("write");
    std::fs::write(
        dir.join("viewer_shlink.txt"),
        "https://viewer.example/#shlink:/eyJ1cmwiOiJodHRwczovL2V4In0",
    )
    .expect("write");
    let small = render_frame("CAREKEY:AB", 2);
    std::fs::write(
        dir.join("short_2px.png"),
        encode_as(&small, image::ImageFormat::Png),
    )
    .expect("write");
    // The fuzz target's raw-frame layout: width (u16 LE), one spare byte, then the pixels.
    let mut raw = u16::try_from(small.w)
        .expect("small")
        .to_le_bytes()
        .to_vec();
    raw.push(0);
    raw.extend_from_slice(&small.px);
    assert_eq!(
        qr::decode_luma(small.w, small.h, &raw[3..]).expect("raw seed decodes"),
        vec!["CAREKEY:AB".to_owned()]
    );
    std::fs::write(dir.join("short_2px.luma"), &raw).expect("write");
    std::fs::write(
        dir.join("short_2px.jpg"),
        encode_as(&small, image::ImageFormat::Jpeg),
    )
    .expect("write");
}
