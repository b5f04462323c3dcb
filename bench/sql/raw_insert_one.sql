INSERT INTO raw_jobs (task, args) VALUES ('noop', '{"n": 1}');
