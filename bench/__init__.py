"""Benchmark lambda_ingest against a function built on ocs_ingester 3.2.0 (issues 6 and 14).

`python -m bench.run` (or `make bench`) starts one local S3 (moto's server, 32-character version ids, ranged
GETs served in proportion to the range), the same S3 behind a realistic model of S3 (`model`) on a second
port, and one Science Archive emulator; it uploads synthetic LCO frames and ingests each one in a fresh child
process (`python -m bench.worker`), with this project's Lambda handler or with ocs_ingester's
`upload_file_and_ingest_to_archive`, on both. It also times cold starts before/after, the copy paths, and
end-to-end bursts through SQS (`e2e`). It writes `docs/benchmarks.md` and `docs/benchmarks.png`; raw
results go to `bench/results/` (not committed).

Modules: measuring: `run` (orchestration, command line), `worker` (one measurement per process), `traffic`
(bytes and requests, counted inside the child), `model` (the S3 model), `e2e` (bursts), `facts` (machine,
versions, bundle); tabulating: `figures` (medians, targets, cost), `tables` (markdown, plot); text:
`template.md`, filled by `report`.
"""
