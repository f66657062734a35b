"""``wsloc visualize-class CLASS --out PNG``: class model visualisation (Simonyan et al. 2014, sec. 2)."""

from __future__ import annotations

import argparse

from . import add_model_options, classifier_from_args


def add_parser(sub) -> None:
    p = sub.add_parser(
        "visualize-class", help="image that maximises a class score (class model visualisation)",
        description="Gradient ascent from the zero (mean) image on S_c(I) - lambda*||I||^2 (Simonyan et al. 2014), "
                    "with optional jitter, blur and clipping (later work). Several classes give one PNG grid.")
    p.add_argument("classes", nargs="+", metavar="CLASS",
                   help="class index (0-based), ImageNet wnid (n01443537) or class name (goldfish)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--steps", type=int, default=200, help="ascent steps (default: %(default)s)")
    p.add_argument("--step-size", type=float, default=None,
                   help="step size; with gradient normalisation the RMS change per step (default: 0.05; "
                        "with --paper or --no-normalize-grad 1000, as Lite0's raw gradients are ~1e-5)")
    p.add_argument("--l2", type=float, default=None,
                   help="lambda of the L2 penalty (default: 1e-3; with --paper or --no-normalize-grad 1e-5)")
    p.add_argument("--jitter", type=int, default=8, help="random shift in pixels per step, 0: off (default: %(default)s)")
    p.add_argument("--blur-sigma", type=float, default=1.0, help="Gaussian blur sigma, 0: off (default: %(default)s)")
    p.add_argument("--blur-every", type=int, default=4, help="blur every N steps (default: %(default)s)")
    p.add_argument("--no-clip", action="store_true", help="do not keep the image within the valid pixel range")
    p.add_argument("--no-normalize-grad", action="store_true", help="plain gradient steps (the paper's method)")
    p.add_argument("--paper", action="store_true",
                   help="exactly the paper's method: no jitter, blur, clipping or gradient normalisation")
    p.add_argument("--seed", type=int, default=0, help="seed of the jitter (default: %(default)s)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or model-loading line")
    add_model_options(p)
    p.set_defaults(run=run)


def resolve_class(text: str, class_names, num_classes: int) -> int:
    """A class given as index, wnid or name -> index; MethodError naming the argument otherwise."""
    from ..errors import MethodError

    t = text.strip()
    if t.lstrip("-").isdigit():
        c = int(t)
        if not 0 <= c < num_classes:
            raise MethodError(f"CLASS {text!r}: index out of range 0..{num_classes - 1}")
        return c
    if num_classes == 1000 and t.startswith("n") and t[1:].isdigit():
        from .. import imagenet

        try:
            return imagenet.wnid_to_index(t)
        except (KeyError, ValueError):
            raise MethodError(f"CLASS {text!r}: unknown ImageNet wnid") from None
    key = t.lower().replace("_", " ")
    names = [str(n).lower() for n in (class_names or ())]
    exact = [i for i, n in enumerate(names) if n == key]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        raise MethodError(f"CLASS {text!r}: ambiguous name, classes {exact}; give the index")
    if num_classes == 1000:
        from .. import imagenet

        full = [str(n).lower() for n in imagenet.full_names()]
        hits = [i for i, f in enumerate(full) if key in [s.strip() for s in f.split(",")]]
        if len(hits) == 1:
            return hits[0]
    near = [n for n in names if key in n][:5]
    raise MethodError(f"CLASS {text!r}: not a class index, wnid or name"
                      + (f"; did you mean one of {near}?" if near else ""))


def run(args: argparse.Namespace) -> int:
    from .. import viz
    from ..visualize_class import visualize_class

    clf = classifier_from_args(args)
    classes = [resolve_class(c, clf.class_names, clf.num_classes) for c in args.classes]
    paper = args.paper
    raw = args.no_normalize_grad or paper
    step_size = args.step_size if args.step_size is not None else (1000.0 if raw else 0.05)
    l2 = args.l2 if args.l2 is not None else (1e-5 if raw else 1e-3)
    results = visualize_class(
        clf, classes, steps=args.steps, step_size=step_size, l2=l2, normalize_grad=not raw, jitter=0 if paper else args.jitter,
        blur_sigma=0.0 if paper else args.blur_sigma, blur_every=args.blur_every,
        clip=not (args.no_clip or paper), seed=args.seed, progress=not args.quiet)
    names = clf.class_names or [str(i) for i in range(clf.num_classes)]
    for r in results:
        print(f"{r.class_index:4d} {names[r.class_index]:<24s} score: zero image {r.zero_score:7.2f} -> {r.score:7.2f}")
    if len(results) == 1:
        image = results[0].image
    else:
        image = viz.grid([[r.image for r in results]], col_titles=[names[r.class_index] for r in results])
    viz.save_png(args.out, image)
    print(f"wrote {args.out}")
    return 0
