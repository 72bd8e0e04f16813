"""Size on disk of the base install's dependency closure, from the installed distributions' records.

Run: python benchmarks/install_size.py -v   (needs the distributions installed; numbers go to docs/install.md)
"""
import importlib.metadata as md, re, sys
from packaging.requirements import Requirement

def closure(reqs):
    seen = {}
    stack = list(reqs)
    while stack:
        req = Requirement(stack.pop())
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in seen:
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue
        seen[name] = dist
        stack += dist.requires or []
    return seen

def size(dist):
    total = 0
    for f in dist.files or []:
        p = f.locate()
        try:
            total += p.stat().st_size
        except OSError:
            pass
    return total

base = ["numpy>=1.26", "onnxruntime>=1.17", "openslide-python>=1.3", "openslide-bin>=4.0",
        "opencv-python-headless>=4.8", "tifffile>=2024.1.1", "Pillow>=10"]
for label, reqs in [("before (with scikit-image)", base + ["scikit-image>=0.22"]), ("after", base)]:
    dists = closure(reqs)
    sizes = {n: size(d) for n, d in dists.items()}
    print(f"{label}: {len(dists)} distributions, {sum(sizes.values())/2**20:.1f} MiB")
    if "-v" in sys.argv:
        for n, s in sorted(sizes.items(), key=lambda x: -x[1]):
            print(f"   {n:28s}{s/2**20:8.1f} MiB")
