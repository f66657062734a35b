"""ONNX Runtime as the network engine of the forward-only maps (``LocalizerConfig(engine="onnx")``).

CAM and Grad-CAM on a GAP + linear model (the default preset on Lite0, where ``grad_cam`` needs
no backward pass, :mod:`wsloc.saliency.cam`) need of the network only its last feature map and
its logits. :func:`onnx_classifier` exports ``x -> (feature map, logits)`` to ONNX once per
input size (dynamic batch; at 224 and 448 px for the default preset) and returns a
:class:`wsloc.Classifier` whose module runs that graph in ONNX Runtime and hands the feature
map to the same hook the saliency code reads, so every step after the network is wsloc's own
code. The results equal eager PyTorch's up to float rounding (different kernels); measured by
``scripts/bench_engine.py``. Needs the optional extra ``pip install 'wsloc[onnx]'``; CPU only.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import torch
from torch import nn

from .errors import MethodError

FEATURES = "onnx_features"  #: name of the module whose output is the feature map (Classifier.last_conv)
FC = "fc"  #: name of the original final linear layer (Classifier.fc: its weights make the maps)


class _FeaturesLogits(nn.Module):
    """``x -> (output of layer, logits)`` of a model (a temporary forward hook reads the layer)."""

    def __init__(self, model: nn.Module, layer: str):
        super().__init__()
        self.model = model
        self.layer = model.get_submodule(layer)

    def forward(self, x):
        seen = []
        handle = self.layer.register_forward_hook(lambda mod, inp, out: seen.append(out))
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        return seen[0], logits


class OnnxModel(nn.Module):
    """``[N, 3, H, W] -> [N, classes]`` logits computed by ONNX Runtime; the feature map goes
    through the child ``onnx_features`` (an identity) so that forward hooks on it see it.

    Sessions are made per (input size, thread count): the thread count follows
    ``torch.get_num_threads()`` at each call, as the runner's worker plan sets it.
    """

    def __init__(self, model: nn.Module, layer: str, fc: nn.Linear):
        super().__init__()
        import onnxruntime  # noqa: F401  (fail at construction, not at the first image)

        self._source = [_FeaturesLogits(model, layer).eval()]  # in a list: not a child module
        self.onnx_features = nn.Identity()
        self.fc = fc
        self._graphs: dict = {}
        self._sessions: dict = {}

    def __deepcopy__(self, memo):
        """A twin for another thread: its own feature hook module, the same graphs and sessions
        (an ONNX Runtime session may run from several threads at once)."""
        twin = OnnxModel.__new__(OnnxModel)
        nn.Module.__init__(twin)
        twin._source = self._source
        twin.onnx_features = nn.Identity()
        twin.fc = self.fc
        twin._graphs, twin._sessions = self._graphs, self._sessions
        return twin

    def _session(self, size, threads: int):
        import onnxruntime as ort

        key = (tuple(size), threads)
        if key not in self._sessions:
            if tuple(size) not in self._graphs:
                buf = io.BytesIO()
                with torch.no_grad():
                    torch.onnx.export(self._source[0], (torch.zeros(2, 3, *size),), buf, input_names=["x"],
                                      output_names=["features", "logits"], opset_version=17, dynamo=False,
                                      dynamic_axes={"x": {0: "n"}, "features": {0: "n"}, "logits": {0: "n"}})
                self._graphs[tuple(size)] = buf.getvalue()
            opt = ort.SessionOptions()
            opt.intra_op_num_threads = threads
            opt.inter_op_num_threads = 1
            self._sessions[key] = ort.InferenceSession(self._graphs[tuple(size)], opt,
                                                       providers=["CPUExecutionProvider"])
        return self._sessions[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sess = self._session(x.shape[-2:], torch.get_num_threads())
        f, logits = sess.run(None, {"x": np.ascontiguousarray(x.detach().float().cpu().numpy())})
        self.onnx_features(torch.from_numpy(f))
        return torch.from_numpy(logits)


def onnx_classifier(clf, method: str, method_options: dict):
    """A copy of the :class:`wsloc.Classifier` ``clf`` whose network runs in ONNX Runtime.

    Raises:
        MethodError: ONNX Runtime missing, a device other than the CPU, a model that is not
            GAP + linear, or a method that needs a backward pass (only ``cam`` and ``grad_cam`` at
            the model's last feature layer with the shortcut on are forward-only).
    """
    from .saliency.cam import forward_only_maps

    if clf.fc is None or clf.last_conv is None or getattr(clf, "tokens", None) is not None:
        raise MethodError("engine='onnx': the model must end in global average pooling and one linear layer "
                          "(Classifier.fc), as the forward-only maps need")
    if not forward_only_maps(clf, method, method_options):
        raise MethodError(f"engine='onnx': only forward-only maps run there (cam, or grad_cam at the last feature "
                          f"layer with its shortcut), not method={method!r} with {method_options!r}")
    if clf.device.type != "cpu":
        raise MethodError(f"engine='onnx': runs on the CPU only, not on {clf.device}; use engine='eager'")
    try:
        model = OnnxModel(clf.model, clf.last_conv, clf.model.get_submodule(clf.fc))
    except ImportError:
        raise MethodError("engine='onnx' needs ONNX Runtime: pip install 'wsloc[onnx]' "
                          "(onnx and onnxruntime)") from None
    return dataclasses.replace(clf, model=model, last_conv=FEATURES, fc=FC)
