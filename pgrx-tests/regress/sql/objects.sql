-- The extension's objects: the SQL API surface, in one place. (From
-- PostgreSQL 17 on, the row types of its tables and views are members too;
-- they are left out so that every version lists the same objects.)
SELECT pg_describe_object(d.classid, d.objid, d.objsubid) AS "Object description"
FROM pg_depend AS d
LEFT JOIN pg_type AS t ON d.classid = 'pg_type'::regclass AND t.oid = d.objid
LEFT JOIN pg_type AS element ON element.oid = t.typelem
WHERE d.refclassid = 'pg_extension'::regclass
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pdoflow')
  AND d.deptype = 'e'
  AND coalesce(t.typrelid, 0) = 0 AND coalesce(element.typrelid, 0) = 0
ORDER BY 1;

-- Everything lives in schema pdoflow, and the extension cannot be moved.
SELECT extname, extnamespace::regnamespace, extrelocatable FROM pg_extension WHERE extname = 'pdoflow';

-- Signatures of the public functions (underscore-prefixed ones are internal).
\x on
SELECT p.proname, pg_get_function_arguments(p.oid) AS arguments, pg_get_function_result(p.oid) AS result
FROM pg_proc AS p
WHERE p.pronamespace = 'pdoflow'::regnamespace AND p.proname NOT LIKE '\_%'
ORDER BY 1, 2;
\x off

-- The jobs relation users query.
\d pdoflow.jobs
