-- The LLM's slot runs only prompts.
--
-- Until now window_gate (the crontab's task) and enqueue_prompts (a bulk
-- statement's jobs) were graphile_worker jobs beside the prompts, at priority
-- -1, and took the one slot that feeds the LLM: at 1,000,000 pending rows the
-- LLM sat idle 5 s a minute behind window_gate, and 19.5 s behind the jobs of a
-- 300,000-row INSERT. They now live in a graphile-worker queue of their own,
-- the schema fila_llm_housekeeping (installed by src/migrate.ts before this
-- file runs, with graphile-worker's own migrations), which each worker process
-- runs with a second runner beside the prompts' (docs/architecture.md).
--
-- A second schema rather than a second task list on the same table: a
-- graphile-worker fetch walks its jobs in (priority, run_at) order and skips
-- those it may not take, so a runner that takes only window_gate had to step
-- over every waiting prompt to find none: 0.26 s at 1,000,000 prompts, on
-- every poll. In a table of their own, the housekeeping jobs are found at once.

-- True while a bulk statement's jobs are still being added: an enqueue_prompts
-- job waits or runs (one that graphile-worker gave up on does not count).
-- The triggers and the orphan repair (src/sql/jobs.ts) both ask it.
CREATE FUNCTION fila_llm_bulk_enqueue_pending() RETURNS BOOLEAN
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  SELECT EXISTS (SELECT 1 FROM fila_llm_housekeeping._private_jobs j
                   JOIN fila_llm_housekeeping._private_tasks t ON t.id = j.task_id
                  WHERE t.identifier = 'enqueue_prompts' AND j.attempts < j.max_attempts)
$$;

-- Bulk statements get an enqueue_prompts job of their own in the housekeeping
-- queue. While one is still adding its jobs, later statements (small ones
-- too) get one as well, rather than their jobs at once, so that their rows can
-- never run before the bulk rows inserted first: the prompts keep flowing
-- while a bulk statement's jobs are being added. The housekeeping runner has
-- one slot and takes its jobs in run_at order, so the statements' jobs are
-- added in the order the statements ran. No job key: a keyed job that is
-- running has its key taken by the next add_job, which then gives up on it
-- for good if it fails, and every inserting transaction would wait on that
-- one job row until it commits.
CREATE OR REPLACE FUNCTION fila_llm_enqueue_statement(prompt_ids INT[]) RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  IF cardinality(prompt_ids) IS NULL THEN
    RETURN;
  ELSIF cardinality(prompt_ids) <= 1000 AND NOT fila_llm_bulk_enqueue_pending() THEN
    PERFORM fila_llm_enqueue(prompt_ids);
  ELSE
    -- run_at by the clock, not now(): two statements of one transaction keep their order.
    PERFORM fila_llm_housekeeping.add_job('enqueue_prompts',
      json_build_array(json_build_object('from', prompt_ids[1], 'to', prompt_ids[cardinality(prompt_ids)], 'at', now())),
      run_at := clock_timestamp());
  END IF;
END $$;

REVOKE EXECUTE ON FUNCTION fila_llm_enqueue_statement(INT[]) FROM PUBLIC;

-- A bulk statement whose jobs were still being added moves to the new queue
-- with its ranges; the crontab's gate jobs of the old place are dropped (the
-- housekeeping runner's crontab schedules its own).
SELECT fila_llm_housekeeping.add_job('enqueue_prompts', j.payload, run_at := j.run_at)
  FROM graphile_worker._private_jobs j
  JOIN graphile_worker._private_tasks t ON t.id = j.task_id
 WHERE t.identifier = 'enqueue_prompts';
DELETE FROM graphile_worker._private_jobs j
 USING graphile_worker._private_tasks t
 WHERE t.id = j.task_id AND t.identifier IN ('enqueue_prompts', 'window_gate');

-- The jobs that are locked (running, or held by a dead worker), found without
-- reading every job: the reaper looks for them every 5 s, status for the
-- prompt in flight, and graphile-worker itself every few minutes (its
-- 4-hour stale-lock sweep, `locked_at < now() - 4 hours`). Without these,
-- each of those read every waiting job: 0.2 s at 1,000,000 prompts. Only
-- locked jobs are in them, so they stay a few entries long. An index of ours on
-- graphile-worker's table: an upgrade of graphile-worker must keep it (see
-- docs/architecture.md).
CREATE INDEX fila_llm_jobs_locked ON graphile_worker._private_jobs (locked_at) WHERE locked_at IS NOT NULL;
CREATE INDEX fila_llm_housekeeping_jobs_locked ON fila_llm_housekeeping._private_jobs (locked_at) WHERE locked_at IS NOT NULL;
