//! The Tauri commands run the client's flows on a multi-threaded runtime: every public async
//! flow must be `Send` (a compile-time check: this file fails to build otherwise).

use carekey_client::doctor::Doctor;
use carekey_client::patient::{Patient, ShareOptions};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_vault::Vault;

fn send<T: Send>(_: &T) {}

#[allow(dead_code)]
async fn flows(p: &mut Patient, d: &mut Doctor, v: &mut Vault, r: &Relay, c: &Cancel) {
    let share = carekey_client::ShareId::default();
    let rel = carekey_client::RelationshipId::default();
    let link = carekey_client::LinkId::default();
    let options = ShareOptions {
        expires_at: 0,
        policy: carekey_core::grant::Policy::Never,
        delegation_depth: 0,
    };
    send(&p.create_share(Vec::new(), options, &NoProgress, c));
    send(&p.start_pairing(&share));
    send(&p.inbox(&rel, 0));
    send(&p.revoke(&share, &rel, &NoProgress, c));
    send(&p.access_log(&share));
    let id = carekey_client::patient::ForwardRequestId([0; 16]);
    send(&p.answer_forward(&id, true));
    send(&p.delegations(&share));
    send(&p.ack_inbox(&rel));
    if let Ok(w) = p.inbox_waiter(&rel) {
        send(&w.wait(0));
    }
    if let Ok(mut s) = p.start_pairing(&share).await {
        send(&s.wait_for_doctor(r, 0, c));
    }
    if let Ok(mut s) = d.scan("").await {
        send(&s.wait_for_confirmation(0, c));
        if let Ok(conf) = s.wait_for_confirmation(0, c).await {
            send(&d.accept_grant(s, conf));
        }
    }
    send(&d.scan(""));
    send(&d.fetch(&link, &NoProgress, c));
    send(&d.sync(&link, 0));
    send(&d.sync_to_vault(&link, v, &NoProgress, c));
    send(&d.send_note(&link, &serde_json::Value::Null));
    send(&d.invite("", 0));
    send(&d.accept_introduction(&carekey_client::InviteId::default(), 0, c));
    send(&carekey_client::backup::backup_to_relay(
        v,
        r,
        &NoProgress,
        c,
    ));
}

#[test]
fn flows_are_send() {
    // Compiling `flows` is the test; this only keeps it referenced.
    let _ = flows;
}
