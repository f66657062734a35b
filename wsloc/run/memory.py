"""How much memory a run's configuration needs, checked before the first batch.

The network's memory grows with the square of the largest input scale (``--scales 1,4``
runs a 896 px input for a 224 px network: 16 times the activations) and linearly with the
batch size; nothing in a run bounds it but the machine, whose out-of-memory killer ends the
run without a word. :func:`estimate` adds up the large buffers of a configuration:

* ``network``: ``batch * activations(224 px) * max_scale**2 * fraction(method)``, where
  ``activations`` is the sum of the output sizes of the model's leaf modules for one image
  at its input size (one probing forward pass, :func:`activation_bytes`), and ``fraction``
  the part of them a method holds at its peak: 0.8 for the methods that back-propagate
  through the whole network (measured on EfficientNet-Lite0, plain gradient, scales 2 and 3:
  0.8 and 0.95 of the activations per image and scale squared), 0.1 for Grad-CAM / CAM /
  occlusion (measured 0.12; their graph starts at the last convolution);
* ``maps``: the K maps of a batch at the largest scale and their resized, normalised
  copies (3 float32 copies);
* ``images``: the whole decoded images in flight (uint8, 3 channels), at the dataset's
  largest known image size (the runner counts one batch per decoding process: images stay
  whole only while they are decoded, the rest of the run holds their small working copies);
* ``segmentation``: each segmentation process on the largest image (about 20 bytes per
  pixel, measured at 1 and 4 megapixels) plus the process itself (its libraries).

The figures are deliberately low (a lower bound of the peak, not a promise): a configuration
is refused only when even this does not fit in the memory available now
(:func:`available_bytes`), and the message says what to lower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import WslocError
from ..saliency.multiscale import MAX_SCALE

#: Part of the one-image activations a method holds at its peak (see the module docstring).
LIGHT_METHODS = {"cam": 0.1, "grad_cam": 0.1, "occlusion": 0.1}
BACKWARD_FRACTION = 0.8
MAP_COPIES = 3
SEGMENT_BYTES_PER_PIXEL = 20
PROCESS_BYTES = 150 * 2**20  # a worker process's libraries (numpy, OpenCV, scikit-learn)

GB = 2**30


def activation_bytes(classifier) -> int:
    """Bytes of the outputs of all leaf modules of ``classifier.model`` for one image at
    ``classifier.input_size`` (one forward pass without gradients, eval mode; the model's
    mode and hooks are restored)."""
    import torch

    model = classifier.model
    total = [0]

    def hook(module, inputs, output):
        for t in (output if isinstance(output, (tuple, list)) else (output,)):
            if torch.is_tensor(t):
                total[0] += t.numel() * t.element_size()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros(1, 3, *classifier.input_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(training)
    return total[0]


@dataclass
class MemoryEstimate:
    """Bytes of the large buffers of a run (see the module docstring); ``per_scale2``: the
    network and map bytes per unit of ``max_scale**2`` at this batch size."""

    network: int
    maps: int
    images: int
    segmentation: int
    max_scale: float
    batch_size: int
    per_scale2: float

    @property
    def total(self) -> int:
        return self.network + self.maps + self.images + self.segmentation

    def describe(self) -> str:
        parts = [("network", self.network), ("maps", self.maps), ("images", self.images),
                 ("segmentation", self.segmentation)]
        return ", ".join(f"{name} {v / GB:.1f} GB" for name, v in parts if v >= 0.05 * GB) or "under 0.1 GB"


def estimate(config, activations: int, input_size, image_pixels: int, segment_workers: int,
             batches_in_flight: int) -> MemoryEstimate:
    """The memory of a configuration (all sizes in bytes).

    Args:
        config: the :class:`wsloc.localizer.LocalizerConfig` (saliency method and scales, top_k, batch_size).
        activations: :func:`activation_bytes` of the classifier.
        input_size: (h, w) of the network input.
        image_pixels: the largest image's pixel count (0 when unknown).
        segment_workers: segmentation processes (0: in the main process).
        batches_in_flight: batches decoded or waiting for the segmentation at once.
    """
    s = max(float(v) for v in config.saliency.scales)
    bs = int(config.batch_size)
    h, w = input_size
    fraction = LIGHT_METHODS.get(config.saliency.method, BACKWARD_FRACTION)
    net_per = bs * activations * fraction
    maps_per = bs * int(config.top_k) * h * w * 4 * MAP_COPIES
    images = batches_in_flight * bs * image_pixels * 3
    segmentation = max(1, segment_workers) * image_pixels * SEGMENT_BYTES_PER_PIXEL + segment_workers * PROCESS_BYTES
    return MemoryEstimate(network=int(net_per * s * s), maps=int(maps_per * s * s), images=int(images),
                          segmentation=int(segmentation), max_scale=s, batch_size=bs,
                          per_scale2=(net_per + maps_per))


def available_bytes() -> int | None:
    """Memory this process can still get: ``MemAvailable`` of ``/proc/meminfo``, lowered to
    the cgroup's limit minus its usage where one is set; None where unknown."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as f:
                text = f.read().strip()
            if text == "max":
                continue
            with open(usage_file) as f:
                room = int(text) - int(f.read().strip())
        except (OSError, ValueError):
            continue
        if room < 2**50:
            avail = room if avail is None else min(avail, room)
    return avail


def check(est: MemoryEstimate, available: int | None, where: str = "the machine") -> None:
    """Raise :class:`WslocError` when ``est`` does not fit in ``available`` bytes, saying
    which largest scale would fit at this batch size and at batch size 1."""
    if available is None or est.total <= available:
        return
    fixed = est.total - est.network - est.maps
    room = available - fixed

    def fits(bs: int) -> str:
        if room <= 0:
            return "none"
        s = min(math.sqrt(room / (est.per_scale2 * bs / est.batch_size)), MAX_SCALE)
        return f"{s:.2g}" if s >= 1 else f"{s:.2g} (below 1)"

    advice = [f"lower --scales (largest {est.max_scale:g}; at most {fits(est.batch_size)} fits at "
              f"--batch-size {est.batch_size}, {fits(1)} at --batch-size 1) or --batch-size"]
    if fixed > 0.5 * available:
        advice.append("lower --max-pixels or --segment-workers")
    raise WslocError(f"this configuration needs at least {est.total / GB:.1f} GB of memory ({est.describe()}) "
                     f"but {where} has {available / GB:.1f} GB available; " + "; ".join(advice))


def check_run(localizer, image_pixels: int, segment_workers: int, batches_in_flight: int,
              available: int | None = None) -> MemoryEstimate:
    """Estimate and check a run's memory (CUDA: the network and maps against the GPU's free
    memory, the rest against the host's). Returns the estimate."""
    clf = localizer.classifier
    est = estimate(localizer.config, activation_bytes(clf), clf.input_size, image_pixels, segment_workers,
                   batches_in_flight)
    if clf.device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(clf.device)
        gpu = MemoryEstimate(est.network, est.maps, 0, 0, est.max_scale, est.batch_size, est.per_scale2)
        check(gpu, free, where=str(clf.device))
        host = MemoryEstimate(0, 0, est.images, est.segmentation, est.max_scale, est.batch_size, est.per_scale2)
        check(host, available_bytes() if available is None else available)
    else:
        check(est, available_bytes() if available is None else available)
    return est

