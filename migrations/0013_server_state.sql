-- What the worker last saw of each LLM server, so that `fila-llm status` can
-- tell an operator why nothing runs (an outage since 02:13, a model that
-- cannot load, …) without asking the worker. Written on each change of state,
-- never per prompt.
CREATE TABLE fila_llm_servers (
    -- The server's URL without credentials.
    server TEXT PRIMARY KEY,
    -- answering, outage, misconfigured, loading, released.
    state TEXT NOT NULL,
    since TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Why, for outage and misconfigured.
    message TEXT,
    -- The last explicit model load (Ollama): when, and how long it took.
    last_load_at TIMESTAMPTZ,
    last_load_seconds NUMERIC(10, 2),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

COMMENT ON TABLE fila_llm_servers IS
  'fila-llm: the state of each LLM server as the worker last saw it (answering, outage, misconfigured, loading, released).';

-- Where the server's time went, per prompt, as the server measured it
-- (Ollama's load_duration, prompt_eval_duration and eval_duration; llama.cpp's
-- timings), in seconds; and the model name the server reported, beside the
-- one that was asked for (model), which llama-server replaces by its file path.
ALTER TABLE fila_llm_outcome ADD COLUMN load_seconds NUMERIC(10, 3);
ALTER TABLE fila_llm_outcome ADD COLUMN prompt_eval_seconds NUMERIC(10, 3);
ALTER TABLE fila_llm_outcome ADD COLUMN eval_seconds NUMERIC(10, 3);
ALTER TABLE fila_llm_outcome ADD COLUMN server_model TEXT;
