//! `tests/testdata/fail_*.txt`: inputs that must be rejected, each with the valid `base` it was
//! derived from (which must be accepted, so a case cannot pass by being broken itself).
//!
//! Files are `key: value` lines; `#` starts a comment. Regenerate with
//! `cargo test -p carekey-core --test testdata -- --ignored regenerate` (deterministic: seeded).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use carekey_core::envelope::{self, Context, Envelope, ObjectKind};
use carekey_core::grant::{Grant, Policy, Scope, SignedGrant};
use carekey_core::keys::{
    ContentKey, DeviceIdentity, EpochKey, ReadToken, Role, RootSecret, SigningSecret,
};
use carekey_core::pairing::{DoctorPairing, PatientPairing, QrPayload};
use carekey_core::wire::Wire;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const URL: &str = "https://relay.carekey.health";
const EXPIRES: u32 = 1_900_000_000;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata")
}

fn kind_of(n: u8) -> ObjectKind {
    match n {
        1 => ObjectKind::RecordBlob,
        2 => ObjectKind::Manifest,
        3 => ObjectKind::Attachment,
        _ => ObjectKind::VaultValue,
    }
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn num(m: &BTreeMap<String, String>, k: &str) -> u64 {
    m[k].parse().expect("number field")
}

fn bytes(m: &BTreeMap<String, String>, k: &str) -> Vec<u8> {
    hex::decode(&m[k]).expect("hex field")
}

fn patient(seed: u64) -> PatientPairing {
    PatientPairing::start(URL, [3; 16], EXPIRES, &mut rng(seed)).expect("valid URL")
}

/// Runs one case on `input_field`; Ok(()) means accepted.
fn run(m: &BTreeMap<String, String>, field: &str) -> carekey_core::Result<()> {
    let ctx_of = |prefix: &str| {
        (
            num(m, &format!("{prefix}kind")) as u8,
            bytes(m, &format!("{prefix}id")),
            num(m, &format!("{prefix}epoch")) as u32,
        )
    };
    match m["case"].as_str() {
        "envelope" => {
            let key = ContentKey::from_bytes(bytes(m, "key").try_into().expect("32-byte key"));
            let (k, id, epoch) = if field == "base" {
                ctx_of("")
            } else {
                ctx_of("open_")
            };
            let env = Envelope::from_bytes(&bytes(m, field))?;
            envelope::open(&key, &Context::new(kind_of(k), &id, epoch), &env).map(|_| ())
        }
        "chunked" => {
            let key = ContentKey::from_bytes(bytes(m, "key").try_into().expect("32-byte key"));
            let (k, id, epoch) = ctx_of("");
            envelope::open_chunked(
                &key,
                &Context::new(kind_of(k), &id, epoch),
                &bytes(m, field),
            )
            .map(|_| ())
        }
        "signed_grant" => SignedGrant::from_bytes(&bytes(m, field)).map(|_| ()),
        "qr" => {
            let now = if field == "base" {
                num(m, "base_now")
            } else {
                num(m, "now")
            };
            QrPayload::parse(&m[field])?.check_fresh(now)
        }
        "pairing" => {
            let now = if field == "base" {
                num(m, "base_now")
            } else {
                num(m, "now")
            };
            patient(num(m, "seed"))
                .accept_reply(&bytes(m, field), now)
                .map(|_| ())
        }
        other => panic!("unknown case {other}"),
    }
}

fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').expect("key: value line");
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

#[test]
fn fail_cases_fail_and_their_bases_pass() {
    let mut ran = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir())
        .expect("testdata dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("fail_"))
        })
        .collect();
    entries.sort();
    for path in entries {
        let m = parse(&std::fs::read_to_string(&path).expect("readable"));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_owned();
        run(&m, "base").unwrap_or_else(|e| panic!("{name}: base rejected: {e}"));
        let err = run(&m, "input").expect_err(&format!("{name}: input accepted"));
        // The error must be the one the case is about.
        assert!(
            format!("{err:?}").contains(&m["expect"]),
            "{name}: expected {} got {err:?}",
            m["expect"]
        );
        ran += 1;
    }
    println!("testdata: {ran} fail_* cases rejected, each with its base accepted");
    assert!(ran >= 12, "only {ran} cases");
}

#[test]
#[ignore = "writes tests/testdata; run by hand after a format change"]
fn regenerate() {
    let d = dir();
    std::fs::create_dir_all(&d).expect("mkdir");
    let write = |name: &str, what: &str, fields: &[(&str, String)]| {
        let mut s = format!("# {what}\n");
        for (k, v) in fields {
            s.push_str(&format!("{k}: {v}\n"));
        }
        std::fs::write(d.join(format!("fail_{name}.txt")), s).expect("write");
    };
    let mut r = rng(1);
    // Envelope cases.
    let key = ContentKey::random(&mut r);
    let id = [0xab; 16];
    let env = envelope::seal(
        &key,
        &Context::new(ObjectKind::RecordBlob, &id, 7),
        b"{\"resourceType\":\"Observation\"}",
        &mut r,
    )
    .to_bytes();
    let env_case = |name: &str,
                    what: &str,
                    input: Vec<u8>,
                    okind: u8,
                    oid: &[u8],
                    oepoch: u32,
                    expect: &str| {
        write(
            name,
            what,
            &[
                ("case", "envelope".into()),
                ("expect", expect.into()),
                ("key", hex::encode(key.expose_secret())),
                ("kind", "1".into()),
                ("id", hex::encode(id)),
                ("epoch", "7".into()),
                ("open_kind", okind.to_string()),
                ("open_id", hex::encode(oid)),
                ("open_epoch", oepoch.to_string()),
                ("base", hex::encode(&env)),
                ("input", hex::encode(input)),
            ],
        );
    };
    env_case(
        "envelope_wrong_epoch",
        "a record blob opened as if it were in epoch 8",
        env.clone(),
        1,
        &id,
        8,
        "Decrypt",
    );
    env_case(
        "envelope_moved_blob_id",
        "a record blob moved to another blob id",
        env.clone(),
        1,
        &[0xac; 16],
        7,
        "Decrypt",
    );
    env_case(
        "envelope_tampered_aad_kind",
        "a record blob presented as a manifest (AAD kind differs)",
        env.clone(),
        2,
        &id,
        7,
        "Decrypt",
    );
    let mut flipped = env.clone();
    flipped[30] ^= 1;
    env_case(
        "envelope_tampered_ciphertext",
        "one ciphertext bit flipped",
        flipped,
        1,
        &id,
        7,
        "Decrypt",
    );
    let mut v2 = env.clone();
    v2[0] = 2;
    env_case(
        "envelope_wrong_version",
        "envelope version byte 2",
        v2,
        1,
        &id,
        7,
        "UnknownVersion",
    );
    env_case(
        "envelope_truncated",
        "envelope shorter than nonce + tag",
        env[..30].to_vec(),
        1,
        &id,
        7,
        "Truncated",
    );

    // Chunked streams.
    let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let (blob, _) = envelope::seal_chunked(
        &key,
        &Context::new(ObjectKind::Attachment, &id, 1),
        &data,
        1000,
        &mut r,
    )
    .expect("seals");
    let step = 1016;
    let h = 24;
    let chunk_case = |name: &str, what: &str, input: Vec<u8>, expect: &str| {
        write(
            name,
            what,
            &[
                ("case", "chunked".into()),
                ("expect", expect.into()),
                ("key", hex::encode(key.expose_secret())),
                ("kind", "3".into()),
                ("id", hex::encode(id)),
                ("epoch", "1".into()),
                ("base", hex::encode(&blob)),
                ("input", hex::encode(input)),
            ],
        );
    };
    chunk_case(
        "chunked_truncated_at_boundary",
        "attachment stream cut after 3 of 5 chunks",
        blob[..h + 3 * step].to_vec(),
        "Decrypt",
    );
    let mut reordered = blob.clone();
    reordered[h..h + step].copy_from_slice(&blob[h + step..h + 2 * step]);
    reordered[h + step..h + 2 * step].copy_from_slice(&blob[h..h + step]);
    chunk_case(
        "chunked_reordered",
        "chunks 0 and 1 swapped",
        reordered,
        "Decrypt",
    );
    let mut extended = blob.clone();
    extended.extend_from_slice(&blob[h..h + step]);
    chunk_case(
        "chunked_appended",
        "a chunk appended after the final one",
        extended,
        "Decrypt",
    );

    // Signed grant decoding.
    let patient_key = SigningSecret::random(&mut r);
    let g = Grant {
        share_id: [1; 16],
        relay_url: URL.into(),
        epoch: 1,
        keys: carekey_core::section::GrantKeys::Epoch(EpochKey::random(&mut r)),
        read_token: ReadToken::random(&mut r),
        policy: Policy::Never,
        scope: Scope::all(),
        expires_at: 2_000_000_000,
        grantee: [2; 32],
        reader_key: SigningSecret::random(&mut r).public(),
        delegation_depth: 0,
        issued_at: 1_800_000_000,
    }
    .sign(&patient_key)
    .to_bytes();
    let mut trailing = g.clone();
    trailing.push(0);
    write(
        "grant_trailing_bytes",
        "a signed grant with one extra byte",
        &[
            ("case", "signed_grant".into()),
            ("expect", "TrailingBytes".into()),
            ("base", hex::encode(&g)),
            ("input", hex::encode(trailing)),
        ],
    );
    let mut gv = g.clone();
    gv[0] = 9;
    write(
        "grant_wrong_version",
        "a signed grant with version 9",
        &[
            ("case", "signed_grant".into()),
            ("expect", "UnknownVersion".into()),
            ("base", hex::encode(&g)),
            ("input", hex::encode(gv)),
        ],
    );

    // QR and pairing.
    let seed = 42;
    let p = patient(seed);
    let qr = p.qr().to_text();
    write(
        "qr_expired",
        "a QR scanned after its expiry",
        &[
            ("case", "qr".into()),
            ("expect", "Expired".into()),
            ("base_now", (EXPIRES - 10).to_string()),
            ("now", (EXPIRES + 1).to_string()),
            ("base", qr.clone()),
            ("input", qr.clone()),
        ],
    );
    write(
        "qr_foreign_scheme",
        "a QR of another scheme",
        &[
            ("case", "qr".into()),
            ("expect", "Encoding".into()),
            ("base_now", "0".into()),
            ("now", "0".into()),
            ("base", qr.clone()),
            ("input", qr.replacen("CAREKEY:", "SHLINK:/", 1)),
        ],
    );
    let doctor = DeviceIdentity::from_root(&RootSecret::random(&mut r));
    let card = doctor
        .card("Dr. Test", Role::Doctor, Some("L-9"), 1)
        .expect("card");
    let reader = SigningSecret::random(&mut r).public();
    let (_, reply) = DoctorPairing::respond(
        p.qr(),
        &doctor,
        &card,
        &reader,
        b"doctor-mailbox",
        0,
        &mut r,
    )
    .expect("responds");
    let pairing_case = |name: &str, what: &str, input: Vec<u8>, now: u32, expect: &str| {
        write(
            name,
            what,
            &[
                ("case", "pairing".into()),
                ("expect", expect.into()),
                ("seed", seed.to_string()),
                ("base_now", "0".into()),
                ("now", now.to_string()),
                ("base", hex::encode(&reply)),
                ("input", hex::encode(input)),
            ],
        );
    };
    pairing_case(
        "pairing_expired",
        "an honest reply arriving after the QR expired",
        reply.clone(),
        EXPIRES + 1,
        "Expired",
    );
    let mut zero = reply.clone();
    zero[1..33].fill(0);
    pairing_case(
        "pairing_all_zero_dh",
        "a reply whose ephemeral key is the all-zero (low-order) point",
        zero,
        0,
        "ZeroSharedSecret",
    );
    let mut wrong = p.qr().clone();
    wrong.secret = carekey_core::keys::OneTimeSecret::random(&mut r);
    let (_, bad) = DoctorPairing::respond(
        &wrong,
        &doctor,
        &card,
        &reader,
        b"doctor-mailbox",
        0,
        &mut r,
    )
    .expect("responds");
    pairing_case(
        "pairing_wrong_one_time_secret",
        "a reply keyed with another one-time secret",
        bad,
        0,
        "Decrypt",
    );
    let mut trailing = reply.clone();
    trailing[0] = 2;
    pairing_case(
        "pairing_wrong_version",
        "a reply with version byte 2",
        trailing,
        0,
        "UnknownVersion",
    );
}

#[test]
#[ignore = "writes fuzz/corpus seeds; run by hand after a format change"]
fn regenerate_fuzz_corpus() {
    use carekey_core::audit::{Chain, ChainKind, Head};
    use carekey_core::capability::FetchReceipt;
    use carekey_core::grant::{Category, DelegationLink};
    use carekey_core::manifest::{Manifest, ManifestEntry};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let d = root.join(target);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join(name), bytes).expect("write");
    };
    let mut r = rng(7);
    let p = patient(7);
    put("qr_payload", "valid-https", p.qr().to_text().as_bytes());
    put(
        "qr_payload",
        "valid-lowercase",
        p.qr().to_text().to_ascii_lowercase().as_bytes(),
    );
    let key = SigningSecret::random(&mut r);
    let tagged = |tag: u8, b: Vec<u8>| [vec![tag], b].concat();
    put("wire_decode", "scope", &tagged(0, Scope::all().to_bytes()));
    let g = Grant {
        share_id: [1; 16],
        relay_url: URL.into(),
        epoch: 1,
        keys: carekey_core::section::GrantKeys::Epoch(EpochKey::random(&mut r)),
        read_token: ReadToken::random(&mut r),
        policy: Policy::Allowed,
        scope: Scope::all(),
        expires_at: 2_000_000_000,
        grantee: [2; 32],
        reader_key: key.public(),
        delegation_depth: 1,
        issued_at: 1,
    }
    .sign(&key);
    put("wire_decode", "grant", &tagged(1, g.to_bytes()));
    let l = DelegationLink::sign(
        &key,
        [1; 16],
        key.public(),
        &ReadToken::random(&mut r),
        Scope::all(),
        None,
        5,
        0,
    );
    put("wire_decode", "link", &tagged(2, l.to_bytes()));
    put(
        "wire_decode",
        "receipt",
        &tagged(
            3,
            FetchReceipt::sign(&key, [1; 16], "manifest", 9, &mut r).to_bytes(),
        ),
    );
    let mut c = Chain::resume(ChainKind::Local, [1; 16], Head::EMPTY);
    put(
        "wire_decode",
        "entry",
        &tagged(4, c.append(1, 2, b"body".to_vec()).to_bytes()),
    );
    let (e, blob) = ManifestEntry::seal_record([3; 16], Category::Notes, "n", 1, b"x", &mut r);
    let m = Manifest {
        share_id: [1; 16],
        version: 1,
        epoch: 1,
        issued_at: 1,
        entries: vec![e],
    };
    put("wire_decode", "manifest", &tagged(5, m.to_bytes()));
    let id = DeviceIdentity::from_root(&RootSecret::random(&mut r));
    put(
        "wire_decode",
        "card",
        &tagged(
            6,
            id.card("Dr. Seed", Role::Doctor, Some("L"), 1)
                .expect("card")
                .to_bytes(),
        ),
    );
    put("wire_decode", "qr", &tagged(7, p.qr().to_bytes()));
    put("wire_decode", "envelope", &tagged(8, blob.clone()));
    put("envelope_open", "envelope", &blob);
    let ck = ContentKey::random(&mut r);
    let (chunked, _) = envelope::seal_chunked(
        &ck,
        &Context::new(ObjectKind::Attachment, b"a", 1),
        &[5; 3000],
        1024,
        &mut r,
    )
    .expect("seals");
    put("envelope_open", "chunked", &chunked);
    put(
        "wire_decode",
        "chunk-header",
        &tagged(9, chunked[..24].to_vec()),
    );
}
