"""How long ``ephys annotations cluster`` takes on a corpus with many distinct annotation texts.

Usage::

    python benchmarks/annotation_clusters.py [--texts 20000] [--seed 0]

The texts are synthetic clinical free text: 12 German phrases (labelled and unlabelled ones) with
0-3 of 15 modifier words, a number, and in 30 % of them one letter dropped (a misspelling), each
with 1-20 occurrences: the long tail a site's annotations have. Times :func:`cluster_texts` (the
packaged taxonomy's matcher built beforehand) and prints distinct texts, clusters and seconds.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter

from ephys.annotate.clusters import cluster_texts
from ephys.annotate.taxonomy import default_matcher

BASE = ["Augen zu", "Augen auf", "Anfall", "Bettgitter hochgeklappt", "Essen gebracht", "Patient hustet", "Licht aus",
        "Elektrode neu geklebt", "Pflege im Zimmer", "Arzt Visite", "Bewegung", "spike wave links temporal"]
WORDS = "links rechts frontal temporal okzipital kurz lang stark leicht wieder erneut pat hustet schläft gähnt".split()


def corpus(n: int, seed: int) -> Counter:
    rng = random.Random(seed)
    texts: Counter = Counter()
    for _ in range(n):
        t = f"{rng.choice(BASE)} {' '.join(rng.sample(WORDS, rng.randint(0, 3)))} {rng.randint(0, 99)}"
        if rng.random() < 0.3:
            t = t.replace("e", "", 1)
        texts[t] += rng.randint(1, 20)
    return texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    texts = corpus(args.texts, args.seed)
    matcher = default_matcher()
    t0 = time.perf_counter()
    result = cluster_texts(texts, matcher)
    dt = time.perf_counter() - t0
    print(f"{len(texts):,} distinct texts ({sum(texts.values()):,} annotations) -> {len(result.clusters):,} clusters, "
          f"{len(result.unlabelled):,} unlabelled; {dt:.1f} s")


if __name__ == "__main__":
    main()
