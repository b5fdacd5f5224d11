-- carekey-vault schema 2: the apps' own state (shares, grants, relationships, pins), one sealed
-- value per name. tag = HMAC(app-state key, name); value sealed under the vault key with the
-- tag in the AAD, so a value cannot be moved to another name.
CREATE TABLE app_state (
    tag   BLOB PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
