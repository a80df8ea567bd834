-- Every row that becomes 'pendiente' gets exactly one process_prompt job.
--
-- * One job key per row, so that enqueueing a row twice never makes two jobs.
-- * Per statement, never per row, reading the statement's transition table: a
--   row-level add_job trigger was measured at ~3,000 rows/s (and 138 rows/s on
--   a fresh schema).
-- * Statements of up to 1,000 rows get their jobs at once, from one
--   graphile_worker.add_jobs call. Larger ones get a single enqueue_prompts job
--   that the worker runs at once, adding their jobs in batches: writing 100,000
--   job rows inside the INSERT made it 7× slower than the INSERT alone
--   (docs/benchmarks.md), and an INSERT … SELECT must stay fast.
-- * run_at is spread one microsecond apart in id order, ending at the
--   statement's now(), because graphile-worker orders jobs by (priority,
--   run_at) only: the queue must be FIFO by id, within a statement and across.
-- * The 'llm' flag lets the worker's forbiddenFlags keep every process but the
--   leader, and every moment outside the window, away from these jobs.
-- * SECURITY DEFINER: a role that may only INSERT into the table (or UPDATE it,
--   to retry) can still enqueue without any privilege on graphile_worker.

CREATE FUNCTION fila_llm_job_key(prompt_id INT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$ SELECT 'fila_llm_anahuac:' || prompt_id $$;

-- (Re)enqueues these ids; the job of `anchor_id` (default: the largest id) is
-- due at `newest_run_at`, each smaller id one microsecond earlier per id.
CREATE FUNCTION fila_llm_enqueue(prompt_ids INT[], newest_run_at TIMESTAMPTZ DEFAULT now(), anchor_id INT DEFAULT NULL)
RETURNS INT
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  specs graphile_worker.job_spec[];
BEGIN
  SELECT array_agg(
           ROW('process_prompt', json_build_object('id', id), NULL,
               newest_run_at - (coalesce(anchor_id, max_id) - id) * interval '1 microsecond',
               NULL, fila_llm_job_key(id), NULL, ARRAY['llm'])::graphile_worker.job_spec
           ORDER BY id)
    INTO specs
    -- DISTINCT: add_jobs cannot take two specs with the same job key at once.
    FROM (SELECT id, max(id) OVER () AS max_id
            FROM (SELECT DISTINCT id FROM unnest(prompt_ids) AS ids(id) WHERE id IS NOT NULL) AS d) AS ordered;
  IF specs IS NULL THEN
    RETURN 0;
  END IF;
  PERFORM graphile_worker.add_jobs(specs);
  RETURN cardinality(specs);
END $$;

COMMENT ON FUNCTION fila_llm_enqueue(INT[], TIMESTAMPTZ, INT) IS
  'fila-llm: (re)enqueue process_prompt jobs for these fila_llm_anahuac ids, FIFO by id, one job per id.';

-- The statement threshold above which jobs are added by enqueue_prompts.
CREATE FUNCTION fila_llm_enqueue_statement(prompt_ids INT[]) RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  IF cardinality(prompt_ids) IS NULL THEN
    RETURN;
  ELSIF cardinality(prompt_ids) <= 1000 THEN
    PERFORM fila_llm_enqueue(prompt_ids);
  ELSE
    -- One keyed job for all bulk statements: graphile-worker appends array
    -- payloads of the same key. Priority -1 runs it before any waiting
    -- prompt, so the rows get their jobs (and their FIFO place, from 'at') at once.
    PERFORM graphile_worker.add_job('enqueue_prompts',
      json_build_array(json_build_object('from', prompt_ids[1], 'to', prompt_ids[cardinality(prompt_ids)], 'at', now())),
      job_key := 'fila_llm_enqueue_prompts', job_key_mode := 'preserve_run_at', priority := -1);
  END IF;
END $$;

-- One batch of a bulk statement's rows, for enqueue_prompts: up to `max_rows`
-- 'pendiente' rows with ids in [from_id, to_id] and no live job yet, oldest
-- first, due as if enqueued at `newest_run_at`. Returns the last id done, or
-- NULL when the range is finished.
CREATE FUNCTION fila_llm_enqueue_range(from_id INT, to_id INT, newest_run_at TIMESTAMPTZ, max_rows INT) RETURNS INT
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  ids INT[];
BEGIN
  SELECT array_agg(id ORDER BY id) INTO ids
    FROM (SELECT a.id FROM fila_llm_anahuac a
           WHERE a.id BETWEEN from_id AND to_id
             AND a.estatus = 'pendiente'
             AND NOT EXISTS (SELECT 1 FROM graphile_worker._private_jobs j
                              WHERE j.key = fila_llm_job_key(a.id) AND j.attempts < j.max_attempts)
           ORDER BY a.id
           LIMIT max_rows) AS batch;
  PERFORM fila_llm_enqueue(ids, newest_run_at, to_id);
  RETURN ids[cardinality(ids)];
END $$;

CREATE FUNCTION fila_llm_enqueue_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  PERFORM fila_llm_enqueue_statement(array_agg(id ORDER BY id))
     FROM inserted_rows
    WHERE estatus = 'pendiente';
  RETURN NULL;
END $$;

CREATE FUNCTION fila_llm_enqueue_reset() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  PERFORM fila_llm_enqueue_statement(array_agg(n.id ORDER BY n.id))
     FROM new_rows n
     JOIN old_rows o ON o.id = n.id
    WHERE n.estatus = 'pendiente'
      AND o.estatus <> 'pendiente';
  RETURN NULL;
END $$;

CREATE TRIGGER fila_llm_enqueue_inserted
  AFTER INSERT ON fila_llm_anahuac
  REFERENCING NEW TABLE AS inserted_rows
  FOR EACH STATEMENT EXECUTE FUNCTION fila_llm_enqueue_inserted();

-- The SQL retry path: UPDATE ... SET estatus = 'pendiente' enqueues the row again.
CREATE TRIGGER fila_llm_enqueue_reset
  AFTER UPDATE ON fila_llm_anahuac
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION fila_llm_enqueue_reset();

-- Only the triggers and the worker (running as these functions' owner) need
-- to enqueue directly.
REVOKE EXECUTE ON FUNCTION fila_llm_enqueue(INT[], TIMESTAMPTZ, INT), fila_llm_enqueue_statement(INT[]),
  fila_llm_enqueue_range(INT, INT, TIMESTAMPTZ, INT) FROM PUBLIC;
