#!/usr/bin/env bash
# Issue 31, item 3: the retrieval-alone runs behind bench/results/i31-vectors-*.json, one after another (run it
# through ../shared/tools/heavy). One faiss / BLAS thread: query times are per query on one core.
# The million-vector grid runs first (the queue is short of time); the 100k runs give the same grid at 100k and
# the earlier bench's `noise` generator, and HNSW beside IVF-PQ.
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
py=${PYTHON:-python}
$py bench/scale_vectors.py --n 1000000 --nprobe 32,64,128,256 --shortlist 100,250,500,1000 \
    --json bench/results/i31-vectors-1m.json
$py bench/scale_vectors.py --n 100000 --generators campus,noise --json bench/results/i31-vectors-100k.json
# after the first 1M grid (8-bit PQ codes: ~85 ms per query whatever nprobe, i31-vectors-1m-pq8.json) the
# index moved to 4-bit fast-scan codes; the 100k line above ran the 8-bit codes (i31-vectors-100k-pq8.json)
$py bench/scale_vectors.py --n 1000000 --nprobe 16,32,64,128 --shortlist 250,500,1000,2000 \
    --json bench/results/i31-vectors-1m.json
$py bench/scale_vectors.py --n 100000 --kinds hnsw --shortlist 100,250,500 --json bench/results/i31-vectors-100k-hnsw.json
