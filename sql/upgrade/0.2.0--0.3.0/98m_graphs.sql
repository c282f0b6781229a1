-- Pictures (issue 17): ocx.saga_graph and ocx.projection_graph return Graphviz DOT;
-- privilege_rules grants them to ocx_reader (stated in 99_privileges.sql).

-- A DOT quoted string: backslashes and double quotes escaped, line breaks
-- as DOT's \n (a centred line break in a label), carriage returns dropped.
CREATE FUNCTION ocx._dot_str(s text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN '"' OPERATOR(pg_catalog.||)
       pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
           s, E'\\', E'\\\\'), '"', E'\\"'), E'\r', ''), E'\n', E'\\n')
       OPERATOR(pg_catalog.||) '"';
COMMENT ON FUNCTION ocx._dot_str(text) IS
    'internal: a Graphviz DOT quoted string (backslash, double quote and line breaks escaped)';

CREATE FUNCTION ocx.saga_graph(saga text) RETURNS text
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    sid         uuid;
    inst        ocx.saga_instances;
    is_inst     boolean := false;
    steps       jsonb;
    n           integer;
    k           integer;
    j           integer;
    st          jsonb;
    g           text[];
    lbl         text;
    fill        text;
    target      text;
    -- an instance's audit log, by step
    succeeded   integer[] := '{}';
    broke       integer[] := '{}';
    undone      integer[] := '{}';
    undo_failed integer[] := '{}';
BEGIN
    IF saga IS NULL OR saga = '' THEN
        RAISE EXCEPTION 'saga must not be null or empty' USING ERRCODE = 'OX403',
            HINT = 'Pass a saga name (a definition) or a saga id (an instance).';
    END IF;
    -- a saga id in its canonical form (no subtransaction: parallel safe)
    IF saga ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        sid := saga::uuid;
        SELECT * INTO inst FROM ocx.saga_instances x WHERE x.saga_id = sid;
        is_inst := FOUND;
    END IF;
    IF is_inst THEN
        steps := inst.steps;
        SELECT coalesce(array_agg(DISTINCT s.step) FILTER (WHERE s.action = 'step_succeeded'), '{}'),
               coalesce(array_agg(DISTINCT s.step) FILTER (
                   WHERE s.action IN ('step_failed', 'step_timed_out', 'step_dead_letter', 'step_cancelled',
                                      'abort_requested')), '{}'),
               coalesce(array_agg(DISTINCT s.step) FILTER (WHERE s.action = 'compensation_succeeded'), '{}'),
               coalesce(array_agg(DISTINCT s.step) FILTER (WHERE s.action = 'compensation_failed'), '{}')
          INTO succeeded, broke, undone, undo_failed
          FROM ocx.saga_steps s
         WHERE s.saga_id = sid AND s.step IS NOT NULL;
    ELSE
        SELECT d.steps INTO steps FROM ocx.saga_definitions d WHERE d.name = saga;
        IF NOT FOUND THEN
            IF sid IS NOT NULL THEN
                RAISE EXCEPTION 'saga % does not exist', saga USING ERRCODE = 'OX404',
                    HINT = 'Look the id up in ocx.saga_status.';
            END IF;
            RAISE EXCEPTION 'saga "%" is not defined', saga USING ERRCODE = 'OX400';
        END IF;
    END IF;
    n := jsonb_array_length(steps);

    g := ARRAY[
        'digraph ' || ocx._dot_str(CASE WHEN is_inst THEN inst.saga_name || ' ' || sid::text ELSE saga END) || ' {',
        '  rankdir=LR;',
        '  labelloc=t;',
        '  label=' || ocx._dot_str(CASE WHEN is_inst
                                       THEN format(E'saga %s\n%s: %s%s', inst.saga_name, sid, inst.state,
                                                   CASE WHEN inst.error IS NOT NULL
                                                        THEN E'\n' || left(inst.error, 200) ELSE '' END)
                                       ELSE 'saga ' || saga END) || ';',
        '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9];',
        '  start [shape=circle, label="", width=0.25, style=filled, fillcolor=black];'];

    -- terminal states, the instance's own filled
    FOREACH lbl IN ARRAY ARRAY['completed', 'compensated', 'failed'] LOOP
        fill := CASE WHEN is_inst AND inst.state = lbl
                     THEN CASE lbl WHEN 'completed' THEN '#a5d6a7' WHEN 'compensated' THEN '#ffcc80'
                                   ELSE '#ef9a9a' END
                     ELSE 'white' END;
        g := g || format('  %s [shape=doublecircle, fontsize=10, fillcolor="%s"%s];', lbl, fill,
                         CASE WHEN is_inst AND inst.state = lbl THEN ', penwidth=2' ELSE '' END);
    END LOOP;

    -- one node per step, one per compensation
    FOR k IN 1 .. n LOOP
        st := steps -> (k - 1);
        fill := CASE WHEN NOT is_inst THEN 'white'
                     WHEN k = ANY (broke) THEN '#ef9a9a'
                     WHEN k = ANY (succeeded) THEN '#a5d6a7'
                     WHEN inst.state = 'running' AND inst.current_step = k THEN '#fff59d'
                     ELSE 'white' END;
        g := g || format('  s%s [label=%s, fillcolor="%s"%s];', k,
                         ocx._dot_str(format(E'%s. %s\n%s%s', k, st->>'name', st->>'command',
                                             CASE WHEN st ? 'timeout' THEN E'\ntimeout ' || (st->>'timeout')
                                                  ELSE '' END)),
                         fill,
                         CASE WHEN is_inst AND inst.state = 'running' AND inst.current_step = k
                              THEN ', penwidth=2' ELSE '' END);
        IF st ? 'compensation' THEN
            fill := CASE WHEN NOT is_inst THEN 'white'
                         WHEN k = ANY (undo_failed) THEN '#ef9a9a'
                         WHEN k = ANY (undone) THEN '#ffcc80'
                         WHEN inst.state = 'compensating' AND inst.current_step = k THEN '#fff59d'
                         ELSE 'white' END;
            g := g || format('  u%s [label=%s, style="rounded,dashed,filled", fillcolor="%s"%s];', k,
                             ocx._dot_str(format(E'undo %s\n%s', st->>'name', st #>> '{compensation,command}')),
                             fill,
                             CASE WHEN is_inst AND inst.state = 'compensating' AND inst.current_step = k
                                  THEN ', penwidth=2' ELSE '' END);
        END IF;
    END LOOP;

    g := g || '  start -> s1 [label="start_saga"];'::text;
    FOR k IN 1 .. n LOOP
        st := steps -> (k - 1);
        -- success: the next step, or done
        g := g || format('  s%s -> %s [label=%s, color="#2e7d32"];', k,
                         CASE WHEN k < n THEN 's' || (k + 1) ELSE 'completed' END,
                         ocx._dot_str((SELECT string_agg(x, E'\n' ORDER BY o)
                                         FROM jsonb_array_elements_text(st->'success') WITH ORDINALITY t(x, o))));
        -- failure: compensate the completed steps, the highest first
        SELECT max(i) INTO j FROM generate_series(1, k - 1) i WHERE (steps -> (i - 1)) ? 'compensation';
        target := CASE WHEN j IS NULL THEN 'compensated' ELSE 'u' || j END;
        g := g || format('  s%s -> %s [label=%s, color="#c62828", style=dashed];', k, target,
                         ocx._dot_str(concat_ws(E'\n',
                             (SELECT string_agg(x, E'\n' ORDER BY o)
                                FROM jsonb_array_elements_text(st->'failure') WITH ORDINALITY t(x, o)),
                             CASE WHEN st ? 'timeout' THEN 'timeout' END,
                             'dead letter', 'abort')));
        -- a timeout or an abort after the step's command ran compensates it too
        IF st ? 'compensation' THEN
            g := g || format('  s%s -> u%s [label="timeout or abort\nafter its command ran", color="#c62828", style=dotted];',
                             k, k);
        END IF;
        -- a compensation: when its command succeeded, the next lower one
        IF st ? 'compensation' THEN
            SELECT max(i) INTO j FROM generate_series(1, k - 1) i WHERE (steps -> (i - 1)) ? 'compensation';
            g := g || format('  u%s -> %s [label="succeeded", color="#ef6c00"];', k,
                             CASE WHEN j IS NULL THEN 'compensated' ELSE 'u' || j END);
            g := g || format('  u%s -> failed [label="dead letter", color="#c62828", style=dashed];', k);
        END IF;
    END LOOP;
    g := g || '}'::text;
    RETURN array_to_string(g, E'\n') || E'\n';
END
$fn$;
COMMENT ON FUNCTION ocx.saga_graph(text) IS
    'a saga definition (by name) or instance (by id, with its progress) as Graphviz DOT: steps, success and failure transitions, compensations';

CREATE FUNCTION ocx.projection_graph() RETURNS text
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    g   text[];
    p   record;
    c   text;
    t   text;
BEGIN
    g := ARRAY[
        'digraph projections {',
        '  rankdir=LR;',
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9];'];
    -- sources: the categories read (a projection without categories reads all)
    FOR c IN
        SELECT DISTINCT x FROM ocx.projections pr, unnest(pr.categories) x
        UNION
        SELECT NULL FROM ocx.projections pr WHERE pr.categories IS NULL
        ORDER BY 1 NULLS FIRST
    LOOP
        g := g || format('  %s [shape=folder, style=filled, fillcolor="#e3f2fd", label=%s];',
                         ocx._dot_str('category:' || coalesce(c, '*')),
                         ocx._dot_str(CASE WHEN c IS NULL THEN 'every category' ELSE 'category ' || c END));
    END LOOP;
    -- sinks: the declared read-model tables
    FOR t IN SELECT DISTINCT x FROM ocx.projections pr, unnest(pr.tables) x ORDER BY 1 LOOP
        g := g || format('  %s [shape=cylinder, style=filled, fillcolor="#f5f5f5", label=%s];',
                         ocx._dot_str('table:' || t), ocx._dot_str(t));
    END LOOP;
    FOR p IN SELECT * FROM ocx.projections ORDER BY name LOOP
        g := g || format('  %s [shape=box, style="rounded,filled", fillcolor="%s", label=%s];',
                         ocx._dot_str('projection:' || p.name),
                         CASE p.state WHEN 'running' THEN '#c8e6c9' WHEN 'paused' THEN '#fff59d'
                                      WHEN 'stopped' THEN '#ef9a9a' ELSE '#bbdefb' END,
                         ocx._dot_str(format(E'%s\n%s, %s%s\n%s', p.name, p.mode, p.state,
                                             CASE WHEN p.partitions > 1
                                                  THEN format(', %s partitions', p.partitions) ELSE '' END,
                                             p.handler)));
        FOR c IN SELECT x FROM unnest(coalesce(p.categories, ARRAY[NULL::text])) x ORDER BY 1 NULLS FIRST LOOP
            g := g || format('  %s -> %s%s;', ocx._dot_str('category:' || coalesce(c, '*')),
                             ocx._dot_str('projection:' || p.name),
                             CASE WHEN p.types IS NOT NULL
                                  THEN ' [label=' || ocx._dot_str(array_to_string(p.types, E'\n')) || ']'
                                  ELSE '' END);
        END LOOP;
        FOR t IN SELECT x FROM unnest(p.tables) x ORDER BY 1 LOOP
            g := g || format('  %s -> %s;', ocx._dot_str('projection:' || p.name), ocx._dot_str('table:' || t));
        END LOOP;
    END LOOP;
    g := g || '}'::text;
    RETURN array_to_string(g, E'\n') || E'\n';
END
$fn$;
COMMENT ON FUNCTION ocx.projection_graph() IS
    'the projections as Graphviz DOT: the categories (and types) each reads, its mode and state, the tables it declared';

