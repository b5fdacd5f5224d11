//! The bytes of a document's files, for the apps' viewers (PDF, image, text).
//!
//! A file is named by its record and its place in the record's document row
//! ([`crate::display::DocumentRow::attachments`]), so the viewer never handles vault ids of its
//! own making. The bytes come from the vault's attachment store or from base64 still inside
//! the resource; a file known only by `url` is not fetched: opening it would tell a third
//! server that this device holds the record.

use std::fmt;

use carekey_vault::{Record, Vault};
use zeroize::Zeroizing;

use crate::display::{self, DocKind, FileSource};
use crate::error::{AppError, Result};

/// The plaintext of one file, as the shells hand it to the viewer.
pub struct FileBytes {
    /// PDF, image, text or other: what the viewer may do with it.
    pub kind: DocKind,
    /// The MIME type the record states.
    pub content_type: Option<String>,
    /// The file itself (zeroized when dropped).
    pub bytes: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for FileBytes {
    // Patient data: only the shape.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBytes")
            .field("kind", &self.kind)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Reads file `index` of `rec` from `v`.
pub(super) fn read(v: &mut Vault, rec: &Record, index: u32) -> Result<FileBytes> {
    let index = usize::try_from(index).map_err(|_| AppError::not_found("that file"))?;
    let (att, source) =
        display::file(rec, index).ok_or_else(|| AppError::not_found("that file"))?;
    let bytes = match source {
        FileSource::Vault(id) => v.attachment(id)?,
        FileSource::Inline(b64) => display::decode_base64(b64).ok_or_else(|| {
            AppError::new(
                "file_damaged",
                "This file is damaged in the record (its data is not base64).",
            )
        })?,
        FileSource::Nowhere => {
            return Err(AppError::not_supported(
                "This file is not on this device: the record only points to where it is kept.",
            ));
        }
    };
    Ok(FileBytes {
        kind: att.kind,
        content_type: att.content_type,
        bytes,
    })
}
