"""The `nerflow` verbs, one module per group: run (run, rerun, runs), cache, data (validate, make-sample), predict."""
