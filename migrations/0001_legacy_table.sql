-- The legacy system of record, exactly as the old system created it.
-- Production already has it, with data: IF NOT EXISTS leaves that table and
-- its rows untouched. Never add a column or constraint here; legacy readers
-- depend on this shape.
CREATE TABLE IF NOT EXISTS fila_llm_anahuac (
    id SERIAL PRIMARY KEY,
    prompt TEXT NOT NULL,
    respuesta TEXT,
    fecha_in TIMESTAMP DEFAULT NOW(),
    fecha_out TIMESTAMP,
    tokens_in INT,
    tokens_out INT,
    estatus VARCHAR(10) NOT NULL DEFAULT 'pendiente' CHECK (estatus IN ('pendiente', 'listo', 'error')),
    tiempo_ejecucion NUMERIC(10, 2)
);
