"""The `nerflow` verbs, one module per group: run (run, rerun, runs), cache, data (validate, make-sample), predict,
models, schedule, train_node (a machine joining a multi-machine training)."""
