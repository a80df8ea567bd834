-- Rows that were already 'pendiente' before fila-llm was installed (the old
-- system's backlog) are enqueued once, oldest first.
SELECT fila_llm_enqueue(array_agg(id ORDER BY id))
  FROM fila_llm_anahuac
 WHERE estatus = 'pendiente';
