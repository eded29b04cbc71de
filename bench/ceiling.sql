-- What PostgreSQL alone can do with one batch's statements: `batch` transfers, written as the
-- Batcher writes them (the chain-head lock, the account locks in id order, the transfer rows,
-- the account UPDATEs, the chain head, one durable COMMIT), with every decision precomputed so
-- that no Python runs in the loop. With `hot` = 0 each transfer moves between a random pair of
-- wallets (2 x batch account rows); with `hot` = 1 every transfer credits account 2, the
-- platform fee account in a database `coffer bench` made first (batch + 1 account rows).
--
--   pgbench -n -M prepared -c 1 -T 8 -D batch=64 -D hot=0 -f bench/ceiling.sql SCRATCH_COPY
--
-- It writes transfers whose accounts' counters do not match them: run it only on a scratch
-- copy (`createdb -T coffer_bench SCRATCH_COPY`), where accounts 3..10002 are the bench's
-- wallets. See bench/README.md, "The ceiling".
\set accounts (2 - :hot) * :batch + :hot
BEGIN;
SELECT last_transfer_id AS last FROM ledger_chain WHERE id = 1 FOR UPDATE \gset
SELECT id FROM ledger_accounts
WHERE id = ANY(ARRAY(
    SELECT (random() * 9999 + 2)::int8 FROM generate_series(1, :accounts::int8)))
ORDER BY id FOR UPDATE;
INSERT INTO ledger_transfers (id, group_id, debit_account_id, credit_account_id, asset, amount,
    type, phase, idempotency_source, metadata, created_at, debit_balance_after,
    credit_balance_after, hash)
SELECT :last::int8 + g, :last::int8 + g, p.d, CASE WHEN :hot::int = 1 THEN 2 ELSE p.d + 1 END,
    'BENCH', 1, 'bench', 'posted', 'bench', '{}', now(), 100, 100, sha256(g::text::bytea)
FROM generate_series(1, :batch::int8) AS g,
    -- A random odd wallet per row; naming g makes the planner draw it again for every row
    -- instead of once for the whole batch.
    LATERAL (SELECT 3 + 2 * floor(random() * 5000)::int8 + 0 * g AS d) AS p;
UPDATE ledger_accounts SET credits_posted = credits_posted + 1
WHERE id = ANY(ARRAY(
    SELECT (random() * 9999 + 2)::int8 FROM generate_series(1, :accounts::int8)));
UPDATE ledger_chain SET last_transfer_id = :last::int8 + :batch::int8 WHERE id = 1;
COMMIT;
