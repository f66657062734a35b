"""Typed configuration objects: each field's rule declared once, one error type, dotted key paths.

A configuration class is a dataclass deriving from :class:`Config` whose fields are declared with
:func:`setting` (default, and the rule its values obey: choices, a numeric range, a type, optional
``None``). Construction checks every field against its rule (and the class's :meth:`Config.cross_check`
for rules that tie fields together) and raises :class:`ConfigError` naming the class, the field and the
value, e.g. ``SegmentConfig.q_fg=150: must be in [0, 100]``.

Configurations nest (``LocalizerConfig.segment`` is a :class:`wsloc.segment.SegmentConfig`); a leaf is
named by its dotted key path (``"segment.q_fg"``). The same paths serve:

* :meth:`Config.with_` / :func:`replace`: a copy with some paths changed (``wsloc localize --set``,
  the named options, the scripts);
* :meth:`Config.to_dict` / :meth:`Config.from_dict`: a nested JSON-ready dict and back (``config.json``);
* :func:`differences`: the paths where two serialised configurations differ (``--resume``).

This module imports only the standard library and :mod:`wsloc.errors`. :class:`SaliencyConfig`, the
saliency part of the localizer's configuration, lives here too (the saliency package imports torch).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
from dataclasses import MISSING, dataclass, field, fields

from .errors import MethodError

__all__ = ["Config", "ConfigError", "Rule", "SaliencyConfig", "apply", "differences", "known_paths",
           "parse_assignment", "parse_value", "replace", "setting"]

#: Key of a field's :class:`Rule` in ``dataclasses.Field.metadata``.
RULE = "wsloc.rule"


class ConfigError(MethodError):
    """A configuration value breaks its field's rule, or a key path names no field."""


@dataclass(frozen=True)
class Rule:
    """What values a configuration field takes.

    Attributes:
        kind: "choice" (one of ``choices``), "number" (int or float, not bool, not NaN), "integer",
            "bool", "text" (a non-empty str), "mapping" (a dict with str keys; stored as a copy),
            "nested" (an instance of ``nested``), "any" (only ``convert`` checks it).
        choices: the allowed values, or a function returning them (looked up when a value is checked).
        low, high: inclusive bounds of "number" / "integer" (None: unbounded).
        above: exclusive lower bound (the value must be greater).
        optional: None is allowed.
        nested: the :class:`Config` class of a "nested" field.
        convert: ``value -> stored value``; raises ValueError / MethodError with the reason.
        why: appended to the message of a range error, in parentheses.
    """

    kind: str = "any"
    choices: object = None
    low: float | None = None
    high: float | None = None
    above: float | None = None
    optional: bool = False
    nested: type | None = None
    convert: object = None
    why: str = ""

    def check(self, value):
        """The value to store, or ValueError with the reason (without the field's name)."""
        if value is None and self.optional:
            return None
        if self.kind == "choice":
            options = tuple(self.choices() if callable(self.choices) else self.choices)
            if value not in options:
                raise ValueError(f"must be one of {', '.join(map(str, options))}")
        elif self.kind in ("number", "integer"):
            value = self._number(value)
        elif self.kind == "bool" and not isinstance(value, bool):
            raise ValueError("must be True or False")
        elif self.kind == "text" and not (isinstance(value, str) and value):
            raise ValueError("must be a non-empty string")
        elif self.kind == "mapping":
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ValueError("must be a mapping of names to values")
            value = copy.deepcopy(value)
        elif self.kind == "nested" and not isinstance(value, self.nested):
            raise ValueError(f"must be a {self.nested.__name__}")
        return self.convert(value) if self.convert is not None else value

    def _number(self, value):
        integer = self.kind == "integer"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                integer and not isinstance(value, int)) or value != value:
            raise ValueError(f"must be {'an integer' if integer else 'a number'}")
        why = f" ({self.why})" if self.why else ""
        if self.above is not None and not value > self.above:
            raise ValueError(f"must be greater than {self.above:g}{why}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            low = "-inf" if self.low is None else f"{self.low:g}"
            high = "inf" if self.high is None else f"{self.high:g}"
            raise ValueError(f"must be in [{low}, {high}]{why}")
        return value


def setting(default=MISSING, *, factory=MISSING, kind: str | None = None, choices=None, low=None, high=None,
            above=None, optional: bool = False, nested: type | None = None, convert=None, why: str = ""):
    """A dataclass field with its :class:`Rule` (``kind`` defaults to "choice" with ``choices``,
    "nested" with ``nested``, "bool" for a bool default, "number" with a bound, else "any")."""
    if kind is None:
        kind = ("choice" if choices is not None else "nested" if nested is not None
                else "bool" if isinstance(default, bool) else "number" if (low, high, above) != (None,) * 3
                else "any")
    if nested is not None and default is MISSING and factory is MISSING:
        factory = nested
    rule = Rule(kind, choices, low, high, above, optional, nested, convert, why)
    return field(default=default, default_factory=factory, metadata={RULE: rule})


class Config:
    """Base of the configuration dataclasses (see the module docstring)."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        for f in fields(self):
            rule = f.metadata.get(RULE)
            if rule is None:
                continue
            value = getattr(self, f.name)
            try:
                checked = rule.check(value)
            except (ValueError, MethodError) as exc:
                raise ConfigError(f"{name}.{f.name}={value!r}: {_reason(exc)}") from None
            object.__setattr__(self, f.name, checked)  # also for frozen classes: the normalised value
        self.cross_check()

    def cross_check(self) -> None:
        """Rules that tie several fields together (ConfigError); none by default."""

    def fail(self, name: str, why: str) -> ConfigError:
        """The :class:`ConfigError` for field ``name``'s current value."""
        return ConfigError(f"{type(self).__name__}.{name}={getattr(self, name)!r}: {why}")

    def to_dict(self) -> dict:
        """Nested plain dict, JSON-ready (tuples as lists); :meth:`from_dict` reads it back."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict, prefix: str = ""):
        """An instance from :meth:`to_dict`'s output (missing keys: the defaults; unknown keys: ConfigError)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: expected a mapping, got {type(data).__name__}")
        byname = {f.name: f for f in fields(cls)}
        for key in data:
            if key not in byname:
                raise unknown_key(f"{prefix}{key}", cls, prefix)
        values = {}
        for key, value in data.items():
            rule = byname[key].metadata.get(RULE)
            if rule is not None and rule.kind == "nested" and isinstance(value, dict):
                value = rule.nested.from_dict(value, f"{prefix}{key}.")
            values[key] = value
        return cls(**values)

    def with_(self, **changes):
        """A copy with the given key paths changed (validated): ``config.with_(top_k=3,
        **{"segment.q_fg": 50.0})``. A nested field takes an instance (replaced) or a dict of its
        own keys (merged key by key); an unknown path is a ConfigError with the close matches."""
        return _apply(self, list(changes.items()), "")

    # A `replace` method too, for the SegmentConfig callers that already use it.
    def replace(self, **changes):
        """Same as :meth:`with_`."""
        return self.with_(**changes)


def _reason(exc: Exception) -> str:
    return str(exc.args[0]) if exc.args else str(exc)


def _plain(value):
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _apply(config: Config, changes: list[tuple[str, object]], where: str):
    byname = {f.name: f for f in fields(config)}
    direct: dict = {}
    grouped: dict[str, list] = {}
    for path, value in changes:
        head, _, rest = str(path).partition(".")
        full = f"{where}{path}"
        if head not in byname:
            raise unknown_key(full, type(config), where)
        rule = byname[head].metadata.get(RULE)
        nested = rule is not None and rule.kind == "nested"
        if rest and rule is not None and rule.kind == "mapping" and "." not in rest:  # one entry of a mapping
            direct[head] = {**direct.get(head, getattr(config, head)), rest: value}
            continue
        if rest and not nested:
            raise unknown_key(full, type(config), where)
        if nested and (rest or isinstance(value, dict)):
            items = [(rest, value)] if rest else list(value.items())
            grouped.setdefault(head, []).extend(items)
        else:
            direct[head] = value
            grouped.pop(head, None)
    for head, items in grouped.items():
        base = direct.pop(head, getattr(config, head))
        direct[head] = _apply(base, items, f"{where}{head}.")
    return dataclasses.replace(config, **direct) if direct else config


def replace(config: Config, path: str, value):
    """``config`` with the value at the dotted key ``path`` replaced: ``replace(cfg, "segment.q_fg", 50.0)``."""
    return _apply(config, [(path, value)], "")


def apply(config: Config, changes) -> Config:
    """``config`` with a sequence of ``(key path, value)`` changes made, later ones winning (what the
    command line's named options and ``--set`` give; see :meth:`Config.with_`)."""
    return _apply(config, list(changes), "")


def known_paths(cls, where: str = "") -> list[str]:
    """Every leaf key path of a configuration class, in declaration order (``segment.q_fg``, ...)."""
    out = []
    for f in fields(cls):
        rule = f.metadata.get(RULE)
        if rule is not None and rule.kind == "nested":
            out.extend(known_paths(rule.nested, f"{where}{f.name}."))
        else:
            out.append(f"{where}{f.name}")
    return out


def unknown_key(path: str, cls, prefix: str = "") -> ConfigError:
    """The one-line error for a key path that names no field of ``cls`` (whose paths start with
    ``prefix``): a close match, then the known keys."""
    known = known_paths(cls, prefix)
    last = path.rsplit(".", 1)[-1]
    near = [p for p in known if p.rsplit(".", 1)[-1] == last] or difflib.get_close_matches(path, known, n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    return ConfigError(f"unknown configuration key {path!r}{hint}; known: {', '.join(known)}")


def parse_value(text: str):
    """A command-line value: JSON when it parses (``50``, ``[1, 2]``, ``true``, ``null``), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignment(text: str) -> tuple[str, object]:
    """``"segment.q_fg=50"`` -> ``("segment.q_fg", 50)`` (the value as :func:`parse_value`)."""
    key, sep, value = str(text).partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), parse_value(value)


def differences(old, new, path: str = "") -> list[str]:
    """``"path: old -> new"`` for every dotted path where two serialised configurations differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out.extend(differences(old.get(k), new.get(k), f"{path}.{k}" if path else str(k)))
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


# --------------------------------------------------------------------------- saliency

def _method_names():
    from .saliency import METHODS  # imports torch: looked up when a method name is checked

    return tuple(METHODS)


def _scales(value) -> tuple[float, ...]:
    from .saliency.multiscale import check_scales

    try:
        return check_scales(value, False)[0]
    except MethodError as exc:
        raise ValueError(_reason(exc).split(": ", 1)[-1]) from None


def _weights(value) -> tuple[float, ...]:
    from .saliency.multiscale import check_weights

    try:
        return check_weights(value)
    except MethodError as exc:
        raise ValueError(_reason(exc).split(": ", 1)[-1]) from None


def _fusions():
    from .saliency.multiscale import FUSIONS

    return FUSIONS


#: The feature layer of ``SaliencyConfig.refine="features"`` measured for EfficientNet-Lite0.
FEATURE_LAYER = "_blocks.10"


@dataclass(frozen=True)
class SaliencyConfig(Config):
    """The saliency maps the localizer segments (:func:`wsloc.saliency.multiscale`).

    Attributes:
        method: a method of :func:`wsloc.saliency.attribute` (``"gradient"``, ``"grad_cam"``, ...).
        options: extra keyword arguments of that method (``{"shortcut": False}``).
        scales: input size factors whose maps are fused, a tuple of positive floats (``(1.0,)``: the
            method's raw maps at the network's input size; at most 16 scales of at most 16).
        flip: also fuse the maps of the left-right mirrored input.
        resize_from: what each scale's input is resized from: ``"input"`` (the network-size input,
            e.g. the 224 px squashed photo enlarged to 448 px for scale 2) or ``"photo"`` (the
            photo's own pixels: the photo is preprocessed once to the largest scale's size and every
            smaller scale, the 224 px classification pass included, is that input shrunk by area
            averaging, so a fine scale sees the photo's detail instead of an enlargement).
        fusion: ``"mean"`` (weighted average of the peak-normalised maps) or ``"geometric"``
            (weighted geometric mean: high only where every scale is high).
        weights: None (equal) or one positive weight per scale, e.g. ``(3, 1)``.
        class_fusion: ``"none"`` (each class its own map) or ``"probability"`` (with top-k targets,
            every class of an image gets the mean of the image's K peak-normalised maps weighted
            by the classes' probabilities, :func:`wsloc.saliency.multiscale.fuse_classes`; given
            targets, e.g. ``targets="gt"``, keep their own maps).
        refine: ``"none"`` (the maps as made) or ``"features"`` (each map carried into the features
            of the module ``refine_layer`` on the largest scale's input, one extra forward pass
            without gradients: :func:`wsloc.saliency.refine.refine_maps`; the maps become
            probabilities in [0, 1] at their own size).
        refine_layer: the module whose output is the feature map (``"_blocks.10"``: EfficientNet-Lite's
            last stride-16 block, in an ensemble its first member's; another architecture names its
            own, e.g. ``"layer3"`` of a ResNet).
        refine_power: the feature map is multiplied by the map's fraction of its maximum to this
            power (0: the feature model alone).
    """

    method: str = setting("gradient", choices=_method_names)
    options: dict = setting(factory=dict, kind="mapping")
    scales: tuple = setting((1.0,), kind="any", convert=_scales)
    flip: bool = setting(False)
    resize_from: str = setting("input", choices=("input", "photo"))
    fusion: str = setting("mean", choices=_fusions)
    weights: tuple | None = setting(None, kind="any", optional=True, convert=_weights)
    class_fusion: str = setting("none", choices=("none", "probability"))
    refine: str = setting("none", choices=("none", "features"))
    refine_layer: str = setting(FEATURE_LAYER, kind="text")
    refine_power: float = setting(0.25, low=0.0)

    def cross_check(self) -> None:
        if self.weights is not None and len(self.weights) != len(self.scales):
            raise self.fail("weights", f"expected one weight per scale ({len(self.scales)}: {self.scales})")

