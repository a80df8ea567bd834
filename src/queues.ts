/**
 * The two graphile-worker queues of a fila-llm database, by schema: the
 * prompts' (graphile_worker: process_prompt only, the lanes' runners) and the
 * housekeeping jobs' (window_gate from the crontab, enqueue_prompts for bulk
 * statements), apart so that the runner feeding an LLM never meets them, nor
 * they the prompts (migrations/0014_housekeeping_queue.sql).
 */
export const PROMPTS_SCHEMA = "graphile_worker";
export const HOUSEKEEPING_SCHEMA = "fila_llm_housekeeping";
