"""Named localizer configurations, in one place.

A preset fixes what the localizer computes (saliency method and its options, the
segmenter's options, how many classes), not where it runs (device, batch size).
:class:`wsloc.localizer.LocalizerConfig` fills every field left unset from a preset;
``DEFAULT_PRESET`` names the one used when none is given, so making another measured
configuration the default is a one-line change here.

* ``simonyan2014``: the paper's pipeline (Simonyan, Vedaldi & Zisserman 2014, section 6):
  plain gradient maps (max over colour channels of ``|d score / d image|``) of the top-5
  classes; foreground / background colour models (5-component full-covariance GMMs, as
  GrabCut) fitted on the pixels above the 95th / below the 30th percentile of the map;
  one GraphCut; the box of the largest 8-connected component of the mask.
"""

from __future__ import annotations

import copy

PRESETS: dict[str, dict] = {
    "simonyan2014": {
        "method": "gradient",
        "method_options": {},
        "segment": {
            "q_fg": 95.0,
            "q_bg": 30.0,
            "n_components": 5,
            "covariance_type": "full",
            "iterations": 1,
            "connectivity": 8,
            "box_rule": "largest",
            "box_connectivity": 8,
        },
        "top_k": 5,
    },
}

#: The preset behind ``LocalizerConfig()``, ``Localizer()`` and ``wsloc localize``.
DEFAULT_PRESET = "simonyan2014"


def preset(name: str | None = None) -> dict:
    """A deep copy of the named preset (``None``: :data:`DEFAULT_PRESET`).

    Raises:
        MethodError: unknown name (the message lists the known ones).
    """
    from .errors import MethodError

    name = DEFAULT_PRESET if name is None else name
    if name not in PRESETS:
        raise MethodError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return copy.deepcopy(PRESETS[name])
