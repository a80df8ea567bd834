-- Operator queries at scale (issue 10, part 4): `status`, `report` and
-- window_gate's lines must stay under a second with 10,000,000 rows in the
-- legacy table, and the worker's one UPDATE per answer must not get slower.
--
-- * Exact counts by estatus in O(1): fila_llm_counts, an append-only table of
--   deltas written by the statement triggers (one row per statement that
--   changes a count, never an UPDATE of one counter row, so that concurrent
--   INSERT transactions never wait for each other), summed when read, and
--   folded into one row every minute by window_gate (fila_llm_compact_counts).
-- * Indexes on the legacy table (its columns and constraints are untouched):
--   the pendiente rows by id, the finished rows by fecha_out, the error rows
--   by fecha_out. Partial, so a prompt's answer adds one index entry, not three.
--
-- The legacy table keeps its usual owner in production (docs/operations.md,
-- Least privilege), and only the owner may create an index on it: the DBA
-- creates these three before this migration runs as the worker role, and the
-- migration then finds them; when it cannot create them itself it says which
-- statements to run.

-- Writers wait until this commits, so that no statement changes the table
-- between the first count below and the triggers that keep it; readers do not.
LOCK TABLE fila_llm_anahuac IN SHARE ROW EXCLUSIVE MODE;

DO $$
DECLARE
  -- name, then statement. docs/operations.md (Least privilege) repeats the
  -- statements for the DBA; test/migrations.test.ts checks they agree.
  wanted CONSTANT TEXT[][] := ARRAY[
    -- The queue's head: the oldest pendiente row (lowest id), a count up to K.
    -- Keyed by id alone: the orphan repair also reads "the oldest K by id".
    ['fila_llm_anahuac_pendiente_idx',
     'CREATE INDEX fila_llm_anahuac_pendiente_idx ON fila_llm_anahuac (id) WHERE estatus = ''pendiente'''],
    -- A night's runs, by fecha_out. Rows retried back to pendiente keep an
    -- old fecha_out but are in no night, so they are left out.
    ['fila_llm_anahuac_fecha_out_idx',
     'CREATE INDEX fila_llm_anahuac_fecha_out_idx ON fila_llm_anahuac (fecha_out) WHERE estatus IN (''listo'', ''error'')'],
    -- The most recent failures (status's error groups), and retry --errors.
    ['fila_llm_anahuac_error_idx',
     'CREATE INDEX fila_llm_anahuac_error_idx ON fila_llm_anahuac (fecha_out DESC NULLS LAST, id DESC) WHERE estatus = ''error''']];
  missing TEXT[] := '{}';
BEGIN
  FOR i IN 1 .. array_length(wanted, 1) LOOP
    IF to_regclass(wanted[i][1]) IS NULL THEN
      missing := missing || wanted[i][2];
    END IF;
  END LOOP;
  IF cardinality(missing) = 0 THEN
    RETURN;
  END IF;
  IF NOT pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = 'fila_llm_anahuac'::regclass), 'USAGE') THEN
    RAISE EXCEPTION 'only the owner of fila_llm_anahuac may add its indexes; as the table''s owner, run: %;',
      array_to_string(missing, '; ')
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'docs/operations.md, Least privilege, step 1 lists them; then run the migration again';
  END IF;
  FOR i IN 1 .. cardinality(missing) LOOP
    EXECUTE missing[i];
  END LOOP;
END $$;

-- Counts by estatus, as deltas: each row is what one statement changed. The
-- counts are the sums. max_run_seconds is an upper bound of tiempo_ejecucion
-- over finished rows (the largest any statement wrote; deleting a row does
-- not lower it): a run that ended after a night closed may have started
-- inside it, so a night's runs are found by fecha_out up to its closing plus
-- this bound.
CREATE TABLE fila_llm_counts (
    pendiente BIGINT NOT NULL DEFAULT 0,
    listo BIGINT NOT NULL DEFAULT 0,
    error BIGINT NOT NULL DEFAULT 0,
    max_run_seconds NUMERIC(10, 2)
);

COMMENT ON TABLE fila_llm_counts IS
  'fila-llm: fila_llm_anahuac rows by estatus, as deltas to sum (one row per statement, folded every minute); fila_llm_recount() rebuilds it.';

-- Serialises what rewrites fila_llm_counts as a whole (compaction, recount,
-- TRUNCATE), so that each one's statements see the others' result. The
-- triggers' appends never take it. Any fixed number, unique among fila-llm's
-- advisory locks (src/migrate.ts uses 7004201).
CREATE FUNCTION fila_llm_lock_counts() RETURNS VOID
LANGUAGE sql AS $$ SELECT pg_advisory_xact_lock(7004215) $$;

-- The INSERT trigger (0004) also counts, in the same pass over the statement's rows.
CREATE OR REPLACE FUNCTION fila_llm_enqueue_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  pending_ids INT[];
BEGIN
  WITH counted AS (
    SELECT array_agg(id ORDER BY id) FILTER (WHERE estatus = 'pendiente') AS pending_ids,
           count(*) FILTER (WHERE estatus = 'pendiente') AS pendiente,
           count(*) FILTER (WHERE estatus = 'listo') AS listo,
           count(*) FILTER (WHERE estatus = 'error') AS error,
           max(tiempo_ejecucion) FILTER (WHERE estatus <> 'pendiente') AS max_run_seconds
      FROM inserted_rows),
  appended AS (
    INSERT INTO fila_llm_counts (pendiente, listo, error, max_run_seconds)
    SELECT pendiente, listo, error, max_run_seconds FROM counted
     WHERE pendiente + listo + error > 0)
  SELECT c.pending_ids INTO pending_ids FROM counted c;
  IF pending_ids IS NOT NULL THEN
    PERFORM fila_llm_enqueue_statement(pending_ids);
  END IF;
  RETURN NULL;
END $$;

-- The UPDATE trigger (0004) also counts. Each old row counts −1 and each new
-- row +1 for its estatus, so no join is needed (and an UPDATE that changes
-- ids is counted right). The longest run is recorded when this statement
-- wrote a longer one than its rows had: a value already in the table is
-- already covered. The retry path's join runs only when some row is
-- pendiente afterwards, never for the worker's answer.
CREATE OR REPLACE FUNCTION fila_llm_enqueue_reset() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  any_pending BOOLEAN;
BEGIN
  WITH n AS (
    SELECT count(*) FILTER (WHERE estatus = 'pendiente') AS pendiente, count(*) FILTER (WHERE estatus = 'listo') AS listo,
           count(*) FILTER (WHERE estatus = 'error') AS error,
           max(tiempo_ejecucion) FILTER (WHERE estatus <> 'pendiente') AS max_run_seconds
      FROM new_rows),
  o AS (
    SELECT count(*) FILTER (WHERE estatus = 'pendiente') AS pendiente, count(*) FILTER (WHERE estatus = 'listo') AS listo,
           count(*) FILTER (WHERE estatus = 'error') AS error,
           max(tiempo_ejecucion) FILTER (WHERE estatus <> 'pendiente') AS max_run_seconds
      FROM old_rows),
  appended AS (
    INSERT INTO fila_llm_counts (pendiente, listo, error, max_run_seconds)
    SELECT n.pendiente - o.pendiente, n.listo - o.listo, n.error - o.error,
           CASE WHEN n.max_run_seconds > o.max_run_seconds OR o.max_run_seconds IS NULL THEN n.max_run_seconds END
      FROM n, o
     WHERE n.pendiente <> o.pendiente OR n.listo <> o.listo OR n.error <> o.error
        OR n.max_run_seconds > o.max_run_seconds OR (o.max_run_seconds IS NULL AND n.max_run_seconds IS NOT NULL))
  SELECT n.pendiente > 0 INTO any_pending FROM n;
  IF any_pending THEN
    PERFORM fila_llm_enqueue_statement(array_agg(n.id ORDER BY n.id))
       FROM new_rows n
       JOIN old_rows o ON o.id = n.id
      WHERE n.estatus = 'pendiente'
        AND o.estatus <> 'pendiente';
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION fila_llm_count_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  INSERT INTO fila_llm_counts (pendiente, listo, error)
  SELECT -count(*) FILTER (WHERE estatus = 'pendiente'), -count(*) FILTER (WHERE estatus = 'listo'),
         -count(*) FILTER (WHERE estatus = 'error')
    FROM deleted_rows
  HAVING count(*) > 0;
  RETURN NULL;
END $$;

-- TRUNCATE holds the legacy table exclusively, so no other writer has a delta
-- in flight: every count is now zero. TRUNCATE, not DELETE, empties the
-- deltas whatever this transaction's snapshot can see.
CREATE FUNCTION fila_llm_count_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  PERFORM fila_llm_lock_counts();
  TRUNCATE fila_llm_counts;
  RETURN NULL;
END $$;

CREATE TRIGGER fila_llm_count_deleted
  AFTER DELETE ON fila_llm_anahuac
  REFERENCING OLD TABLE AS deleted_rows
  FOR EACH STATEMENT EXECUTE FUNCTION fila_llm_count_deleted();

CREATE TRIGGER fila_llm_count_truncated
  AFTER TRUNCATE ON fila_llm_anahuac
  FOR EACH STATEMENT EXECUTE FUNCTION fila_llm_count_truncated();

-- Folds the deltas into one row; returns how many rows it folded (0 when
-- there was nothing to fold). window_gate calls it every minute, so reading
-- the counts sums at most a minute's statements. Deltas of transactions still
-- open are not visible to the DELETE, so they stay, and count once they commit.
CREATE FUNCTION fila_llm_compact_counts() RETURNS INT
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  folded INT;
BEGIN
  IF (SELECT count(*) FROM fila_llm_counts) <= 1 THEN
    RETURN 0;
  END IF;
  -- Taken before the DELETE, whose snapshot then sees a recount or TRUNCATE that finished meanwhile.
  PERFORM fila_llm_lock_counts();
  WITH gone AS (
    DELETE FROM fila_llm_counts RETURNING *),
  folded_row AS (
    INSERT INTO fila_llm_counts (pendiente, listo, error, max_run_seconds)
    SELECT sum(pendiente), sum(listo), sum(error), max(max_run_seconds) FROM gone HAVING count(*) > 0)
  SELECT count(*) INTO folded FROM gone;
  RETURN folded;
END $$;

COMMENT ON FUNCTION fila_llm_compact_counts() IS
  'fila-llm: fold fila_llm_counts into one row (window_gate runs it every minute); returns how many rows were folded.';

-- Counts fila_llm_anahuac again, from scratch, and replaces the deltas: the
-- fix if the counts are ever doubted, e.g. after the triggers were disabled
-- (ALTER TABLE … DISABLE TRIGGER, session_replication_role = replica). One
-- scan of the table; writers wait for it, readers do not.
CREATE FUNCTION fila_llm_recount(OUT pendiente BIGINT, OUT listo BIGINT, OUT error BIGINT)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  -- A snapshot taken before the lock below would miss rows committed while it waited.
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'fila_llm_recount() must run in a READ COMMITTED transaction (got %)', current_setting('transaction_isolation');
  END IF;
  LOCK TABLE fila_llm_anahuac IN SHARE ROW EXCLUSIVE MODE;
  PERFORM fila_llm_lock_counts();
  DELETE FROM fila_llm_counts;
  INSERT INTO fila_llm_counts AS c (pendiente, listo, error, max_run_seconds)
  SELECT count(*) FILTER (WHERE a.estatus = 'pendiente'), count(*) FILTER (WHERE a.estatus = 'listo'),
         count(*) FILTER (WHERE a.estatus = 'error'), max(a.tiempo_ejecucion) FILTER (WHERE a.estatus <> 'pendiente')
    FROM fila_llm_anahuac a
  RETURNING c.pendiente, c.listo, c.error INTO pendiente, listo, error;
END $$;

COMMENT ON FUNCTION fila_llm_recount() IS
  'fila-llm: count fila_llm_anahuac by estatus from scratch into fila_llm_counts (after triggers were disabled, or if the counts are doubted).';

REVOKE EXECUTE ON FUNCTION fila_llm_lock_counts(), fila_llm_compact_counts(), fila_llm_recount() FROM PUBLIC;

-- The first count: the table as it is now, with the lock above held.
SELECT fila_llm_recount();
