-- veil storage, schema 4: outbox positions that are never reused.
--
-- Senders read the outbox go-back-N style: they remember how far they
-- pushed (an outbox row id) and read on from there, and start again from
-- the beginning to resend what was not acknowledged. That needs ids that
-- only grow: without AUTOINCREMENT, SQLite hands a deleted (acknowledged)
-- newest row's id to the next row, which a sender past it would skip.
-- Sending no longer writes to the outbox, so the columns that recorded
-- attempts and the next attempt's time go.
CREATE TABLE outbox_v4 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    peer        BLOB NOT NULL,
    entry_seq   INTEGER NOT NULL REFERENCES entries (seq) ON DELETE CASCADE,
    enqueued_at INTEGER NOT NULL,
    UNIQUE (peer, entry_seq)
);
INSERT INTO outbox_v4 (id, peer, entry_seq, enqueued_at) SELECT id, peer, entry_seq, enqueued_at FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v4 RENAME TO outbox;
CREATE INDEX outbox_by_peer ON outbox (peer, id);
