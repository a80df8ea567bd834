-- A prompt's graphile-worker job, defined once. Every place that enqueues a
-- prompt (the triggers, bulk enqueue, orphan repair, the task's own retry)
-- builds it here, so its task, payload, key and flag cannot drift apart.
--
-- * task process_prompt, payload {"id": <row id>} plus "failures" once the
--   prompt has failed by its own fault (graphile-worker's attempt count is not
--   used: see docs/architecture.md, "Retries");
-- * key fila_llm_anahuac:<id>, so a row never has two jobs;
-- * flag 'llm', which the worker's forbiddenFlags uses to keep every process
--   but the leader, and every moment the queue is closed, away from it. The
--   worker reads the flag from fila_llm_prompt_job_flag() at start-up.

CREATE FUNCTION fila_llm_prompt_job_flag() RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$ SELECT 'llm' $$;

CREATE FUNCTION fila_llm_prompt_job(prompt_id INT, failures INT, run_at TIMESTAMPTZ) RETURNS graphile_worker.job_spec
LANGUAGE sql IMMUTABLE AS $$
  SELECT ROW('process_prompt',
             CASE WHEN failures > 0 THEN json_build_object('id', prompt_id, 'failures', failures)
                  ELSE json_build_object('id', prompt_id) END,
             NULL, run_at, NULL, fila_llm_job_key(prompt_id), NULL, ARRAY[fila_llm_prompt_job_flag()])::graphile_worker.job_spec
$$;

CREATE OR REPLACE FUNCTION fila_llm_enqueue(prompt_ids INT[], newest_run_at TIMESTAMPTZ DEFAULT now(), anchor_id INT DEFAULT NULL)
RETURNS INT
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  specs graphile_worker.job_spec[];
BEGIN
  SELECT array_agg(fila_llm_prompt_job(id, 0, newest_run_at - (coalesce(anchor_id, max_id) - id) * interval '1 microsecond')
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

-- The task's own way back into the queue: a retry (later run_at, failures
-- counted) or a put-back that keeps the prompt's place (its old run_at). Called
-- from inside the running job: add_jobs takes the key from the locked job and
-- gives it to the new one, and the running one is deleted when it completes.
CREATE FUNCTION fila_llm_requeue(prompt_id INT, failures INT, run_at TIMESTAMPTZ) RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  PERFORM graphile_worker.add_jobs(ARRAY[fila_llm_prompt_job(prompt_id, failures, run_at)]);
END $$;

REVOKE EXECUTE ON FUNCTION fila_llm_prompt_job(INT, INT, TIMESTAMPTZ), fila_llm_requeue(INT, INT, TIMESTAMPTZ) FROM PUBLIC;
