-- Installed into template1 of the test bed's PostgreSQL template cluster (scripts/testbed/install.sh),
-- so every database FerretDB uses has it.
--
-- Why: FerretDB 1.24's postgresql backend pushes an equality filter down as
-- `_jsonb->'field' @> '"value"'` (jsonb containment), but builds each index as a btree on
-- `(_jsonb->'field')`, which only serves `=`. So every lookup, `_id` included, is a sequential
-- scan (docs/testbed.md, "FerretDB on PostgreSQL"). A GIN index on the same expression serves
-- `@>`. This trigger gives every btree index FerretDB creates on top-level fields a GIN twin, and
-- drops the twin with its index. The twins are invisible to MongoDB clients (FerretDB lists the
-- indexes from its own metadata) and are not unique: uniqueness stays with FerretDB's btree.
CREATE OR REPLACE FUNCTION ferretdb_gin_twin() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
    cmd record;
    idx record;
    exprs text[];
BEGIN
    FOR cmd IN SELECT objid FROM pg_event_trigger_ddl_commands()
               WHERE command_tag = 'CREATE INDEX' AND object_type = 'index' LOOP
        SELECT i.indrelid::regclass AS tbl, c.relname, am.amname, i.indnkeyatts
          INTO idx
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
         WHERE i.indexrelid = cmd.objid;
        -- The twin itself is a gin index: no recursion.
        CONTINUE WHEN idx.amname <> 'btree';
        SELECT array_agg(pg_get_indexdef(cmd.objid, k, true) ORDER BY k) INTO exprs
          FROM generate_series(1, idx.indnkeyatts) AS k;
        -- Only document fields, `(_jsonb -> 'name'::text)`; FerretDB does not push dotted paths down.
        CONTINUE WHEN EXISTS (SELECT 1 FROM unnest(exprs) AS e WHERE e !~ '^\(_jsonb -> ''[^'']*''::text\)$');
        -- fastupdate off: a lookup right after an insert must not scan GIN's pending list.
        EXECUTE format('CREATE INDEX %I ON %s USING gin (%s) WITH (fastupdate = off)',
                       left(idx.relname, 59) || '_gin', idx.tbl,
                       (SELECT string_agg(e || ' jsonb_path_ops', ', ') FROM unnest(exprs) AS e));
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION ferretdb_gin_twin_drop() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
    obj record;
BEGIN
    FOR obj IN SELECT schema_name, object_name FROM pg_event_trigger_dropped_objects()
               WHERE object_type = 'index' AND object_name NOT LIKE '%\_gin' LOOP
        EXECUTE format('DROP INDEX IF EXISTS %I.%I', obj.schema_name, left(obj.object_name, 59) || '_gin');
    END LOOP;
END $$;

CREATE EVENT TRIGGER ferretdb_gin_twin ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
    EXECUTE FUNCTION ferretdb_gin_twin();
CREATE EVENT TRIGGER ferretdb_gin_twin_drop ON sql_drop WHEN TAG IN ('DROP INDEX')
    EXECUTE FUNCTION ferretdb_gin_twin_drop();
