-- Every row that becomes 'pendiente' gets exactly one process_prompt job.
--
-- * One job key per row, so that enqueueing a row twice never makes two jobs.
-- * One graphile_worker.add_jobs call per statement, reading the statement's
--   transition table: a row-level add_job trigger was measured at ~3,000
--   rows/s (and 138 rows/s on a fresh schema), add_jobs at 60,000+ rows/s.
-- * run_at is spread one microsecond apart in id order, because graphile-worker
--   orders jobs by (priority, run_at) only: equal run_at would make the order
--   within one INSERT arbitrary, and the queue must be FIFO by id.
-- * The 'llm' flag lets the worker's forbiddenFlags keep every process but the
--   leader, and every moment outside the window, away from these jobs.
-- * SECURITY DEFINER: a role that may only INSERT into the table (or UPDATE it,
--   to retry) can still enqueue without any privilege on graphile_worker.

CREATE FUNCTION fila_llm_job_key(prompt_id INT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$ SELECT 'fila_llm_anahuac:' || prompt_id $$;

CREATE FUNCTION fila_llm_enqueue(prompt_ids INT[]) RETURNS INT
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  specs graphile_worker.job_spec[];
BEGIN
  SELECT array_agg(
           ROW('process_prompt', json_build_object('id', id), NULL,
               now() - (max_id - id) * interval '1 microsecond',
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

COMMENT ON FUNCTION fila_llm_enqueue(INT[]) IS
  'fila-llm: (re)enqueue process_prompt jobs for these fila_llm_anahuac ids, FIFO by id, one job per id.';

CREATE FUNCTION fila_llm_enqueue_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  PERFORM fila_llm_enqueue(array_agg(id ORDER BY id))
     FROM inserted_rows
    WHERE estatus = 'pendiente';
  RETURN NULL;
END $$;

CREATE FUNCTION fila_llm_enqueue_reset() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  PERFORM fila_llm_enqueue(array_agg(n.id ORDER BY n.id))
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

-- Only the triggers (running as this function's owner) and the operators' own
-- admin role need to enqueue directly.
REVOKE EXECUTE ON FUNCTION fila_llm_enqueue(INT[]) FROM PUBLIC;
