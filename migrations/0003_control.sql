-- Operator steering that must hold across restarts and across several worker
-- processes, so it lives in the database, never in a worker's memory.
CREATE TABLE fila_llm_control (
    -- A single row.
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    -- Paused: no prompt starts, not even inside the window.
    paused BOOLEAN NOT NULL DEFAULT false,
    -- Forced open until this instant, even outside the window (an urgent batch).
    open_until TIMESTAMPTZ,
    -- The window state the gate task last saw, so that exactly one process
    -- logs each opening and closing.
    window_open BOOLEAN,
    window_changed_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO fila_llm_control DEFAULT VALUES;
