#!/usr/bin/env bash
# Issue 31, item 3: the retrieval-alone runs behind bench/results/i31-vectors-*.json, one after another (run it
# through ../shared/tools/heavy; PYTHON= the venv's python). One faiss / BLAS thread: query times are per query on
# one core. The committed i31-vectors-1m-pq8.json and i31-vectors-100k-pq8.json were made by the first two lines at
# revision 6a4131e (8-bit IVF-PQ codes, the commands are inside them); at later revisions the 100k line measures the
# fast-scan codes and writes i31-vectors-100k.json.
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
py=${PYTHON:-python}
$py bench/scale_vectors.py --n 1000000 --nprobe 16,32,64,128 --shortlist 250,500,1000,2000 \
    --json bench/results/i31-vectors-1m.json
$py bench/scale_vectors.py --n 100000 --generators campus,noise --json bench/results/i31-vectors-100k.json
$py bench/scale_vectors.py --n 100000 --kinds hnsw --shortlist 100,250,500 --json bench/results/i31-vectors-100k-hnsw.json
