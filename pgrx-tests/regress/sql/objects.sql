-- The extension's objects: the SQL API surface, in one place.
\dx+ pdoflow

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
