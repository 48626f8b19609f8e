-- 0003_run_kinds.sql — runs and models made by the online policy trainers (GRPO, RLOO) and by
-- KTO: their kinds join the CHECK lists of runs.kind and models.made_by.
-- SQLite cannot alter a CHECK constraint, and rebuilding runs would fire the ON DELETE CASCADE
-- of metrics (foreign keys are on while migrating). Widening a CHECK changes nothing stored, so
-- the table definitions are edited in place as SQLite documents for such changes ("Making
-- Other Kinds Of Table Schema Changes"); RESET makes this connection re-read them. Every row
-- already stored satisfies the wider lists.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, '''dpo'', ''ppo'', ''eval'')', '''dpo'', ''ppo'', ''eval'', ''grpo'', ''rloo'', ''kto'')')
 WHERE type = 'table' AND name = 'runs';
UPDATE sqlite_schema
   SET sql = replace(sql, '''reward'', ''dpo'', ''ppo'')', '''reward'', ''dpo'', ''ppo'', ''grpo'', ''rloo'', ''kto'')')
 WHERE type = 'table' AND name = 'models';
PRAGMA writable_schema = RESET;
