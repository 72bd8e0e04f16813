"""``weakseg-export``: a trained model to verified ONNX (optionally int8) and a TF Serving SavedModel."""

from __future__ import annotations

import argparse
import sys

from weaksegtf.cli.common import EXPORT_MODULES, add_version_argument, fail, missing_training_extra, quiet_tensorflow

#: Exit code when an export was made but failed its parity or int8 agreement check (nothing written).
CHECK_FAILED = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weakseg-export",
        description="Export a weaksegtf .keras model to ONNX for onnxruntime (input 'image': float32 RGB "
        "in [0, 255], outputs 'mask_logits', 'label_logits'), check it against Keras, and optionally write "
        "an int8 model and a TF Serving SavedModel. Nothing is written unless every check passes. Classes, "
        "colours, mpp, tile size and stain reference come from the model card inside the .keras file; the "
        "options below only override them. Existing files are never replaced unless they are weaksegtf "
        "exports (of the same weights, or any with --overwrite).",
        epilog="Exit codes: 0 written and verified; 1 a parity or int8 agreement check failed (nothing written); "
        "2 bad input (model, folder, opset or option), an output that exists and may not be replaced, an "
        "unwritable output, or a missing [train] extra.",
    )
    parser.add_argument("model", metavar="MODEL.keras", help="weaksegtf model file (.keras)")
    parser.add_argument("--onnx", required=True, metavar="OUT.onnx", help="ONNX file to write")
    parser.add_argument("--savedmodel", default=None, metavar="DIR",
                        help="also write a SavedModel folder for TF Serving (e.g. export/models/weakseg/1)")
    parser.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset, 7 to 18 (default: 17)")
    parser.add_argument("--int8", action="store_true",
                        help="also write a static int8 (QDQ) model next to --onnx, as NAME.int8.onnx")
    parser.add_argument("--calibration", default=None, metavar="DIR", help="folder of real tiles or images for int8 calibration")
    parser.add_argument("--samples", default=None, metavar="DIR",
                        help="folder of real images for the parity checks (default: random pixels)")
    parser.add_argument("--tolerance", type=float, default=1e-4, metavar="X",
                        help="largest allowed logit difference from Keras, scaled by max(1, |Keras logit|) "
                             "(default: %(default)g)")
    parser.add_argument("--min-int8-agreement", type=float, default=0.99, metavar="X",
                        help="smallest allowed int8-vs-fp32 per-pixel argmax agreement (default: %(default)g)")
    parser.add_argument("--int8-reduce-range", choices=["auto", "on", "off"], default="auto",
                        help="7-bit int8 weights: 'on' for AVX2 CPUs without VNNI, 'off' for VNNI/AMX or ARM; "
                             "'auto' (default) chooses by the exporting CPU")
    parser.add_argument("--mpp", type=float, default=None, metavar="X",
                        help="microns per pixel of the training tiles (metadata; default: the model card's)")
    parser.add_argument("--tile-size", type=int, default=None, metavar="N",
                        help="training tile side in pixels (metadata; also calibration and parity tile size; "
                        "default: the model card's)")
    parser.add_argument("--macenko", default=None, metavar="JSON",
                        help="Macenko stain reference JSON used in training (MacenkoNormalizer.save), stored in "
                        "metadata (default: the model card's)")
    parser.add_argument("--probabilities", action="store_true",
                        help="add a 'mask_probabilities' output (softmax of 'mask_logits')")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="seed of parity tiles and random inputs (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing weaksegtf exports at the output paths (other files are never touched)")
    return add_version_argument(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    missing = missing_training_extra(EXPORT_MODULES)
    if missing:
        return fail(missing)
    from weaksegtf.errors import ParityError, WeaksegError
    from weaksegtf.export import exporter

    if args.calibration is not None and not args.int8:
        return fail("--calibration is only used with --int8")
    outputs = ("mask_logits", "label_logits") + (("mask_probabilities",) if args.probabilities else ())
    try:
        report = exporter.export_model(
            args.model, args.onnx, args.savedmodel, opset=args.opset, outputs=outputs,
            int8=args.int8, calibration_dir=args.calibration, samples_dir=args.samples,
            tolerance=args.tolerance, min_int8_agreement=args.min_int8_agreement,
            int8_reduce_range={"auto": None, "on": True, "off": False}[args.int8_reduce_range],
            mpp=args.mpp, tile_size_px=args.tile_size, macenko=args.macenko, seed=args.seed,
            overwrite=args.overwrite,
        )
    except ParityError as error:
        if error.report is not None:
            print(error.report.format(), file=sys.stderr)
        print(f"error: {error}", file=sys.stderr)
        return CHECK_FAILED
    except WeaksegError as error:
        return fail(str(error))
    print(report.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
