"""Benchmark lambda_ingest against a function built on ocs_ingester 3.2.0 (issue 6).

`python -m bench.run` (or `make bench`) starts one local S3 endpoint (moto's server, 32-character version
ids) and one Science Archive emulator, uploads synthetic LCO frames to the landing bucket and ingests each
one in a fresh child process (`python -m bench.worker`), either with this project's Lambda handler or with
ocs_ingester's `upload_file_and_ingest_to_archive`. It writes `docs/benchmarks.md` and `docs/benchmarks.png`;
raw results go to `bench/results/` (not committed).

Modules: `run` (orchestration and command line), `worker` (one measured ingest per process), `traffic`
(bytes moved, counted inside the child), `report` (table, plot, targets), `facts` (machine, versions,
bundle size, cold import).
"""
