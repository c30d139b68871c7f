"""The pipeline glue: one function per stage from params to files, DVC stage status and stage results."""
