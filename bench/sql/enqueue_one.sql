SELECT pdoflow.enqueue('noop', '{"n": 1}');
