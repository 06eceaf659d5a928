-- veil storage, schema 1.
--
-- The statements in src/ use portable SQL (numbered `$n` parameters,
-- ON CONFLICT, RETURNING, row-value comparisons), so the same repositories can
-- run on PostgreSQL for a large replication node. This file is SQLite's
-- flavour of the schema (INTEGER PRIMARY KEY as the row id, BLOB); a
-- PostgreSQL migration set would use BIGINT GENERATED … AS IDENTITY and BYTEA.
-- Every secret column is `sealed_*`: AES-256-GCM under the storage key.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

-- How the storage key is derived and checked. Holds no secret.
CREATE TABLE keystore (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    kind     TEXT NOT NULL CHECK (kind IN ('passphrase', 'key-file')),
    salt     BLOB,
    m_cost   INTEGER,
    t_cost   INTEGER,
    p_cost   INTEGER,
    verifier BLOB NOT NULL
);

CREATE TABLE account (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    signing_public   BLOB NOT NULL,
    agreement_public BLOB NOT NULL,
    sealed_signing   BLOB NOT NULL,
    sealed_agreement BLOB NOT NULL,
    sealed_alias     BLOB NOT NULL,
    created_at       INTEGER NOT NULL
);

-- The account's devices; only this node's own device has its secret here.
CREATE TABLE devices (
    device_public BLOB PRIMARY KEY,
    sealed_secret BLOB,
    name          TEXT,
    added_at      INTEGER NOT NULL
);

-- Contact-link seeds, newest last. A reset retires the current seed.
CREATE TABLE contact_links (
    id          INTEGER PRIMARY KEY,
    sealed_seed BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
);

CREATE TABLE link_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    enabled INTEGER NOT NULL CHECK (enabled IN (0, 1))
);

CREATE TABLE groups (
    id            INTEGER PRIMARY KEY,
    group_id      BLOB NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('contact', 'multi-member')),
    sealed_name   BLOB,
    sealed_secret BLOB NOT NULL,
    device_public BLOB NOT NULL,
    sealed_device BLOB NOT NULL,
    joined_at     INTEGER NOT NULL
);

CREATE TABLE contacts (
    account_signing   BLOB PRIMARY KEY,
    account_agreement BLOB NOT NULL,
    sealed_name       BLOB,
    sealed_seed       BLOB,
    state             TEXT NOT NULL CHECK (state IN (
                          'outgoing-enqueued', 'outgoing-sent', 'incoming-received',
                          'accepted', 'discarded', 'blocked')),
    group_ref         INTEGER REFERENCES groups (id),
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

-- Both logs of every group: a hash-linked DAG.
--
-- Hashes are random, so every index on them takes one random B-tree insert
-- per entry. The index is on `hash_key`, the hash's first 8 bytes as a
-- big-endian signed integer, not on the 32-byte hash: a third of the size,
-- so a batch's inserts share leaf pages and write far fewer of them. Keys
-- may collide, so lookups compare the full hash too, and the store (the
-- only writer, inside the append transaction) keeps hashes unique.
CREATE TABLE entries (
    seq            INTEGER PRIMARY KEY,
    hash_key       INTEGER NOT NULL,
    hash           BLOB NOT NULL,
    group_ref      INTEGER NOT NULL REFERENCES groups (id),
    kind           INTEGER NOT NULL CHECK (kind IN (1, 2)),
    lamport        INTEGER NOT NULL CHECK (lamport >= 0),
    author         BLOB,
    parents        BLOB NOT NULL,
    links          BLOB NOT NULL,
    header         BLOB NOT NULL,
    body           BLOB NOT NULL,
    tag            BLOB NOT NULL,
    sealed_payload BLOB,
    received_at    INTEGER NOT NULL
);
CREATE INDEX entries_by_hash ON entries (hash_key);
CREATE INDEX entries_order ON entries (group_ref, kind, lamport, hash);

-- Entries no stored entry names as a parent.
CREATE TABLE heads (
    group_ref INTEGER NOT NULL REFERENCES groups (id),
    kind      INTEGER NOT NULL,
    hash      BLOB NOT NULL,
    PRIMARY KEY (group_ref, kind, hash)
);

-- Parents named by stored entries but not stored themselves.
CREATE TABLE missing_parents (
    group_ref INTEGER NOT NULL REFERENCES groups (id),
    kind      INTEGER NOT NULL,
    hash      BLOB NOT NULL,
    PRIMARY KEY (group_ref, kind, hash)
);

CREATE TABLE sender_chains (
    group_ref    INTEGER PRIMARY KEY REFERENCES groups (id),
    sealed_state BLOB NOT NULL
);

CREATE TABLE receiver_chains (
    group_ref    INTEGER NOT NULL REFERENCES groups (id),
    device       BLOB NOT NULL,
    window_size  INTEGER NOT NULL,
    sealed_state BLOB NOT NULL,
    PRIMARY KEY (group_ref, device)
);

-- Keys of skipped messages; deleted when used or when they leave the window.
CREATE TABLE skipped_keys (
    group_ref  INTEGER NOT NULL,
    device     BLOB NOT NULL,
    counter    INTEGER NOT NULL,
    sealed_key BLOB NOT NULL,
    PRIMARY KEY (group_ref, device, counter),
    FOREIGN KEY (group_ref, device) REFERENCES receiver_chains (group_ref, device) ON DELETE CASCADE
);

-- Entries still owed to a peer.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    peer            BLOB NOT NULL,
    entry_seq       INTEGER NOT NULL REFERENCES entries (seq) ON DELETE CASCADE,
    enqueued_at     INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    UNIQUE (peer, entry_seq)
);
CREATE INDEX outbox_by_peer ON outbox (peer, id);
