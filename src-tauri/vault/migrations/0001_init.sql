-- carekey-vault schema 1. Nothing in clear but random ids, MACs (blind indexes) and sizes:
-- every value is an EncryptedValue (version || nonce || XChaCha20-Poly1305 ciphertext).

-- File header: Argon2id parameters and salt, the passphrase-wrapped root secret, the vault id,
-- a key-check value, and the signed head of the local audit chain.
CREATE TABLE header (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

-- One row per FHIR resource. id = HMAC(records key, "Type/id"); key = the record's content key
-- wrapped by the vault wrap key; summary and body sealed under the content key.
-- source = HMAC(sources key, share id) for records received through a share (doctor app).
CREATE TABLE records (
    id      BLOB PRIMARY KEY,
    key     BLOB NOT NULL,
    summary BLOB NOT NULL,
    body    BLOB NOT NULL,
    source  BLOB
) STRICT;
CREATE INDEX records_source ON records(source) WHERE source IS NOT NULL;

-- Blind index: term = HMAC(terms key, "type:Observation" | "code:system|code" | "cat:lab").
CREATE TABLE terms (
    term   BLOB NOT NULL,
    record BLOB NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    PRIMARY KEY (term, record)
) STRICT, WITHOUT ROWID;
CREATE INDEX terms_record ON terms(record);

-- Attachments (DocumentReference / Binary content): random id, own content key, sealed meta,
-- chunk-stream header; chunks sealed with the core's STREAM construction.
CREATE TABLE attachments (
    id     BLOB PRIMARY KEY,
    record BLOB NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    key    BLOB NOT NULL,
    meta   BLOB NOT NULL,
    header BLOB NOT NULL
) STRICT;
CREATE INDEX attachments_record ON attachments(record);

CREATE TABLE chunks (
    attachment BLOB NOT NULL REFERENCES attachments(id) ON DELETE CASCADE,
    idx        INTEGER NOT NULL,
    data       BLOB NOT NULL,
    PRIMARY KEY (attachment, idx)
) STRICT, WITHOUT ROWID;

-- Share sources known to a doctor's vault: tag = HMAC(sources key, share id); value sealed
-- (share id, expiry, label).
CREATE TABLE sources (
    tag   BLOB PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

-- Local audit chain: core audit::Entry bytes whose body is sealed under the vault key.
CREATE TABLE audit (
    seq   INTEGER PRIMARY KEY,
    entry BLOB NOT NULL
) STRICT;
