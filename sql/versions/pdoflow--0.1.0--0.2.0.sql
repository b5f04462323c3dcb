-- pdoflow 0.1.0 -> 0.2.0 (ALTER EXTENSION pdoflow UPDATE TO '0.2.0').
--
-- 0.2.0 is the first version reached by an upgrade script; its schema is
-- 0.1.0's, so there is nothing to change. From here on, every change to
-- sql/ or to the Rust functions' SQL ships with the statements that bring a
-- database of the previous version to the new one, in a file named
-- pdoflow--<from>--<to>.sql in this folder. tests/tests/upgrade.rs compares
-- an upgraded database with a fresh install, object by object, and fails
-- when they differ.
\echo Use "ALTER EXTENSION pdoflow UPDATE" to load this file. \quit
