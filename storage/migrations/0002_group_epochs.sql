-- veil storage, schema 2: group epochs.
--
-- Removing a member moves its group to a new epoch whose secret only the
-- remaining members receive (docs/PROTOCOL.md §6.5). The epochs this node
-- holds, in the order it learned them (an invitation lists them oldest first).
CREATE TABLE group_epochs (
    id            INTEGER PRIMARY KEY,
    group_ref     INTEGER NOT NULL REFERENCES groups (id),
    epoch_id      BLOB NOT NULL,
    sealed_secret BLOB NOT NULL,
    UNIQUE (group_ref, epoch_id)
);
