-- 0002_imports.sql — provenance of imported JSONL: one row per import (who, when, which file,
-- how many records), the import each imported pair and generation came from, the record
-- layout of imported chat data so an export can rebuild the same JSON, and check flags on
-- demonstrations (SFT examples) like those pairs already have.

CREATE TABLE imports (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    format       TEXT NOT NULL CHECK (format IN ('trl', 'hh', 'sft')),
    source       TEXT NOT NULL,                        -- the file name as given
    annotator_id INTEGER NOT NULL REFERENCES annotators(id),
    n_records    INTEGER NOT NULL DEFAULT 0,
    n_bad        INTEGER NOT NULL DEFAULT 0,
    n_flagged    INTEGER NOT NULL DEFAULT 0,
    at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

ALTER TABLE pairs ADD COLUMN import_id INTEGER REFERENCES imports(id);
ALTER TABLE generations ADD COLUMN import_id INTEGER REFERENCES imports(id);
-- 'messages': an SFT record {"messages": [...]} whose last message is this text;
-- 'prompt_completion': {"prompt", "completion"}; NULL for everything else.
ALTER TABLE generations ADD COLUMN record_layout TEXT
    CHECK (record_layout IS NULL OR record_layout IN ('prompt_completion', 'messages'));
ALTER TABLE generations ADD COLUMN flags TEXT;
CREATE INDEX pairs_by_import ON pairs(import_id);
