-- 0004_ref_logps_warnings.sql — DPO's reference log-probabilities, cached across runs, and the
-- health warnings a training run raised.
--
-- ref_logps: one row per (reference model, encoded row). `fingerprint` identifies the reference
-- model (a hash of its configuration and weights, written by the engine as hex); `key` is a
-- 64-bit hash of token_ids and loss_mask, written by db/. The ids and the mask themselves are
-- stored and compared on every hit, so two rows whose hashes collide can never share a value
-- (the second is simply not cached). logp is the sum of log p(id) over the masked ids.
CREATE TABLE ref_logps (
    id          INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL CHECK (length(fingerprint) > 0),
    key         INTEGER NOT NULL,
    token_ids   BLOB NOT NULL,                         -- int32 little-endian
    loss_mask   BLOB NOT NULL,                         -- one byte per id: 1 = scored
    logp        REAL NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (fingerprint, key),
    CHECK (length(token_ids) = 4 * length(loss_mask))
);

-- A warning a run raised about its own health (DPO's chosen log-probabilities falling, PPO's
-- ratio far from 1, ...): the step it fired at, a stable code, and the text shown to the user
-- (what it means and what to try).
CREATE TABLE run_warnings (
    id         INTEGER PRIMARY KEY,
    run_id     INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    code       TEXT NOT NULL CHECK (length(code) > 0),
    message    TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX run_warnings_by_run ON run_warnings(run_id, step);
