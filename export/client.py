"""Segment one RGB image with a TF Serving weaksegtf model over REST (numpy, Pillow and the standard library).

    python export/client.py tile.png --url http://localhost:8501/v1/models/weakseg:predict --out mask.png

The image is cropped to a multiple of 16 pixels (the model's size rule) and
sent as uint8; the server returns per-pixel class probabilities and the
argmax mask. The mask is written as a PNG of class indices.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request

import numpy as np
from PIL import Image

MULTIPLE_PX = 16


def predict(image: np.ndarray, url: str, timeout_s: float = 60.0) -> dict[str, np.ndarray]:
    """POST one ``(H, W, 3)`` uint8 image; returns ``probabilities`` (H, W, C), ``mask`` (H, W), ``label_probabilities`` (C,)."""
    body = {"signature_name": "serving_default", "inputs": {"image": [image.tolist()]}}
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        outputs = json.load(response)["outputs"]
    return {name: np.asarray(value)[0] for name, value in outputs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="RGB image file")
    parser.add_argument("--url", default="http://localhost:8501/v1/models/weakseg:predict")
    parser.add_argument("--out", default="mask.png", help="where to write the class-index mask PNG")
    args = parser.parse_args()

    image = np.asarray(Image.open(args.image).convert("RGB"))
    height, width = (s - s % MULTIPLE_PX for s in image.shape[:2])
    if height == 0 or width == 0:
        print(f"error: {args.image} is {image.shape[1]}x{image.shape[0]} px; expected at least 16x16", file=sys.stderr)
        return 2
    result = predict(np.ascontiguousarray(image[:height, :width]), args.url)
    mask = result["mask"].astype(np.uint8)
    Image.fromarray(mask).save(args.out)
    fractions = np.bincount(mask.ravel(), minlength=result["probabilities"].shape[-1]) / mask.size
    print(f"{args.out}: {width}x{height} px; class fractions {np.round(fractions, 3).tolist()}; "
          f"image-level probabilities {np.round(result['label_probabilities'], 3).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
