//! Protocol flows and the attacks of issue #2 ("Pairing attack tests", "Message tests").

use carekey_core::Error;
use carekey_core::grant::{
    Category, DelegationLink, DelegationRoot, Grant, Policy, Scope, SignedGrant, verify_chain,
};
use carekey_core::keys::{
    Card, DeviceIdentity, EpochKey, PublicKey, ReadToken, Role, RootSecret, SigningSecret,
};
use carekey_core::manifest::{Manifest, ManifestEntry, ManifestGuard};
use carekey_core::message::{self, MessageKind, ReplayGuard};
use carekey_core::pairing::{DoctorPairing, PatientPairing, QrPayload};
use carekey_core::wire::Wire;
use rand_core::OsRng;

const NOW: u64 = 1_800_000_000;
const RELAY: &str = "https://relay.carekey.health";

struct Party {
    id: DeviceIdentity,
    card: Card,
    reader: SigningSecret,
}

fn party(name: &str, role: Role) -> Party {
    let id = DeviceIdentity::from_root(&RootSecret::random(&mut OsRng));
    let card = id
        .card(name, role, (role == Role::Doctor).then_some("LIC-42"), NOW)
        .expect("valid card");
    Party {
        id,
        card,
        reader: SigningSecret::random(&mut OsRng),
    }
}

fn grant_for(
    patient: &Party,
    doctor_card: &Card,
    reader: PublicKey,
    policy: Policy,
) -> SignedGrant {
    Grant {
        share_id: [9; 16],
        relay_url: RELAY.into(),
        epoch: 1,
        keys: carekey_core::section::GrantKeys::Epoch(EpochKey::random(&mut OsRng)),
        read_token: ReadToken::random(&mut OsRng),
        policy,
        scope: Scope::all(),
        expires_at: NOW + 86_400,
        grantee: doctor_card.hash(),
        reader_key: reader,
        delegation_depth: if policy == Policy::Allowed { 2 } else { 0 },
        issued_at: NOW,
    }
    .sign(patient.id.signing())
}

fn start() -> PatientPairing {
    PatientPairing::start(RELAY, [3; 16], (NOW + 300) as u32, &mut OsRng).expect("valid relay URL")
}

#[test]
fn honest_pairing_agrees_and_delivers_the_grant() {
    let patient = party("Pat Example", Role::Patient);
    let doctor = party("Dr. Who", Role::Doctor);
    let mut p = start();
    let qr = QrPayload::parse(&p.qr().to_text()).expect("own QR parses");
    let (d, reply) = DoctorPairing::respond(
        &qr,
        &doctor.id,
        &doctor.card,
        &doctor.reader.public(),
        b"doctor-mailbox",
        NOW,
        &mut OsRng,
    )
    .expect("doctor responds");
    let pending = p.accept_reply(&reply, NOW).expect("valid reply");
    assert_eq!(pending.check_code(), d.check_code());
    assert_eq!(pending.doctor_card, doctor.card);
    assert_eq!(pending.reader_key, doctor.reader.public());
    let grant = grant_for(&patient, &doctor.card, pending.reader_key, Policy::Ask);
    let (rel_p, confirm) = pending
        .confirm(&patient.id, &patient.card, &grant, b"patient-mailbox")
        .expect("confirms");
    let out = d.receive_confirmation(&confirm).expect("doctor accepts");
    assert_eq!(out.grant, grant);
    assert_eq!(out.relationship.peer_card, patient.card);
    assert_eq!(out.relationship.id, rel_p.id);
    assert_eq!(rel_p.peer_card, doctor.card);
}

#[test]
fn attacker_without_the_one_time_secret_cannot_reply() {
    // The relay (or anyone on the path) sees the pairing id and may learn eP, not s.
    let attacker = party("Mallory", Role::Doctor);
    let mut p = start();
    let mut forged = p.qr().clone();
    forged.secret = carekey_core::keys::OneTimeSecret::random(&mut OsRng);
    let (_, reply) = DoctorPairing::respond(
        &forged,
        &attacker.id,
        &attacker.card,
        &attacker.reader.public(),
        b"doctor-mailbox",
        NOW,
        &mut OsRng,
    )
    .expect("attacker can compute something");
    assert!(matches!(
        p.accept_reply(&reply, NOW),
        Err(Error::Decrypt { .. })
    ));
    // The failed attempt leaves the pairing open for the real doctor.
    let doctor = party("Dr. Real", Role::Doctor);
    let (_, reply) = DoctorPairing::respond(
        p.qr(),
        &doctor.id,
        &doctor.card,
        &doctor.reader.public(),
        b"doctor-mailbox",
        NOW,
        &mut OsRng,
    )
    .expect("responds");
    p.accept_reply(&reply, NOW).expect("real doctor accepted");
}

#[test]
fn photographed_qr_gives_a_different_code_and_only_one_try() {
    let doctor = party("Dr. Real", Role::Doctor);
    let attacker = party("Mallory", Role::Doctor);
    let mut p = start();
    let photo = QrPayload::parse(&p.qr().to_text()).expect("parses");
    let (d, real_reply) = DoctorPairing::respond(
        p.qr(),
        &doctor.id,
        &doctor.card,
        &doctor.reader.public(),
        b"doctor-mailbox",
        NOW,
        &mut OsRng,
    )
    .expect("responds");
    // The attacker races and wins the mailbox with a reply of its own.
    let (a, att_reply) = DoctorPairing::respond(
        &photo,
        &attacker.id,
        &attacker.card,
        &attacker.reader.public(),
        b"doctor-mailbox",
        NOW,
        &mut OsRng,
    )
    .expect("responds");
    let pending = p
        .accept_reply(&att_reply, NOW)
        .expect("attacker's reply is well-formed");
    assert_eq!(pending.check_code(), a.check_code());
    assert_ne!(pending.check_code(), d.check_code(), "codes must differ");
    assert_eq!(pending.doctor_card.body.name, "Mallory");
    // The pairing is closed: no second try, not for the attacker, not for the doctor.
    assert_eq!(
        p.accept_reply(&real_reply, NOW).err(),
        Some(Error::PairingClosed)
    );
    assert_eq!(
        p.accept_reply(&att_reply, NOW).err(),
        Some(Error::PairingClosed)
    );
    // Grinding: the doctor's code depends on X25519(eD, eP), which needs a secret the attacker
    // lacks; the attacker's own candidates are spread uniformly, so matching by chance is
    // 1 in 10^7 per QR, and it gets one reply per QR. Show the candidates really vary.
    let mut codes = std::collections::HashSet::new();
    for _ in 0..200 {
        let (a, _) = DoctorPairing::respond(
            &photo,
            &attacker.id,
            &attacker.card,
            &attacker.reader.public(),
            b"doctor-mailbox",
            NOW,
            &mut OsRng,
        )
        .expect("responds");
        codes.insert(a.check_code().value());
    }
    assert!(
        codes.len() > 195,
        "check codes are not spread: {}",
        codes.len()
    );
    assert!(!codes.contains(&d.check_code().value()) || codes.len() < 200);
}

#[test]
fn replayed_or_expired_qr_is_dead() {
    let doctor = party("Dr. Real", Role::Doctor);
    let mut p = start();
    let (_, reply) = DoctorPairing::respond(
        p.qr(),
        &doctor.id,
        &doctor.card,
        &doctor.reader.public(),
        b"doctor-mailbox",
        NOW,
        &mut OsRng,
    )
    .expect("responds");
    assert!(matches!(
        p.accept_reply(&reply, NOW + 301),
        Err(Error::Expired { .. })
    ));
    p.accept_reply(&reply, NOW).expect("first accepted");
    assert_eq!(
        p.accept_reply(&reply, NOW).err(),
        Some(Error::PairingClosed)
    );
    assert!(matches!(
        DoctorPairing::respond(
            p.qr(),
            &doctor.id,
            &doctor.card,
            &doctor.reader.public(),
            b"doctor-mailbox",
            NOW + 301,
            &mut OsRng
        ),
        Err(Error::Expired { .. })
    ));
}

#[test]
fn qr_payload_fits_version_7_alphanumeric() {
    let p = start();
    let text = p.qr().to_text();
    assert!(p.qr().to_bytes().len() <= carekey_core::pairing::MAX_QR_BINARY_LEN);
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .expect("encodes");
    match code.version() {
        qrcode::Version::Normal(v) => assert!(v <= 7, "QR version {v}"),
        other => panic!("unexpected {other:?}"),
    }
    // Alphanumeric mode only: every character is in the QR alphanumeric set.
    assert!(
        text.bytes()
            .all(|b| b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:".contains(&b))
    );
    // Case-insensitive scheme and body.
    assert_eq!(
        QrPayload::parse(&text.to_ascii_lowercase()).expect("lowercase parses"),
        *p.qr()
    );
    // The longest host that still fits version 7, and the longest the budget allows.
    for (len, max_version) in [
        (carekey_core::pairing::QR_V7_URL_LEN, 7),
        (carekey_core::pairing::MAX_QR_URL_LEN, 8),
    ] {
        let url = format!("https://{}", "r".repeat(len));
        let p = PatientPairing::start(&url, [3; 16], 0, &mut OsRng).expect("valid URL");
        assert!(p.qr().to_bytes().len() <= carekey_core::pairing::MAX_QR_BINARY_LEN);
        let code = qrcode::QrCode::with_error_correction_level(
            p.qr().to_text().as_bytes(),
            qrcode::EcLevel::M,
        )
        .expect("encodes");
        assert!(
            matches!(code.version(), qrcode::Version::Normal(v) if v <= max_version),
            "{len}-char host: {:?}",
            code.version()
        );
    }
    let too_long = format!(
        "https://{}",
        "r".repeat(carekey_core::pairing::MAX_QR_URL_LEN + 1)
    );
    assert!(PatientPairing::start(&too_long, [3; 16], 0, &mut OsRng).is_err());
    println!(
        "QR: {} binary bytes, {} chars, version {:?}",
        p.qr().to_bytes().len(),
        text.len(),
        code.version()
    );
}

fn relationship() -> (Party, Party, [u8; 16]) {
    (
        party("Pat", Role::Patient),
        party("Dr. D", Role::Doctor),
        [5; 16],
    )
}

#[test]
fn messages_reject_readdressing_replay_and_reordering() {
    let (p, d, rel) = relationship();
    let other = party("Other Patient", Role::Patient);
    let m1 = message::seal(
        &d.id,
        &d.card,
        &p.card,
        &rel,
        1,
        MessageKind::Note,
        b"note 1",
        &mut OsRng,
    )
    .expect("seals");
    let m2 = message::seal(
        &d.id,
        &d.card,
        &p.card,
        &rel,
        2,
        MessageKind::Note,
        b"note 2",
        &mut OsRng,
    )
    .expect("seals");
    let mut guard = ReplayGuard::default();
    // Out of order: m2 first is fine, then m1 is rejected as lower.
    let got = message::open(&p.id, &p.card, &d.card, &rel, &mut guard, &m2).expect("opens");
    assert_eq!(got.body, b"note 2");
    assert_eq!(
        message::open(&p.id, &p.card, &d.card, &rel, &mut guard, &m1).err(),
        Some(Error::Replay { highest: 2, got: 1 })
    );
    // Replay.
    assert!(matches!(
        message::open(&p.id, &p.card, &d.card, &rel, &mut guard, &m2),
        Err(Error::Replay { .. })
    ));
    // Re-addressing is covered by the unit test message::tests::readdressed_message_is_rejected
    // (it needs the inner layer).
    // Wrong relationship id.
    let m3 = message::seal(
        &d.id,
        &d.card,
        &p.card,
        &[6; 16],
        3,
        MessageKind::Note,
        b"x",
        &mut OsRng,
    )
    .expect("seals");
    assert!(message::open(&p.id, &p.card, &d.card, &rel, &mut guard, &m3).is_err());
    // Claimed sender is someone else.
    let m4 = message::seal(
        &other.id,
        &other.card,
        &p.card,
        &rel,
        9,
        MessageKind::Note,
        b"x",
        &mut OsRng,
    )
    .expect("seals");
    assert!(matches!(
        message::open(&p.id, &p.card, &d.card, &rel, &mut guard, &m4),
        Err(Error::BadSignature { .. })
    ));
    assert_eq!(guard.highest(), 2, "failed opens do not advance the guard");
}

#[test]
fn manifest_hash_rollback_and_forgery() {
    let patient = party("Pat", Role::Patient);
    let epoch_key = EpochKey::random(&mut OsRng);
    let (e1, blob1) = ManifestEntry::seal_record(
        [1; 16],
        Category::Conditions,
        "Asthma",
        1,
        b"{\"resourceType\":\"Condition\"}",
        &mut OsRng,
    );
    let (e2, blob2) = ManifestEntry::seal_attachment(
        [2; 16],
        Category::Documents,
        "scan.pdf",
        1,
        &vec![7u8; 200_000],
        &mut OsRng,
    )
    .expect("seals");
    let m = Manifest {
        share_id: [9; 16],
        version: 3,
        epoch: 1,
        issued_at: NOW,
        entries: vec![e1.clone(), e2.clone()],
    };
    let sealed = m.seal(patient.id.signing(), &epoch_key, &mut OsRng);
    let opened = Manifest::open(
        &sealed,
        &[9; 16],
        1,
        &epoch_key,
        &patient.card.body.signing_key,
    )
    .expect("opens");
    assert_eq!(opened, m);
    assert!(
        Manifest::open(
            &sealed,
            &[9; 16],
            2,
            &epoch_key,
            &patient.card.body.signing_key
        )
        .is_err()
    );
    assert!(
        Manifest::open(
            &sealed,
            &[8; 16],
            1,
            &epoch_key,
            &patient.card.body.signing_key
        )
        .is_err()
    );
    // A grantee holding the epoch key re-signs a manifest with its own key: wrong signer.
    let grantee = party("Dr. Evil", Role::Doctor);
    let forged = m.seal(grantee.id.signing(), &epoch_key, &mut OsRng);
    assert!(matches!(
        Manifest::open(
            &forged,
            &[9; 16],
            1,
            &epoch_key,
            &patient.card.body.signing_key
        ),
        Err(Error::BadSignature { .. })
    ));
    assert_eq!(
        opened.entries[0]
            .open_blob(1, &blob1)
            .expect("opens")
            .as_slice(),
        b"{\"resourceType\":\"Condition\"}"
    );
    assert_eq!(
        opened.entries[1].open_blob(1, &blob2).expect("opens").len(),
        200_000
    );
    // A malicious grantee (with the content key) seals its own blob: it opens under the
    // content key, but the signed hash rejects it.
    let ctx = e1.context(1);
    let evil = carekey_core::envelope::seal(&e1.content_key, &ctx, b"{\"evil\":true}", &mut OsRng)
        .to_bytes();
    assert!(
        carekey_core::envelope::open(
            &e1.content_key,
            &ctx,
            &carekey_core::envelope::Envelope::from_bytes(&evil).expect("decodes")
        )
        .is_ok()
    );
    assert_eq!(
        opened.entries[0].open_blob(1, &evil).err(),
        Some(Error::HashMismatch)
    );
    let (evil_att, _) = carekey_core::envelope::seal_chunked(
        &e2.content_key,
        &e2.context(1),
        b"evil",
        1024,
        &mut OsRng,
    )
    .expect("seals");
    assert_eq!(
        opened.entries[1].open_blob(1, &evil_att).err(),
        Some(Error::HashMismatch)
    );
    // Blobs swapped between entries fail.
    assert!(opened.entries[0].open_blob(1, &blob2).is_err());
    // Rollback.
    let mut guard = ManifestGuard::default();
    guard.accept(&opened).expect("first");
    let mut older = opened.clone();
    older.version = 2;
    assert_eq!(
        guard.accept(&older).err(),
        Some(Error::Rollback {
            what: "manifest",
            have: 3,
            got: 2
        })
    );
}

#[test]
fn delegation_chain_rules() {
    let doctor = SigningSecret::random(&mut OsRng);
    let colleague = SigningSecret::random(&mut OsRng);
    let third = SigningSecret::random(&mut OsRng);
    let share = [9; 16];
    let root = DelegationRoot {
        reader_key: doctor.public(),
        scope: Scope::new(
            &[Category::Conditions, Category::Medications],
            vec![[1; 16], [2; 16]],
        )
        .expect("scope"),
        expires_at: NOW + 1000,
        depth: 2,
        groups: None,
    };
    let narrow = Scope::new(&[Category::Conditions], vec![[1; 16]]).expect("scope");
    let t1 = ReadToken::random(&mut OsRng);
    let t2 = ReadToken::random(&mut OsRng);
    let l1 = DelegationLink::sign(
        &doctor,
        share,
        colleague.public(),
        &t1,
        narrow.clone(),
        None,
        NOW + 500,
        1,
    );
    let l2 = DelegationLink::sign(
        &colleague,
        share,
        third.public(),
        &t2,
        narrow.clone(),
        None,
        NOW + 400,
        0,
    );
    verify_chain(&share, &root, &[l1.clone(), l2.clone()], NOW).expect("valid chain");
    // Encoding round-trips and rejects trailing bytes.
    let b = l1.to_bytes();
    assert_eq!(DelegationLink::from_bytes(&b).expect("decodes"), l1);
    let mut t = b.clone();
    t.push(0);
    assert!(DelegationLink::from_bytes(&t).is_err());

    let bad = |chain: &[DelegationLink], idx: usize, reason: &str| {
        assert_eq!(
            verify_chain(&share, &root, chain, NOW).err(),
            Some(Error::Delegation {
                index: idx,
                reason: match reason {
                    "scope" => "widens the scope",
                    "expiry" => "extends the expiry",
                    "depth" => "delegates past the allowed depth",
                    "sig" => "signature is invalid",
                    "parent" => "parent key does not match the previous link",
                    "expired" => "expired",
                    _ => unreachable!(),
                }
            })
        );
    };
    let wide = Scope::new(&[Category::Conditions, Category::Documents], vec![]).expect("scope");
    bad(
        &[DelegationLink::sign(
            &doctor,
            share,
            colleague.public(),
            &t1,
            wide,
            None,
            NOW + 500,
            1,
        )],
        0,
        "scope",
    );
    let extra_record = Scope::new(&[], vec![[3; 16]]).expect("scope");
    bad(
        &[DelegationLink::sign(
            &doctor,
            share,
            colleague.public(),
            &t1,
            extra_record,
            None,
            NOW + 500,
            1,
        )],
        0,
        "scope",
    );
    bad(
        &[DelegationLink::sign(
            &doctor,
            share,
            colleague.public(),
            &t1,
            narrow.clone(),
            None,
            NOW + 2000,
            1,
        )],
        0,
        "expiry",
    );
    bad(
        &[DelegationLink::sign(
            &doctor,
            share,
            colleague.public(),
            &t1,
            narrow.clone(),
            None,
            NOW + 500,
            2,
        )],
        0,
        "depth",
    );
    // Re-delegating past depth: l2 has depth 0, so a third link is impossible.
    let fourth = SigningSecret::random(&mut OsRng);
    let l3 = DelegationLink::sign(
        &third,
        share,
        fourth.public(),
        &t2,
        narrow.clone(),
        None,
        NOW + 300,
        0,
    );
    bad(&[l1.clone(), l2.clone(), l3], 2, "depth");
    // A link signed by someone other than the parent.
    let mut forged = l2.clone();
    forged.parent_key = doctor.public();
    bad(&[l1.clone(), forged], 1, "parent");
    let mut tampered = l1.clone();
    tampered.expires_at -= 1;
    bad(&[tampered], 0, "sig");
    assert!(verify_chain(&share, &root, &[l1], NOW + 501).is_err());

    // Scoped roots (docs/protocol.md "Scoped keys"): a child's relay groups must be signed
    // into its link and stay within the parent's; a version-1 link below a scoped parent (no
    // groups) is refused, as is a group the parent does not have.
    let scoped = DelegationRoot {
        groups: Some(vec![[1; 16], [2; 16], [3; 16]]),
        ..root.clone()
    };
    let link = |groups: Option<Vec<[u8; 16]>>| {
        DelegationLink::sign(
            &doctor,
            share,
            colleague.public(),
            &t1,
            narrow.clone(),
            groups,
            NOW + 500,
            1,
        )
    };
    let ok = link(Some(vec![[2; 16], [1; 16]]));
    assert_eq!(
        ok.groups,
        Some(vec![[1; 16], [2; 16]]),
        "sorted when signed"
    );
    verify_chain(&share, &scoped, std::slice::from_ref(&ok), NOW).expect("within");
    assert_eq!(
        DelegationLink::from_bytes(&ok.to_bytes()).expect("v2 decodes"),
        ok
    );
    assert_eq!(ok.to_bytes()[0], 2, "a link with groups is version 2");
    for wider in [link(Some(vec![[1; 16], [9; 16]])), link(None)] {
        assert_eq!(
            verify_chain(&share, &scoped, &[wider], NOW).err(),
            Some(Error::Delegation {
                index: 0,
                reason: "widens or drops the relay groups",
            })
        );
    }
    // The next link is held to the first link's groups, not the root's.
    let below = DelegationLink::sign(
        &colleague,
        share,
        third.public(),
        &t2,
        narrow.clone(),
        Some(vec![[3; 16]]),
        NOW + 400,
        0,
    );
    assert!(verify_chain(&share, &scoped, &[ok.clone(), below], NOW).is_err());
    let below = DelegationLink::sign(
        &colleague,
        share,
        third.public(),
        &t2,
        narrow.clone(),
        Some(vec![[1; 16]]),
        NOW + 400,
        0,
    );
    verify_chain(&share, &scoped, &[ok, below], NOW).expect("narrower still");
}

#[test]
fn grant_signature_and_policy_depth_consistency() {
    let patient = party("Pat", Role::Patient);
    let doctor = party("Dr. D", Role::Doctor);
    let g = grant_for(
        &patient,
        &doctor.card,
        doctor.reader.public(),
        Policy::Allowed,
    );
    g.verify_at(&patient.card.body.signing_key, NOW)
        .expect("valid");
    assert!(
        g.verify_at(&patient.card.body.signing_key, NOW + 86_401)
            .is_err()
    );
    assert!(g.verify(&doctor.card.body.signing_key).is_err());
    let b = g.to_bytes();
    assert_eq!(SignedGrant::from_bytes(&b).expect("decodes"), g);
    // Debug never shows the epoch key or token.
    let dbg = format!("{g:?}");
    assert!(dbg.contains("EpochKey(<redacted>)") && dbg.contains("ReadToken(<redacted>)"));
    // Depth > 0 with policy never is malformed.
    let mut bad = g.grant.clone();
    bad.policy = Policy::Never;
    let s = bad.sign(patient.id.signing());
    assert!(SignedGrant::from_bytes(&s.to_bytes()).is_err());
}
