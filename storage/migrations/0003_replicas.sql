-- veil storage, schema 3: blind replication.
--
-- A node serving as a replication node for a group holds its replication
-- credential (never its secret) and its entries as they travel: sealed,
-- verified against the entry-auth key, in a DAG it walks with the link key.
CREATE TABLE replicas (
    id              INTEGER PRIMARY KEY,
    replication_id  BLOB NOT NULL UNIQUE,
    sealed_link_key BLOB NOT NULL,
    sealed_auth_key BLOB NOT NULL,
    added_at        INTEGER NOT NULL
);

-- Same hash-key indexing as `entries` (see schema 1).
CREATE TABLE replica_entries (
    seq         INTEGER PRIMARY KEY,
    replica_ref INTEGER NOT NULL REFERENCES replicas (id),
    hash_key    INTEGER NOT NULL,
    hash        BLOB NOT NULL,
    kind        INTEGER NOT NULL CHECK (kind IN (1, 2)),
    lamport     INTEGER NOT NULL CHECK (lamport >= 0),
    links       BLOB NOT NULL,
    header      BLOB NOT NULL,
    body        BLOB NOT NULL,
    tag         BLOB NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX replica_entries_by_hash ON replica_entries (replica_ref, hash_key);
CREATE INDEX replica_entries_order ON replica_entries (replica_ref, kind, lamport, hash);
