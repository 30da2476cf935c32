"""Where one gallery photo's extraction time goes: cProfile over `extract_photo` on N photos in one process, with
the pool workers' one-thread setting (features/indexing.py), and SIFT alone at a few detection sizes.

    nice -n 19 python bench/profile_extract.py 'DIR/*.jpg' --n 50 [--sides 1024,896,800]

Under load the seconds are not figures; the proportions and the CPU seconds (process_time) are.
"""
from __future__ import annotations

import argparse
import cProfile
import glob
import io
import pstats
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pattern", help="glob of photos")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--sides", default="1024,896,800", help="SIFT detection sizes timed alone")
    ap.add_argument("--top", type=int, default=20)
    a = ap.parse_args()

    import cv2

    from img2gps.features.indexing import ExtractSpec, _one_thread, extract_photo
    from img2gps.features.rootsift import FeatureConfig, _gray
    from img2gps.photos import open_image

    files = sorted(glob.glob(a.pattern))[: a.n]
    datas = [open(f, "rb").read() for f in files]
    spec = ExtractSpec(embed="lite0", features=FeatureConfig(1024, 2000, True))
    _one_thread()
    extract_photo(datas[0], spec)  # loads the encoder
    prof = cProfile.Profile()
    wall, cpu = time.perf_counter(), time.process_time()
    prof.enable()
    for d in datas:
        extract_photo(d, spec)
    prof.disable()
    print(f"{len(datas)} photos: {(time.perf_counter() - wall) / len(datas):.3f} s wall, "
          f"{(time.process_time() - cpu) / len(datas):.3f} s CPU per photo")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(a.top)
    print(out.getvalue())
    images = [open_image(d) for d in datas]
    print("photo size", images[0].size)
    for side in (int(s) for s in a.sides.split(",")):
        grays = [_gray(im, side) for im in images]
        sift = cv2.SIFT_create(nfeatures=2000)
        cpu, n = time.process_time(), []
        for g in grays:
            n.append(len(sift.detectAndCompute(g, None)[0]))
        print(f"SIFT at {side} px: {(time.process_time() - cpu) / len(grays):.3f} s CPU per photo, "
              f"{np.mean(n):.0f} keypoints")


if __name__ == "__main__":
    main()
