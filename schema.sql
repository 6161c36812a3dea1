-- clnode schema. Every node applies it at start; every statement is idempotent.
-- The leader-mode nodes share one database; every member has its own.

-- One row per committed block. Append-only: a committed height is never
-- updated, overwritten or deleted (enforced by the triggers below).
CREATE TABLE IF NOT EXISTS payloads (
    block_number  BIGINT PRIMARY KEY CHECK (block_number >= 1),
    block_hash    TEXT NOT NULL UNIQUE,          -- lowercase 0x hex
    parent_hash   TEXT NOT NULL,
    payload_data  TEXT NOT NULL,                 -- the Engine API execution payload, JSON, as the client built it
    requests_data TEXT NOT NULL DEFAULT '[]',    -- JSON list of EIP-7685 request strings
    timestamp     BIGINT NOT NULL,
    created_at    TIMESTAMPTZ DEFAULT NOW(),
    -- What an exact replay needs besides the payload (all feed the block hash):
    parent_beacon_block_root TEXT NOT NULL,
    blob_versioned_hashes    TEXT NOT NULL DEFAULT '[]',  -- JSON list
    payload_version          SMALLINT NOT NULL,           -- engine_getPayloadV4 or V5
    term                     BIGINT NOT NULL,             -- fencing term of the leader that committed it
    -- The committing leader's Ed25519 signature over the record (0x hex),
    -- served unchanged by every node so members can check the cluster
    -- committed it. NULL only for blocks committed without a signing key.
    leader_signature         TEXT
);
-- Tables made before the column existed. Guarded, because ALTER TABLE takes
-- an ACCESS EXCLUSIVE lock on payloads even when the column is there, and
-- every node applies this file at every start: unguarded, each restart would
-- briefly block every commit and every read of the chain.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = 'payloads'::regclass AND attname = 'leader_signature' AND NOT attisdropped) THEN
        ALTER TABLE payloads ADD COLUMN IF NOT EXISTS leader_signature TEXT;
    END IF;
END $$;

-- The chain this database belongs to: set once, by the first node to start.
CREATE TABLE IF NOT EXISTS chain_meta (
    id           SMALLINT PRIMARY KEY CHECK (id = 1),
    genesis_hash TEXT NOT NULL,
    chain_id     BIGINT NOT NULL
);

-- The fence: the term of the only leader allowed to commit. Raised by a new
-- leader before it builds; checked by every commit under the same row lock.
CREATE TABLE IF NOT EXISTS fence (
    id         SMALLINT PRIMARY KEY CHECK (id = 1),
    term       BIGINT NOT NULL,
    holder     TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
INSERT INTO fence (id, term, holder) VALUES (1, 0, '') ON CONFLICT (id) DO NOTHING;

CREATE OR REPLACE FUNCTION clnode_refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'clnode: payloads is append-only (% refused)', TG_OP;
END $$;

CREATE OR REPLACE TRIGGER payloads_append_only
    BEFORE UPDATE OR DELETE ON payloads
    FOR EACH ROW EXECUTE FUNCTION clnode_refuse_rewrite();
CREATE OR REPLACE TRIGGER payloads_no_truncate
    BEFORE TRUNCATE ON payloads
    FOR EACH STATEMENT EXECUTE FUNCTION clnode_refuse_rewrite();

-- The fenced commit, in one statement so that no client (paused, killed or
-- slow) ever holds the fence lock between round trips. Returns
--   'committed'                      the block is now the committed head;
--   'fenced:<term>'                  the fence holds another term: step down;
--   'not_head:<number>:<hash>'       the parent is not the committed head;
--   'clock:<now_s>'                  the block's timestamp is more than
--                                    p_max_lead_ms ahead of this database's
--                                    now() (whole seconds since the epoch
--                                    given): the leader's clock is wrong.
-- This database's clock is the cluster's one time reference
-- (ARCHITECTURE.md, "Timestamps"): whatever a leader's clock says, no block
-- is committed further ahead of it than the lead cap, so the next leader
-- never waits longer than that for time to catch up.
-- Earlier versions took neither p_max_lead_ms nor p_leader_signature (or
-- only one of them); a new parameter list is a new function (an overload),
-- so every earlier one is dropped explicitly: left in place, an old binary
-- could still commit without the clock check or the signature.
DROP FUNCTION IF EXISTS clnode_commit_block(BIGINT, BIGINT, TEXT, TEXT, TEXT, TEXT, BIGINT, TEXT, TEXT, SMALLINT);
DROP FUNCTION IF EXISTS clnode_commit_block(BIGINT, BIGINT, TEXT, TEXT, TEXT, TEXT, BIGINT, TEXT, TEXT, SMALLINT, BIGINT);
DROP FUNCTION IF EXISTS clnode_commit_block(BIGINT, BIGINT, TEXT, TEXT, TEXT, TEXT, BIGINT, TEXT, TEXT, SMALLINT, TEXT);
CREATE OR REPLACE FUNCTION clnode_commit_block(
    p_term BIGINT, p_number BIGINT, p_hash TEXT, p_parent TEXT, p_payload TEXT,
    p_requests TEXT, p_timestamp BIGINT, p_beacon_root TEXT, p_versioned_hashes TEXT,
    p_payload_version SMALLINT, p_max_lead_ms BIGINT, p_leader_signature TEXT
) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    fence_term  BIGINT;
    head_number BIGINT;
    head_hash   TEXT;
BEGIN
    -- Durable whatever the server's or the session's default: this commit
    -- returns only once its WAL is flushed here and, where the server has
    -- synchronous standbys, there too ('on'). 'off' or 'local' would let a
    -- crash or a failover take back a block already reported committed;
    -- 'remote_write' would let an operating-system crash of the standby do
    -- it. A stronger setting ('remote_apply') is left as it is.
    IF current_setting('synchronous_commit') IN ('off', 'local', 'remote_write') THEN
        PERFORM set_config('synchronous_commit', 'on', true);
    END IF;
    SELECT term INTO fence_term FROM fence WHERE id = 1 FOR UPDATE;
    IF fence_term IS DISTINCT FROM p_term THEN
        RETURN 'fenced:' || COALESCE(fence_term, -1);
    END IF;
    SELECT block_number, block_hash INTO head_number, head_hash
        FROM payloads ORDER BY block_number DESC LIMIT 1;
    IF head_number IS NULL THEN
        SELECT 0, genesis_hash INTO head_number, head_hash FROM chain_meta WHERE id = 1;
    END IF;
    IF head_number IS NULL OR p_number <> head_number + 1 OR p_parent <> head_hash THEN
        RETURN 'not_head:' || COALESCE(head_number, -1) || ':' || COALESCE(head_hash, '');
    END IF;
    -- now(): the transaction's start, the same instant as created_at.
    IF p_timestamp::NUMERIC * 1000 > extract(epoch FROM now()) * 1000 + p_max_lead_ms THEN
        RETURN 'clock:' || floor(extract(epoch FROM now()))::BIGINT;
    END IF;
    INSERT INTO payloads (block_number, block_hash, parent_hash, payload_data, requests_data, timestamp,
                          parent_beacon_block_root, blob_versioned_hashes, payload_version, term,
                          leader_signature)
        VALUES (p_number, p_hash, p_parent, p_payload, p_requests, p_timestamp,
                p_beacon_root, p_versioned_hashes, p_payload_version, p_term, p_leader_signature);
    PERFORM pg_notify('clnode_blocks', p_number::TEXT);
    RETURN 'committed';
END $$;

-- Member: appends a verified, executed page in one statement (one round
-- trip). The first block must extend the stored head (the caller has checked
-- that the page links within itself). Returns
--   'appended:<number>'              the new stored head;
--   'not_head:<number>:<hash>'       the page does not extend the stored head.
-- The commit does not wait for the WAL flush (synchronous_commit off, this
-- transaction only): a member's rows are a replica of the leader's durable
-- record, and a crash (of PostgreSQL or the machine) that loses the last
-- ones leaves the execution client
-- ahead of the database, which the member's resume rules repair from the
-- sync API (ARCHITECTURE.md, "Resume rules"). The leader's commit above
-- always waits.
DROP FUNCTION IF EXISTS clnode_append_replica(BIGINT[], TEXT[], TEXT[], TEXT[], TEXT[], BIGINT[], TEXT[], TEXT[],
                                               SMALLINT[], BIGINT[]);
-- p_signatures: the leader signatures the member verified, stored so that
-- members of this member are served (and check) the same ones.
CREATE OR REPLACE FUNCTION clnode_append_replica(
    p_numbers BIGINT[], p_hashes TEXT[], p_parents TEXT[], p_payloads TEXT[], p_requests TEXT[],
    p_timestamps BIGINT[], p_roots TEXT[], p_versioned TEXT[], p_versions SMALLINT[], p_terms BIGINT[],
    p_signatures TEXT[]
) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    head_number BIGINT;
    head_hash   TEXT;
    last_number BIGINT := p_numbers[array_length(p_numbers, 1)];
BEGIN
    SELECT block_number, block_hash INTO head_number, head_hash
        FROM payloads ORDER BY block_number DESC LIMIT 1;
    IF head_number IS NULL THEN
        SELECT 0, genesis_hash INTO head_number, head_hash FROM chain_meta WHERE id = 1;
    END IF;
    IF head_number IS NULL OR p_numbers[1] <> head_number + 1 OR p_parents[1] <> head_hash THEN
        RETURN 'not_head:' || COALESCE(head_number, -1) || ':' || COALESCE(head_hash, '');
    END IF;
    INSERT INTO payloads (block_number, block_hash, parent_hash, payload_data, requests_data, timestamp,
                          parent_beacon_block_root, blob_versioned_hashes, payload_version, term,
                          leader_signature)
        SELECT * FROM unnest(p_numbers, p_hashes, p_parents, p_payloads, p_requests, p_timestamps,
                             p_roots, p_versioned, p_versions, p_terms, p_signatures);
    -- Wakes this node's own API long polls (members serving members).
    PERFORM pg_notify('clnode_blocks', last_number::TEXT);
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN 'appended:' || last_number;
END $$;
