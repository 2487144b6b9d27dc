#!/usr/bin/env -S node --max-semi-space-size=1 --optimize-for-size
// V8 memory flags for a sidecar: a 1 MiB young generation and V8's size-optimised
// heuristics keep the resident set near 60 MiB at 1 000 req/s (80 MiB without)
// with no throughput loss measured (bench/proxy.bench.ts, README "Benchmarks").
import "../dist/host/cli.js";
