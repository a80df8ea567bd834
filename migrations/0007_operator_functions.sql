-- The operators' steering, as SQL functions, so that people who live in SQL
-- have the same powers as `fila-llm retry|pause|resume|open-now|cancel` (the
-- CLI calls exactly these). The state they change lives in the database, so
-- it holds across restarts and across every worker process.
--
-- SECURITY DEFINER: an operator's role needs EXECUTE on these functions and
-- nothing on fila_llm_anahuac, fila_llm_control or graphile_worker. EXECUTE is
-- revoked from PUBLIC; grant it to the operators' role (docs/operations.md).

-- When window_gate last logged a progress line, so that exactly one process
-- logs one every few minutes while the queue is open.
ALTER TABLE fila_llm_control ADD COLUMN progress_logged_at TIMESTAMPTZ;

-- Puts one 'error' row back to 'pendiente'; the UPDATE trigger enqueues it
-- again with a fresh attempt count. False if the row is not in 'error'.
CREATE FUNCTION fila_llm_retry(prompt_id INT) RETURNS BOOLEAN
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  UPDATE fila_llm_anahuac SET estatus = 'pendiente'
   WHERE id = fila_llm_retry.prompt_id AND estatus = 'error';
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  UPDATE fila_llm_outcome o SET estatus = 'pendiente' WHERE o.prompt_id = fila_llm_retry.prompt_id;
  RETURN true;
END $$;

COMMENT ON FUNCTION fila_llm_retry(INT) IS
  'fila-llm: put one ''error'' row of fila_llm_anahuac back in the queue; false if it is not in ''error''.';

-- Every 'error' row, or only those that failed at or after `since` (their
-- fecha_out, read in this session's TimeZone like every fila-llm query), back
-- to 'pendiente' in one statement: one add_jobs call, FIFO by id.
CREATE FUNCTION fila_llm_retry_errors(since TIMESTAMPTZ DEFAULT NULL) RETURNS INT
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  retried INT[];
BEGIN
  WITH reset AS (
    UPDATE fila_llm_anahuac a SET estatus = 'pendiente'
     WHERE a.estatus = 'error'
       AND (since IS NULL OR a.fecha_out AT TIME ZONE current_setting('TimeZone') >= since)
    RETURNING a.id)
  SELECT coalesce(array_agg(id), '{}') INTO retried FROM reset;
  UPDATE fila_llm_outcome o SET estatus = 'pendiente' WHERE o.prompt_id = ANY (retried);
  RETURN cardinality(retried);
END $$;

COMMENT ON FUNCTION fila_llm_retry_errors(TIMESTAMPTZ) IS
  'fila-llm: put every ''error'' row back in the queue (or only those whose fecha_out is at or after since); returns how many.';

-- Paused: no prompt starts, not inside the window and not while forced open.
-- A prompt already running finishes.
CREATE FUNCTION fila_llm_pause() RETURNS VOID
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  UPDATE fila_llm_control SET paused = true, updated_at = now();
$$;

COMMENT ON FUNCTION fila_llm_pause() IS
  'fila-llm: stop starting prompts (inside the window too) until fila_llm_resume(); the one running finishes.';

-- Back to the normal schedule: not paused, and any open-now ended.
CREATE FUNCTION fila_llm_resume() RETURNS VOID
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  UPDATE fila_llm_control SET paused = false, open_until = NULL, updated_at = now();
$$;

COMMENT ON FUNCTION fila_llm_resume() IS
  'fila-llm: back to the normal schedule: unpaused, and any fila_llm_open_now() ended.';

-- Runs the queue now, outside the window, for `duration` (still one prompt at
-- a time). A pause still wins; the nightly window is unchanged.
CREATE FUNCTION fila_llm_open_now(duration INTERVAL DEFAULT interval '2 hours') RETURNS TIMESTAMPTZ
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  until TIMESTAMPTZ;
BEGIN
  IF duration IS NULL OR duration <= interval '0' THEN
    RAISE EXCEPTION 'fila_llm_open_now: duration must be a positive interval such as ''2 hours'' (got %)', duration;
  END IF;
  UPDATE fila_llm_control SET open_until = now() + duration, updated_at = now() RETURNING open_until INTO until;
  RETURN until;
END $$;

COMMENT ON FUNCTION fila_llm_open_now(INTERVAL) IS
  'fila-llm: run the queue now, outside the window, for this long (default 2 hours); returns until when. A pause still wins.';

-- Marks a 'pendiente' row 'error' with the message "cancelled by operator"
-- and removes its job. If its prompt is running at that moment, the answer
-- is thrown away: the worker only ever writes to a 'pendiente' row.
CREATE FUNCTION fila_llm_cancel(prompt_id INT) RETURNS BOOLEAN
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  UPDATE fila_llm_anahuac SET estatus = 'error', fecha_out = now()
   WHERE id = fila_llm_cancel.prompt_id AND estatus = 'pendiente';
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  INSERT INTO fila_llm_outcome AS o (prompt_id, estatus, error_message, finished_at)
  VALUES (fila_llm_cancel.prompt_id, 'error', 'cancelled by operator', now())
  ON CONFLICT ON CONSTRAINT fila_llm_outcome_pkey DO UPDATE
    SET estatus = 'error', error_message = excluded.error_message, http_status = NULL, finished_at = excluded.finished_at;
  PERFORM graphile_worker.remove_job(fila_llm_job_key(fila_llm_cancel.prompt_id));
  RETURN true;
END $$;

COMMENT ON FUNCTION fila_llm_cancel(INT) IS
  'fila-llm: mark a ''pendiente'' row ''error'' ("cancelled by operator") and remove its job; false if it is not pendiente.';

REVOKE EXECUTE ON FUNCTION fila_llm_retry(INT), fila_llm_retry_errors(TIMESTAMPTZ), fila_llm_pause(), fila_llm_resume(),
  fila_llm_open_now(INTERVAL), fila_llm_cancel(INT) FROM PUBLIC;
