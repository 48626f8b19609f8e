-- 0001_initial.sql — the feedback store, version 1: models and training runs, prompts and the
-- generations made for them, and every human judgement (rankings, pairs, ratings, skips) with
-- the annotator and guideline behind it and an audit trail of what was added, changed, undone.
--
-- Conventions: times are ISO-8601 UTC text with milliseconds; *_json columns hold valid JSON;
-- judgement tables use AUTOINCREMENT so an undone row's id is never handed out again (the audit
-- log keeps naming it). `flags` columns hold comma-separated check results ("empty:chosen").
-- `text_hash` is the 64-bit FNV-1a hash of `text`, written by db/, so finding a prompt or a
-- generation by its text uses a small integer index instead of a second copy of every text.

PRAGMA application_id = 1380730952; -- 'RLHF'

CREATE TABLE annotators (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE CHECK (length(name) > 0),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- The guideline an annotator worked under, stored once and referenced by each judgement.
CREATE TABLE guidelines (
    id         INTEGER PRIMARY KEY,
    version    TEXT NOT NULL,
    text       TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (version, text)
);

CREATE TABLE runs (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('pretrain', 'sft', 'classify', 'reward', 'dpo', 'ppo', 'eval')),
    input_model_id  INTEGER REFERENCES models(id),
    output_model_id INTEGER REFERENCES models(id),
    config_json     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(config_json)),
    status          TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed', 'stopped')),
    started_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    ended_at        TEXT
);

CREATE TABLE models (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE CHECK (length(name) > 0),
    path       TEXT,
    family     TEXT,                                   -- gpt2, llama, ...
    parent_id  INTEGER REFERENCES models(id),
    made_by    TEXT NOT NULL DEFAULT 'external'
               CHECK (made_by IN ('external', 'pretrain', 'sft', 'classify', 'reward', 'dpo', 'ppo')),
    run_id     INTEGER REFERENCES runs(id),            -- the run that made it
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step   INTEGER NOT NULL,
    name   TEXT NOT NULL,
    value  REAL,                                       -- NULL when the value was not finite
    PRIMARY KEY (run_id, name, step)
) WITHOUT ROWID;

CREATE TABLE prompts (
    id            INTEGER PRIMARY KEY,
    text          TEXT NOT NULL,                       -- what the model was given, rendered
    template      TEXT,                                -- the template that rendered it
    examples_json TEXT CHECK (examples_json IS NULL OR json_valid(examples_json)), -- few-shot examples
    messages_json TEXT CHECK (messages_json IS NULL OR json_valid(messages_json)), -- chat messages
    tags          TEXT,                                -- comma-separated
    text_hash     INTEGER,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX prompts_by_hash ON prompts(text_hash);

CREATE TABLE generations (
    id            INTEGER PRIMARY KEY,
    prompt_id     INTEGER NOT NULL REFERENCES prompts(id),
    model_id      INTEGER REFERENCES models(id),
    origin        TEXT NOT NULL DEFAULT 'model' CHECK (origin IN ('model', 'import', 'demo')),
    text          TEXT NOT NULL,
    messages_json TEXT CHECK (messages_json IS NULL OR json_valid(messages_json)), -- as given in chat form
    n_tokens      INTEGER,
    token_ids     BLOB,                                -- int32 little-endian, optional
    decoding_json TEXT CHECK (decoding_json IS NULL OR json_valid(decoding_json)), -- full settings
    strategy      TEXT,                                -- greedy, beam, top-p, ... (for leaderboards)
    seed          INTEGER,
    logprob       REAL,
    latency_ms    REAL,
    text_hash     INTEGER,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX generations_by_prompt ON generations(prompt_id, text_hash);
CREATE INDEX generations_by_model ON generations(model_id);

-- A ranking of k >= 2 generations of one prompt; equal ranks are ties (B > A = C > D).
CREATE TABLE rankings (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id    INTEGER NOT NULL REFERENCES prompts(id),
    annotator_id INTEGER NOT NULL REFERENCES annotators(id),
    guideline_id INTEGER REFERENCES guidelines(id),
    k            INTEGER NOT NULL CHECK (k >= 2),
    items_key    TEXT NOT NULL,                        -- sorted generation ids: finds a repeat
    n_tied_pairs INTEGER NOT NULL DEFAULT 0,           -- pairs not derived because tied
    flags        TEXT,
    comment      TEXT,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX rankings_by_annotator ON rankings(annotator_id, items_key);

CREATE TABLE ranking_items (
    ranking_id    INTEGER NOT NULL REFERENCES rankings(id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,                    -- order shown to the annotator, from 0
    generation_id INTEGER NOT NULL REFERENCES generations(id),
    rank          INTEGER NOT NULL CHECK (rank >= 1),  -- 1 is best
    PRIMARY KEY (ranking_id, position),
    UNIQUE (ranking_id, generation_id)
) WITHOUT ROWID;

-- Pairwise preferences, recorded directly (ranking_id NULL) or derived from a ranking.
-- verdict 'better': chosen beat rejected; 'tie' / 'both_bad': the two sides in the order shown.
CREATE TABLE pairs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id    INTEGER NOT NULL REFERENCES prompts(id),
    chosen_id    INTEGER NOT NULL REFERENCES generations(id),
    rejected_id  INTEGER NOT NULL REFERENCES generations(id),
    verdict      TEXT NOT NULL CHECK (verdict IN ('better', 'tie', 'both_bad')),
    margin       REAL NOT NULL DEFAULT 1,              -- rank distance, or strength as recorded
    weight       REAL NOT NULL DEFAULT 1,
    ranking_id   INTEGER REFERENCES rankings(id) ON DELETE CASCADE,
    annotator_id INTEGER NOT NULL REFERENCES annotators(id),
    guideline_id INTEGER REFERENCES guidelines(id),
    flags        TEXT,
    comment      TEXT,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK (chosen_id <> rejected_id)
);
CREATE INDEX pairs_by_annotator ON pairs(annotator_id, chosen_id, rejected_id);
CREATE INDEX pairs_by_ranking ON pairs(ranking_id);

CREATE TABLE ratings (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    generation_id INTEGER NOT NULL REFERENCES generations(id),
    annotator_id  INTEGER NOT NULL REFERENCES annotators(id),
    guideline_id  INTEGER REFERENCES guidelines(id),
    score         INTEGER CHECK (score IS NULL OR score BETWEEN 1 AND 5),
    labels        TEXT,                                -- comma-separated: unsafe,incorrect,off-topic
    comment       TEXT,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK (score IS NOT NULL OR labels IS NOT NULL)
);
CREATE INDEX ratings_by_annotator ON ratings(annotator_id, generation_id);

CREATE TABLE skips (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id    INTEGER NOT NULL REFERENCES prompts(id),
    annotator_id INTEGER NOT NULL REFERENCES annotators(id),
    guideline_id INTEGER REFERENCES guidelines(id),
    reason       TEXT,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Every judgement made, changed or undone: who, when, what (detail_json holds the row's content,
-- and for a change the values before it, so an undo can put them back).
CREATE TABLE audit (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    annotator_id INTEGER NOT NULL REFERENCES annotators(id),
    action       TEXT NOT NULL CHECK (action IN ('add', 'change', 'undo')),
    kind         TEXT NOT NULL CHECK (kind IN ('ranking', 'pair', 'rating', 'skip')),
    target_id    INTEGER NOT NULL,
    detail_json  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail_json)),
    undone_by    INTEGER REFERENCES audit(id)
);
CREATE INDEX audit_by_annotator ON audit(annotator_id, id);
