-- Several LLM servers, one queue: a lane per server (src/lane.ts).
--
-- Which server answered each prompt: its URL without credentials, as
-- LLM_BASE_URL names it. NULL for prompts answered before lanes existed.
ALTER TABLE fila_llm_outcome ADD COLUMN server TEXT;

-- Which graphile-worker pool runs each server's lane now (the holder of its
-- lane lock): status joins it to the locked jobs to show the prompts in
-- flight on each server. Written when a process takes a lane, never per
-- prompt.
ALTER TABLE fila_llm_servers ADD COLUMN holder_pool TEXT;
ALTER TABLE fila_llm_servers ADD COLUMN holder_since TIMESTAMPTZ;

COMMENT ON COLUMN fila_llm_servers.state IS
  'answering, loading, released (up); outage, misconfigured (down); probing (its outage back-off is over and its health probe runs).';
