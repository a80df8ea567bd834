-- graphile-worker's public jobs view leaves out the payload, so operators
-- could not tell which prompt a job is for. This view adds it.
CREATE VIEW fila_llm_jobs AS
SELECT j.id AS job_id,
       (j.payload->>'id')::int AS prompt_id,
       coalesce((j.payload->>'failures')::int, 0) AS failures,
       t.identifier AS task_identifier,
       j.run_at, j.attempts, j.max_attempts, j.last_error,
       j.locked_at, j.locked_by, j.key, j.flags, j.created_at
  FROM graphile_worker._private_jobs j
  JOIN graphile_worker._private_tasks t ON t.id = j.task_id
 WHERE t.identifier = 'process_prompt';

COMMENT ON VIEW fila_llm_jobs IS
  'fila-llm: the process_prompt jobs with the fila_llm_anahuac id each is for, soonest first by (run_at, job_id).';
