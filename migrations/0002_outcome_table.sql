-- What the legacy table has no column for: why a prompt failed, which model
-- answered, and the token counts the server itself reported (tiktoken's counts
-- in fila_llm_anahuac are only an approximation for a self-hosted model).
-- One row per prompt, written in the same statement as the legacy row.
-- No foreign key: ON DELETE CASCADE would add a trigger to the legacy table.
CREATE TABLE fila_llm_outcome (
    prompt_id INT PRIMARY KEY,
    estatus VARCHAR(10) NOT NULL,
    error_message TEXT,
    -- Failures counted against this prompt (outages are not counted).
    attempts INT NOT NULL DEFAULT 0,
    provider TEXT,
    model TEXT,
    server_tokens_in INT,
    server_tokens_out INT,
    http_status INT,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

COMMENT ON TABLE fila_llm_outcome IS
  'fila-llm: the last outcome of each prompt of fila_llm_anahuac (error message, model, server-reported tokens).';
