//! Typed 16-byte ids of the client's public API: what a share, a blob, a mailbox, a pairing, a
//! relationship, a doctor's patient link, an invite or a forward request is called.
//!
//! Each is a distinct type, so a share id cannot be passed where a relationship is meant. None
//! of them is secret (the relay sees share, blob, mailbox and pairing ids; relationship ids
//! are bound into every relationship message, docs/protocol.md "Relationship messages"), so
//! each prints as 32 lowercase hex digits with `Display` and `Debug` and parses back with
//! `FromStr` (upper-case digits and surrounding blanks are accepted). What *is* secret — read
//! tokens, mailbox read and write tokens, keys — has its own types and never a `Display`.

use crate::error::ClientError;

macro_rules! hex_ids {
    ($($(#[$meta:meta])* $name:ident => $what:literal;)*) => {$(
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// The id's 16 bytes.
            pub const fn to_bytes(self) -> [u8; 16] {
                self.0
            }

            /// A reference to the id's 16 bytes.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl From<[u8; 16]> for $name {
            fn from(b: [u8; 16]) -> Self {
                Self(b)
            }
        }

        impl From<$name> for [u8; 16] {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl std::str::FromStr for $name {
            type Err = ClientError;
            fn from_str(s: &str) -> Result<Self, ClientError> {
                parse_hex16(s)
                    .map(Self)
                    .ok_or(ClientError::InvalidInput(concat!("not a ", $what, " (32 hex digits)")))
            }
        }
    )*};
}

hex_ids! {
    /// A share at the relay (docs/protocol.md "Shares"): made by
    /// [`crate::patient::Patient::create_share`], named by the doctor's grant.
    ShareId => "share id";
    /// A blob of a share's epoch (fresh for every blob in every epoch, docs/protocol.md
    /// "Revocation").
    BlobId => "blob id";
    /// A relationship mailbox at the relay (the public half of a
    /// [`crate::relay::MailboxAddress`]; the write and read tokens are secret and apart).
    MailboxId => "mailbox id";
    /// A pairing mailbox at the relay, the one a QR names (docs/protocol.md "Pairing").
    PairingId => "pairing id";
    /// One of the patient's relationships (a doctor paired at a check-up, or a colleague
    /// granted through a forward request): the core relationship's own id (docs/protocol.md
    /// "Pairing", `KDF_RELATIONSHIP_ID`, or the colleague invite's), stable across restarts.
    RelationshipId => "relationship id";
    /// One of the doctor's links to a patient's share (a scan, or an introduction as a
    /// colleague): the relationship id the link's messages are bound to, stable across
    /// restarts.
    LinkId => "patient link id";
    /// An invite the doctor handed out as a colleague and waits on (the invite's own
    /// relationship id, docs/protocol.md "Forwarding"); the link it turns into has the same
    /// bytes as its [`LinkId`].
    InviteId => "invite id";
    /// Stable handle of a pending forward request: random, saved with the patient's state, so
    /// it names the same request after a restart.
    ForwardRequestId => "forward request id";
    /// A delegation in a share's tree as the patient knows it (from the relay's notices):
    /// the first 16 bytes of the colleague's token hash, stable across restarts
    /// ([`crate::patient::Patient::revoke_delegation`]).
    DelegationId => "delegation id";
}

impl DelegationId {
    /// The id of the delegation whose token has relay hash `token_hash`.
    pub(crate) fn of_token(token_hash: &[u8; 32]) -> Self {
        let mut id = [0u8; 16];
        id.copy_from_slice(&token_hash[..16]);
        Self(id)
    }
}

impl ForwardRequestId {
    /// A fresh random id.
    pub(crate) fn random() -> Self {
        let mut id = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        Self(id)
    }
}

fn parse_hex16(s: &str) -> Option<[u8; 16]> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(s.trim().as_bytes())
        .ok()
        .and_then(|v| <[u8; 16]>::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_as_lowercase_hex() {
        let id = ShareId([0xab; 16]);
        let text = id.to_string();
        assert_eq!(text, "ab".repeat(16));
        assert_eq!(format!("{id:?}"), format!("ShareId({text})"));
        assert_eq!(text.parse::<ShareId>().expect("own text parses"), id);
        assert_eq!(
            text.to_uppercase()
                .parse::<ShareId>()
                .expect("upper case parses"),
            id
        );
        assert!("ab".parse::<RelationshipId>().is_err());
        assert!("zz".repeat(16).parse::<LinkId>().is_err());
        assert_eq!(
            "00".repeat(16)
                .parse::<RelationshipId>()
                .map_err(|e| e.code()),
            Ok(RelationshipId([0; 16]))
        );
    }
}
