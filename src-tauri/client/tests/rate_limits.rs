//! A relay with tight rate limits answers 429 with Retry-After; the client waits them out, so
//! a share larger than the burst still uploads and a doctor still fetches all of it.

mod common;

use carekey_client::patient::{Patient, ShareOptions};
use carekey_client::progress::{Cancel, NoProgress};
use carekey_client::relay::Relay;
use carekey_core::grant::Policy;
use carekey_core::keys::Role;
use common::{RelayOptions, identity, in_a_day, pair, share_items, start_relay_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_share_and_fetch_complete() {
    let env = [
        ("CAREKEY_RELAY_IP_RATE", "20"),
        ("CAREKEY_RELAY_IP_BURST", "10"),
        ("CAREKEY_RELAY_TOKEN_RATE", "10"),
        ("CAREKEY_RELAY_TOKEN_BURST", "5"),
    ];
    let relay = start_relay_with(&RelayOptions {
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..RelayOptions::default()
    });
    let (pid, pcard) = identity("Pat Limited", Role::Patient);
    let mut patient = Patient::new(pid, pcard, Relay::new(&relay.url).expect("url"));
    let items = share_items(2_000);
    assert!(items.len() > 10, "more blobs than the per-IP burst");
    let share = patient
        .create_share(
            items.clone(),
            ShareOptions {
                expires_at: in_a_day(),
                policy: Policy::Never,
                delegation_depth: 0,
            },
            &NoProgress,
            &Cancel::new(),
        )
        .await
        .expect("share uploads despite 429s");
    let (mut doctor, link, _) = pair(&mut patient, &share, "Dr. Patient").await;
    let got = doctor
        .fetch(&link, &NoProgress, &Cancel::new())
        .await
        .expect("fetch completes despite 429s");
    assert_eq!(got.len(), items.len());
}
