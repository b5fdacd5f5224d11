//! QR codes: rendering the patient's pairing QR as SVG, decoding QR codes from image files and
//! camera frames, and routing what was scanned.
//!
//! - [`render_svg`] / [`QrMatrix::encode`]: text → QR (ECC M). Text entirely in the QR
//!   alphanumeric set (the pairing payload `CAREKEY:` + uppercase base32) is encoded as one
//!   alphanumeric segment, which keeps a real pairing payload at version ≤ 7 (45 modules).
//! - [`decode_image`] (PNG/JPEG bytes) and [`decode_luma`] (8-bit grayscale frames): every QR
//!   text found. rxing with TryHarder and AlsoInverted, then one retry on a contrast-stretched
//!   copy. CPU-bound (about 2 ms for a 720p frame holding a code, 25–40 ms for one without,
//!   as every pass runs): async callers run them on a blocking thread.
//! - [`classify`]: scanned text → [`ScannedPayload`] (Carekey pairing, SMART Health Link,
//!   SMART Health Card), or `not_supported`.
//!
//! Error codes of this module (the [`AppError::code`] values):
//! - `invalid_input`: a malformed argument (wrong luma length, zero dimension, text too long,
//!   an empty text to render).
//! - `image_too_large`: the file is over [`MAX_IMAGE_BYTES`] or the image over
//!   [`MAX_IMAGE_PIXELS`] / [`MAX_IMAGE_SIDE`]; checked before anything is decoded.
//! - `image_unreadable`: not a PNG or JPEG, or a corrupt one.
//! - `no_qr`: the image was read but holds no readable QR code.
//! - `not_supported`: a QR code of a kind this build does not handle (see [`classify`] and
//!   [`ScannedPayload::into_carekey`]).
//!
//! The pairing text carries a one-time secret, so the `Debug` forms of [`QrMatrix`], [`Svg`]
//! and [`ScannedPayload`] show only sizes and kinds, never the text or the modules.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use qrcode::bits::Bits;
use qrcode::{Color, EcLevel, QrCode, Version};
use rxing::common::HybridBinarizer;
use rxing::multi::MultipleBarcodeReader;
use rxing::qrcode::QRCodeReader;
use rxing::qrcode::cpp_port::QrReader;
use rxing::{BarcodeFormat, BinaryBitmap, DecodeHints, Luma8Source, Reader};
use serde::{Deserialize, Serialize};

use crate::error::{AppError, Result};

/// Longest text [`render_svg`] accepts and [`classify`] looks at, in bytes. A QR code at ECC M
/// holds at most 2331 bytes (3391 alphanumeric characters); a SMART Health Card QR is at most
/// 1195 characters and a SMART Health Link far shorter.
pub const MAX_QR_TEXT_LEN: usize = 4096;

/// Longest `aria-label` [`render_svg`] writes, in characters (longer labels are cut).
pub const MAX_LABEL_CHARS: usize = 200;

/// Quiet zone around the symbol, in modules (ISO/IEC 18004 asks for 4).
pub const QUIET_ZONE: u32 = 4;

/// Largest encoded image file [`decode_image`] reads: 20 MiB.
pub const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;

/// Most pixels an image or frame may have (about 40 megapixels).
pub const MAX_IMAGE_PIXELS: u64 = 40_000_000;

/// Longest side of an image or frame, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// The scheme of the Carekey pairing text (the core's [`carekey_core::pairing::QR_SCHEME`]).
const CAREKEY_SCHEME: &str = carekey_core::pairing::QR_SCHEME;
const SHLINK_SCHEME: &str = "shlink:/";
const SHC_SCHEME: &str = "shc:/";

const NOT_SUPPORTED_MSG: &str =
    "this QR code is not a Carekey, SMART Health Link or SMART Health Card code";
const NO_QR_MSG: &str = "no QR code found in the image";

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

/// How the text was segmented in the QR symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QrMode {
    /// One alphanumeric segment (0–9, A–Z, space, `$%*+-./:`): 5.5 bits per character.
    Alphanumeric,
    /// Segments chosen by the encoder; characters outside the alphanumeric set use byte mode.
    Mixed,
}

/// An encoded QR symbol (ECC M): its module matrix, without the quiet zone.
#[derive(Clone, PartialEq, Eq)]
pub struct QrMatrix {
    version: u8,
    modules: u32,
    mode: QrMode,
    /// Row-major, `modules * modules` entries, `true` = dark.
    dark: Vec<bool>,
}

impl core::fmt::Debug for QrMatrix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("QrMatrix")
            .field("version", &self.version)
            .field("modules", &self.modules)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Whether every byte of `text` is in the QR alphanumeric set.
fn is_alphanumeric_set(text: &[u8]) -> bool {
    text.iter()
        .all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'Z' | b' ' | b'$' | b'%' | b'*' | b'+' | b'-' | b'.' | b'/' | b':'))
}

fn too_long() -> AppError {
    AppError::invalid_input("QR text: too long for a QR code")
}

/// Text as it goes into the symbol: a `carekey:` scheme in another case becomes `CAREKEY:` when
/// that is all that keeps the text out of the alphanumeric set (the scheme is case-insensitive).
fn symbol_text(text: &str) -> std::borrow::Cow<'_, str> {
    if let Some(scheme) = text.get(..CAREKEY_SCHEME.len())
        && scheme != CAREKEY_SCHEME
        && scheme.eq_ignore_ascii_case(CAREKEY_SCHEME)
        && is_alphanumeric_set(&text.as_bytes()[CAREKEY_SCHEME.len()..])
    {
        return std::borrow::Cow::Owned(format!(
            "{CAREKEY_SCHEME}{}",
            &text[CAREKEY_SCHEME.len()..]
        ));
    }
    std::borrow::Cow::Borrowed(text)
}

/// The smallest symbol holding `data` as one alphanumeric segment at ECC M.
fn encode_alphanumeric(data: &[u8]) -> Result<QrCode> {
    for v in 1..=40 {
        let mut bits = Bits::new(Version::Normal(v));
        if bits.push_alphanumeric_data(data).is_err() || bits.push_terminator(EcLevel::M).is_err() {
            continue;
        }
        return QrCode::with_bits(bits, EcLevel::M).map_err(|_| too_long());
    }
    Err(too_long())
}

impl QrMatrix {
    /// Encodes `text` at ECC M in the smallest version that holds it: one alphanumeric segment
    /// when the text is in the alphanumeric set (after uppercasing a `carekey:` scheme),
    /// otherwise the encoder's optimal segmentation.
    ///
    /// Errors with `invalid_input` when the text is empty, longer than [`MAX_QR_TEXT_LEN`], or
    /// too long for the largest QR version.
    pub fn encode(text: &str) -> Result<Self> {
        if text.is_empty() {
            return Err(AppError::invalid_input("QR text: empty"));
        }
        if text.len() > MAX_QR_TEXT_LEN {
            return Err(too_long());
        }
        let text = symbol_text(text);
        let (code, mode) = if is_alphanumeric_set(text.as_bytes()) {
            (encode_alphanumeric(text.as_bytes())?, QrMode::Alphanumeric)
        } else {
            (
                QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
                    .map_err(|_| too_long())?,
                QrMode::Mixed,
            )
        };
        let version = match code.version() {
            Version::Normal(v) => u8::try_from(v).map_err(|_| too_long())?,
            // Only normal versions are ever requested above.
            Version::Micro(_) => return Err(too_long()),
        };
        let modules = u32::try_from(code.width()).map_err(|_| too_long())?;
        let dark = code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect();
        Ok(Self {
            version,
            modules,
            mode,
            dark,
        })
    }

    /// QR version, 1–40 (version 7 is 45 modules wide).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Width of the symbol in modules, without the quiet zone (`17 + 4 × version`).
    pub fn modules(&self) -> u32 {
        self.modules
    }

    /// How the text was segmented.
    pub fn mode(&self) -> QrMode {
        self.mode
    }

    /// Whether the module at column `x`, row `y` (0-based, quiet zone excluded) is dark; `false`
    /// outside the symbol.
    pub fn is_dark(&self, x: u32, y: u32) -> bool {
        if x >= self.modules || y >= self.modules {
            return false;
        }
        let i = y as usize * self.modules as usize + x as usize;
        self.dark.get(i).copied().unwrap_or(false)
    }

    /// The symbol as SVG: black modules on white, a [`QUIET_ZONE`]-module quiet zone, one unit
    /// per module in a `viewBox` without `width`/`height` (the UI sizes it), `role="img"` and
    /// `aria-label` = `label` (XML-escaped, control characters dropped, at most
    /// [`MAX_LABEL_CHARS`] characters).
    pub fn to_svg(&self, label: &str) -> Svg {
        let size = self.modules + 2 * QUIET_ZONE;
        let mut path = String::with_capacity(self.dark.len() * 4);
        for y in 0..self.modules {
            let mut x = 0;
            while x < self.modules {
                if !self.is_dark(x, y) {
                    x += 1;
                    continue;
                }
                let start = x;
                while x < self.modules && self.is_dark(x, y) {
                    x += 1;
                }
                let run = x - start;
                path.push_str(&format!(
                    "M{} {}h{run}v1h-{run}z",
                    start + QUIET_ZONE,
                    y + QUIET_ZONE
                ));
            }
        }
        let svg = format!(
            concat!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" "#,
                r#"role="img" aria-label="{label}" shape-rendering="crispEdges">"#,
                r##"<rect width="{size}" height="{size}" fill="#ffffff"/>"##,
                r##"<path fill="#000000" d="{path}"/></svg>"##
            ),
            size = size,
            label = escape_label(label),
            path = path,
        );
        Svg {
            svg,
            version: self.version,
            modules: self.modules,
            mode: self.mode,
        }
    }
}

fn escape_label(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    for c in label.chars().take(MAX_LABEL_CHARS) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A rendered QR code, as the UI receives it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Svg {
    /// The SVG document (see [`QrMatrix::to_svg`]).
    pub svg: String,
    /// QR version, 1–40.
    pub version: u8,
    /// Width of the symbol in modules, without the quiet zone.
    pub modules: u32,
    /// How the text was segmented.
    pub mode: QrMode,
}

impl core::fmt::Debug for Svg {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Svg")
            .field("version", &self.version)
            .field("modules", &self.modules)
            .field("mode", &self.mode)
            .field("svg_len", &self.svg.len())
            .finish_non_exhaustive()
    }
}

/// Renders `text` as an SVG QR code (ECC M) labelled `label` for screen readers: see
/// [`QrMatrix::encode`] (segmentation, errors) and [`QrMatrix::to_svg`] (the document).
///
/// Callers pass the pairing text as the core writes it (`CAREKEY:` + uppercase base32), which
/// stays alphanumeric and at version ≤ 7.
pub fn render_svg(text: &str, label: &str) -> Result<Svg> {
    Ok(QrMatrix::encode(text)?.to_svg(label))
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

fn image_too_large() -> AppError {
    AppError::new(
        "image_too_large",
        "the image is too large to scan; use a smaller picture of the QR code",
    )
}

fn image_unreadable() -> AppError {
    AppError::new(
        "image_unreadable",
        "the file could not be read as a PNG or JPEG image",
    )
}

fn no_qr() -> AppError {
    AppError::new("no_qr", NO_QR_MSG)
}

fn check_dimensions(width: u32, height: u32) -> Result<()> {
    if width > MAX_IMAGE_SIDE
        || height > MAX_IMAGE_SIDE
        || u64::from(width) * u64::from(height) > MAX_IMAGE_PIXELS
    {
        return Err(image_too_large());
    }
    Ok(())
}

/// Reads every QR code in a PNG or JPEG file.
///
/// The file size ([`MAX_IMAGE_BYTES`]) and the image dimensions ([`MAX_IMAGE_PIXELS`],
/// [`MAX_IMAGE_SIDE`], read from the header) are checked before any pixel is decoded. Errors:
/// `image_too_large`, `image_unreadable` (not PNG/JPEG, corrupt), `no_qr`.
pub fn decode_image(bytes: &[u8]) -> Result<Vec<String>> {
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(image_too_large());
    }
    let reader = || -> Result<image::ImageReader<Cursor<&[u8]>>> {
        let r = image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|_| image_unreadable())?;
        match r.format() {
            Some(image::ImageFormat::Png | image::ImageFormat::Jpeg) => Ok(r),
            _ => Err(image_unreadable()),
        }
    };
    let (width, height) = reader()?
        .into_dimensions()
        .map_err(|_| image_unreadable())?;
    if width == 0 || height == 0 {
        return Err(image_unreadable());
    }
    check_dimensions(width, height)?;

    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    // 16-bit RGBA at the pixel cap, plus headroom for the decoders' own buffers.
    limits.max_alloc = Some(MAX_IMAGE_PIXELS * 8 + 64 * 1024 * 1024);
    let mut r = reader()?;
    r.limits(limits);
    let img = r.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => image_too_large(),
        _ => image_unreadable(),
    })?;
    let luma = img.into_luma8();
    let (w, h) = luma.dimensions();
    scan(w, h, luma.as_raw())
}

/// Reads every QR code in an 8-bit grayscale frame (`width × height` bytes, row-major, no
/// padding), e.g. the Y plane of a camera frame.
///
/// Errors: `invalid_input` (zero dimension, `luma.len() != width × height`),
/// `image_too_large` (over [`MAX_IMAGE_PIXELS`] / [`MAX_IMAGE_SIDE`]), `no_qr`.
pub fn decode_luma(width: u32, height: u32, luma: &[u8]) -> Result<Vec<String>> {
    if width == 0 || height == 0 {
        return Err(AppError::invalid_input(
            "frame: width and height must be > 0",
        ));
    }
    check_dimensions(width, height)?;
    if luma.len() as u64 != u64::from(width) * u64::from(height) {
        return Err(AppError::invalid_input(
            "frame: pixel data length is not width × height",
        ));
    }
    scan(width, height, luma)
}

fn hints() -> DecodeHints {
    DecodeHints {
        TryHarder: Some(true),
        AlsoInverted: Some(true),
        PossibleFormats: Some([BarcodeFormat::QR_CODE].into_iter().collect()),
        ..DecodeHints::default()
    }
}

/// One pass over a frame, as rxing's `MultiFormatReader` does for QR (its detector port, then
/// the classic detector; then the same on the inverted image), but collecting every symbol the
/// first detector finds.
fn scan_once(width: u32, height: u32, luma: &[u8], hints: &DecodeHints) -> Vec<String> {
    let Ok(source) = Luma8Source::new_with_slice(luma, width, height) else {
        return Vec::new();
    };
    let mut bitmap = BinaryBitmap::new(HybridBinarizer::new(source));
    for inverted in [false, true] {
        if inverted {
            bitmap.invert();
        }
        if let Ok(found) = QrReader.decode_multiple_with_hints(&mut bitmap, hints) {
            let mut texts: Vec<String> = Vec::with_capacity(found.len());
            for r in found {
                let t = r.getText();
                if !texts.iter().any(|s| s == t) {
                    texts.push(t.to_owned());
                }
            }
            if !texts.is_empty() {
                return texts;
            }
        }
        if let Ok(r) = QRCodeReader.decode_with_hints(&mut bitmap, hints) {
            return vec![r.getText().to_owned()];
        }
    }
    Vec::new()
}

/// A copy with the 0.5th–99.5th percentile of luminance stretched over 0–255, or `None` when
/// that would barely change the frame (the range already spans ≥ 224 levels, a gain under
/// 1.14: the binariser would see the same edges) or the frame is flat (≤ 8 levels).
fn contrast_stretched(luma: &[u8]) -> Option<Vec<u8>> {
    let mut hist = [0u64; 256];
    for &p in luma {
        hist[usize::from(p)] += 1;
    }
    let clip = luma.len() as u64 / 200;
    let mut acc = 0;
    let mut lo = 0usize;
    for (i, &n) in hist.iter().enumerate() {
        acc += n;
        if acc > clip {
            lo = i;
            break;
        }
    }
    acc = 0;
    let mut hi = 255usize;
    for (i, &n) in hist.iter().enumerate().rev() {
        acc += n;
        if acc > clip {
            hi = i;
            break;
        }
    }
    if hi <= lo + 8 || hi - lo >= 224 {
        return None;
    }
    let span = (hi - lo) as u32;
    let mut lut = [0u8; 256];
    for (i, v) in lut.iter_mut().enumerate() {
        let x = (i.clamp(lo, hi) - lo) as u32;
        *v = u8::try_from((x * 255 + span / 2) / span).unwrap_or(u8::MAX);
    }
    Some(luma.iter().map(|&p| lut[usize::from(p)]).collect())
}

/// Validated frame → texts; the decoder runs under `catch_unwind` so a decoder bug on a hostile
/// image is an error, not a crash.
fn scan(width: u32, height: u32, luma: &[u8]) -> Result<Vec<String>> {
    let hints = hints();
    let run = || {
        let found = scan_once(width, height, luma, &hints);
        if !found.is_empty() {
            return found;
        }
        match contrast_stretched(luma) {
            Some(stretched) => scan_once(width, height, &stretched, &hints),
            None => Vec::new(),
        }
    };
    let found = catch_unwind(AssertUnwindSafe(run)).map_err(|_| no_qr())?;
    if found.is_empty() {
        return Err(no_qr());
    }
    Ok(found)
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

/// What a scanned QR code is, with its text normalised.
///
/// Serialises as `{"kind": "carekey" | "smart_health_link" | "smart_health_card", "text": …}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "text", rename_all = "snake_case")]
pub enum ScannedPayload {
    /// A Carekey pairing QR: `CAREKEY:` + the base32 body, uppercased (parse it with
    /// [`carekey_core::pairing::QrPayload::parse`]).
    Carekey(String),
    /// A SMART Health Link: `shlink:/…` (taken out of a viewer URL's `#shlink:/…` fragment).
    SmartHealthLink(String),
    /// A SMART Health Card: `shc:/…` (numeric JWS, possibly one chunk `shc:/n/m/…`).
    SmartHealthCard(String),
}

impl core::fmt::Debug for ScannedPayload {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ScannedPayload")
            .field("kind", &self.kind())
            .field("len", &self.text().len())
            .finish()
    }
}

impl ScannedPayload {
    /// The serde tag: `carekey`, `smart_health_link` or `smart_health_card`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Carekey(_) => "carekey",
            Self::SmartHealthLink(_) => "smart_health_link",
            Self::SmartHealthCard(_) => "smart_health_card",
        }
    }

    /// The normalised text.
    pub fn text(&self) -> &str {
        match self {
            Self::Carekey(t) | Self::SmartHealthLink(t) | Self::SmartHealthCard(t) => t,
        }
    }

    /// The Carekey pairing text, or the [`not_supported_yet`] error for the SMART kinds.
    pub fn into_carekey(self) -> Result<String> {
        match self {
            Self::Carekey(t) => Ok(t),
            other => Err(not_supported_yet(&other)
                .unwrap_or_else(|| AppError::not_supported(NOT_SUPPORTED_MSG))),
        }
    }
}

/// The error the session layer returns for a payload kind this build recognises but cannot
/// open yet (`not_supported`: "SMART Health Links are not supported yet", "SMART Health Cards
/// are not supported yet"); `None` for a Carekey pairing QR.
pub fn not_supported_yet(payload: &ScannedPayload) -> Option<AppError> {
    match payload {
        ScannedPayload::Carekey(_) => None,
        ScannedPayload::SmartHealthLink(_) => Some(AppError::not_supported(
            "SMART Health Links are not supported yet",
        )),
        ScannedPayload::SmartHealthCard(_) => Some(AppError::not_supported(
            "SMART Health Cards are not supported yet",
        )),
    }
}

/// `text` without `prefix` when it starts with it, ASCII case-insensitively.
fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

/// Routes scanned text (surrounding whitespace trimmed, schemes matched case-insensitively):
/// - `CAREKEY:…` → [`ScannedPayload::Carekey`], uppercased (the scheme and base32 are
///   case-insensitive);
/// - `shlink:/…`, or an `http(s)://` viewer URL whose fragment is `#shlink:/…` →
///   [`ScannedPayload::SmartHealthLink`] with the `shlink:/…` part;
/// - `shc:/…` → [`ScannedPayload::SmartHealthCard`].
///
/// Errors: `invalid_input` for text longer than [`MAX_QR_TEXT_LEN`] (checked first);
/// `not_supported` ("this QR code is not a Carekey, SMART Health Link or SMART Health Card
/// code") for anything else, including a scheme with nothing after it.
pub fn classify(text: &str) -> Result<ScannedPayload> {
    if text.len() > MAX_QR_TEXT_LEN {
        return Err(AppError::invalid_input(
            "scanned text: longer than any supported QR code",
        ));
    }
    let t = text.trim();
    let unsupported = || AppError::not_supported(NOT_SUPPORTED_MSG);

    if let Some(body) = strip_prefix_ci(t, CAREKEY_SCHEME) {
        if body.is_empty() {
            return Err(unsupported());
        }
        return Ok(ScannedPayload::Carekey(format!(
            "{CAREKEY_SCHEME}{}",
            body.to_ascii_uppercase()
        )));
    }
    if let Some(body) = strip_prefix_ci(t, SHLINK_SCHEME) {
        return shlink(body).ok_or_else(unsupported);
    }
    if let Some(body) = strip_prefix_ci(t, SHC_SCHEME) {
        if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit() || b == b'/') {
            return Err(unsupported());
        }
        return Ok(ScannedPayload::SmartHealthCard(format!(
            "{SHC_SCHEME}{body}"
        )));
    }
    if strip_prefix_ci(t, "https://").is_some() || strip_prefix_ci(t, "http://").is_some() {
        // SMART Health Links spec: a viewer URL carries the link as its fragment.
        if let Some((_, fragment)) = t.split_once('#')
            && let Some(body) = strip_prefix_ci(fragment, SHLINK_SCHEME)
        {
            return shlink(body).ok_or_else(unsupported);
        }
    }
    Err(unsupported())
}

/// `shlink:/` + a non-empty body without whitespace.
fn shlink(body: &str) -> Option<ScannedPayload> {
    if body.is_empty()
        || body
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return None;
    }
    Some(ScannedPayload::SmartHealthLink(format!(
        "{SHLINK_SCHEME}{body}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &str = "CAREKEY:AEBQGBAHCKMEQ2KWFQ3FMXI3QLGDF7NKQ5K3TNBVSMDXQ7LPGXEJMVYS6SZDPXU4J4RVYJU6ZLXF3QGY3BGNAB6V7LKFJKQHYJ5XBMQ7ZIO5RR2EVZYXVEGMAJJTQNS5GEQ7IO3X4NRCYEM5MXMOUZRZSF2NA3LEPZOJZA";

    #[test]
    fn alphanumeric_set_and_scheme() {
        assert!(is_alphanumeric_set(b"CAREKEY:ABC234 $%*+-./"));
        assert!(!is_alphanumeric_set(b"carekey:ABC"));
        assert_eq!(symbol_text("carekey:ABC"), "CAREKEY:ABC");
        // Only the scheme is touched, and only when that makes the text alphanumeric.
        assert_eq!(symbol_text("carekey:abc"), "carekey:abc");
        assert_eq!(symbol_text("hello"), "hello");
    }

    #[test]
    fn lowercase_scheme_still_alphanumeric() {
        let upper = QrMatrix::encode(PAYLOAD).expect("encodes");
        let lower = QrMatrix::encode(&PAYLOAD.replacen("CAREKEY", "carekey", 1)).expect("encodes");
        assert_eq!(upper, lower);
        assert_eq!(upper.mode(), QrMode::Alphanumeric);
        let bytes = QrMatrix::encode(&PAYLOAD.to_ascii_lowercase()).expect("encodes");
        assert_eq!(bytes.mode(), QrMode::Mixed);
        assert!(bytes.version() > upper.version());
    }

    /// The SVG path, parsed back, draws exactly the module matrix.
    #[test]
    fn svg_path_matches_matrix() {
        let m = QrMatrix::encode(PAYLOAD).expect("encodes");
        let svg = m.to_svg("QR").svg;
        let d = svg
            .split(" d=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("path");
        let size = m.modules() + 2 * QUIET_ZONE;
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
        for y in 0..size {
            for x in 0..size {
                let want =
                    x >= QUIET_ZONE && y >= QUIET_ZONE && m.is_dark(x - QUIET_ZONE, y - QUIET_ZONE);
                assert_eq!(grid[(y * size + x) as usize], want, "module {x},{y}");
            }
        }
    }

    #[test]
    fn label_is_escaped() {
        let svg = render_svg("HELLO", "a\"b<c>&'d\u{7}").expect("renders").svg;
        assert!(svg.contains(r#"aria-label="a&quot;b&lt;c&gt;&amp;&apos;d ""#));
        assert!(!svg.contains("width=\"100"));
    }

    #[test]
    fn stretch_skips_full_range_and_flat() {
        assert_eq!(contrast_stretched(&[0, 255, 128]), None);
        assert_eq!(contrast_stretched(&[10, 240, 128]), None);
        assert_eq!(contrast_stretched(&[100; 64]), None);
        let s = contrast_stretched(&[100, 150, 125]).expect("stretches");
        assert_eq!(s, vec![0, 255, 128]);
    }

    #[test]
    fn debug_hides_text() {
        let p = classify(PAYLOAD).expect("carekey");
        assert!(!format!("{p:?}").contains("AEBQ"));
        let svg = render_svg(PAYLOAD, "QR").expect("renders");
        assert!(!format!("{svg:?}").contains("path"));
    }
}
