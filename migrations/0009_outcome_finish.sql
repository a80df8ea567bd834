-- How each answer ended, and what a cut generation had produced.
--
-- finish_reason, for every prompt that ran: the server's own reason for a
-- 'listo' row ('stop'; 'length' when LLM_MAX_TOKENS or the server's limit cut
-- it short: the row is listo, and this flag tells the operator so), or what
-- ended the call for the others: 'repetition', 'stall', 'timeout',
-- 'too_large', 'rejected', 'unavailable', 'bad_response', 'empty_prompt'
-- (src/llm/errors.ts lists them).
ALTER TABLE fila_llm_outcome ADD COLUMN finish_reason TEXT;
-- The first and last 2 KB of an answer whose generation was cut (a loop, a
-- stall, a timeout), so that an operator can see it by SQL.
ALTER TABLE fila_llm_outcome ADD COLUMN cut_answer_head TEXT;
ALTER TABLE fila_llm_outcome ADD COLUMN cut_answer_tail TEXT;
