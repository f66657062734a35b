"""Model-parameter randomization (Adebayo et al. 2018, "Sanity checks for saliency maps", sec. 3.1).

A model is cut into *blocks*, listed from the logits down to the input. Two tests use them:

* **cascading** randomization: step ``k`` re-initialises blocks ``0..k`` (the top ``k + 1``
  blocks), so the network is destroyed progressively from the top;
* **independent** randomization: step ``k`` re-initialises block ``k`` alone.

Blocks (:func:`block_list`):

* EfficientNet-Lite: ``_fc``, ``head`` (``_conv_head`` + ``_bn1``), ``_blocks.15`` ...
  ``_blocks.0``, ``stem`` (``_conv_stem`` + ``_bn0``): 19 blocks for Lite0.
* Any other module (torchvision models, a user's ``nn.Module``): its top-level children in
  registration order; a child that is an ``nn.Sequential``/``nn.ModuleList`` with more than one
  child holding parameters is split into its children (one level: ResNet's ``layer1.0``, VGG's
  ``features.0``, torchvision EfficientNet's ``features.3`` stages); a normalisation layer
  (BatchNorm/GroupNorm/LayerNorm/InstanceNorm) joins the unit before it when both have the same
  parent (ResNet's ``conv1`` + ``bn1``); units without parameters or buffers (ReLU, pooling, dropout) are dropped. The list is
  then reversed (top first).

Re-initialisation (:func:`reinitialize_`), exactly: every submodule of a block that defines
``reset_parameters()`` gets it called: its own initializer (``nn.Conv2d``/``nn.Linear``:
PyTorch's default Kaiming-uniform weights and uniform bias; ``BatchNorm``: weight 1, bias 0,
``running_mean`` 0, ``running_var`` 1, ``num_batches_tracked`` 0, i.e. running statistics are
reset too). A parameter owned by a module without ``reset_parameters`` (e.g. a layer-scale
vector) is redrawn by a fallback: tensors of 2 or more dimensions with Kaiming-uniform
(``a = sqrt(5)``, PyTorch's Linear/Conv default), others from a normal distribution with the
tensor's own mean and standard deviation (0.02 when that is 0). The fallback's parameter names
are listed in :attr:`RandomizedModel.fallback`.

Seeding: block ``name`` is drawn from a CPU generator seeded with
``crc32(f"{seed}:{name}")``, on a CPU copy of its modules (then copied back to the model's
device), inside ``torch.random.fork_rng`` so the global RNG state is untouched. Hence a block's
random weights depend only on ``(seed, name)``: they are the same on CPU and CUDA, in the
cascading and the independent test, and on every rerun.

The model passed in is never modified: every step is a deep copy (eval mode and
``requires_grad`` flags are kept).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import MethodError

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class Block:
    """A unit of randomization: a display ``name`` and the qualified names of its modules."""

    name: str
    modules: tuple[str, ...]


@dataclass
class RandomizedModel:
    """One step of a randomization test.

    Attributes:
        step: 0-based index of the step.
        block: the block randomized at this step (cascading: the lowest one so far).
        randomized: names of all blocks randomized in this copy, top first.
        model: the randomized copy (``nn.Module``, or a ``Classifier`` when one was given).
        fallback: parameter names redrawn by the fallback initializer (see module doc).
    """

    step: int
    block: str
    randomized: tuple[str, ...]
    model: object
    fallback: tuple[str, ...] = field(default_factory=tuple)


def _module_of(model) -> nn.Module:
    return model.model if hasattr(model, "model") and isinstance(model.model, nn.Module) else model


def _with_module(model, module: nn.Module):
    """``model`` of the same kind as given: a Classifier gets ``module`` swapped in."""
    if model is module or not dataclasses.is_dataclass(model):
        return module
    return dataclasses.replace(model, model=module)


def _has_state(m: nn.Module) -> bool:
    return any(True for _ in m.parameters()) or any(True for _ in m.buffers())


def block_list(model) -> list[Block]:
    """The blocks of ``model`` (a ``Classifier`` or an ``nn.Module``), top (logits) first.

    See the module docstring for the rules. Raises MethodError for a model without parameters.
    """
    module = _module_of(model)
    from ..models.efficientnet_lite import EfficientNetLite

    if isinstance(module, EfficientNetLite):
        blocks = [Block("_fc", ("_fc",)), Block("head", ("_conv_head", "_bn1"))]
        blocks += [Block(f"_blocks.{i}", (f"_blocks.{i}",)) for i in reversed(range(len(module._blocks)))]
        blocks.append(Block("stem", ("_conv_stem", "_bn0")))
        return blocks
    units: list[list[str]] = []
    for name, child in module.named_children():
        parts = [(name, child)]
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            inner = [(f"{name}.{n}", c) for n, c in child.named_children()]
            if sum(1 for _, c in inner if any(True for _ in c.parameters())) > 1:
                parts = inner
        for qual, m in parts:
            if not _has_state(m):
                continue
            if isinstance(m, _NORMS) and units and units[-1][-1].rpartition(".")[0] == qual.rpartition(".")[0]:
                units[-1].append(qual)
            else:
                units.append([qual])
    if not units:
        raise MethodError(f"{type(module).__name__}: the model has no parameters to randomize")
    return [Block(u[0], tuple(u)) for u in reversed(units)]


def _resolve(model, blocks: Sequence[Block | str] | None) -> list[Block]:
    known = block_list(model)
    if blocks is None:
        return known
    by_name = {b.name: b for b in known}
    out = []
    for b in blocks:
        if isinstance(b, Block):
            out.append(b)
        elif b in by_name:
            out.append(by_name[b])
        else:
            raise MethodError(f"unknown block {b!r}; the model's blocks are {[k.name for k in known]}")
    return out


def block_seed(seed: int, name: str) -> int:
    """The generator seed of block ``name``: ``crc32(f"{seed}:{name}")``."""
    return zlib.crc32(f"{int(seed)}:{name}".encode())


def _fallback_init_(p: torch.Tensor) -> None:
    if p.ndim >= 2:
        nn.init.kaiming_uniform_(p, a=math.sqrt(5))
    else:
        std = float(p.std()) if p.numel() > 1 else 0.0
        p.normal_(float(p.mean()) if p.numel() else 0.0, std if std > 0 else 0.02)


@torch.no_grad()
def reinitialize_(module: nn.Module, seed: int) -> list[str]:
    """Re-initialise every parameter and buffer of ``module`` in place, each with its own initializer.

    Draws on a CPU copy under ``fork_rng`` + ``manual_seed(seed)``, then copies the values back
    (so the result is the same on every device). Returns the names of parameters (relative to
    ``module``) that had no module initializer and went through the fallback.
    """
    cpu = copy.deepcopy(module).to("cpu")
    fallback: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, m in cpu.named_modules():
            if callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()  # BatchNorm's also resets its running statistics
            else:
                for pname, p in m.named_parameters(recurse=False):
                    _fallback_init_(p)
                    fallback.append(f"{name}.{pname}" if name else pname)
    state = cpu.state_dict()
    for k, v in module.state_dict().items():
        v.copy_(state[k])
    return fallback


def randomize_blocks(model, blocks: Sequence[Block | str], seed: int = 0):
    """A deep copy of ``model`` with ``blocks`` re-initialised; returns (copy, fallback names).

    ``model`` is a ``Classifier`` or an ``nn.Module``; the copy is of the same kind.
    """
    resolved = _resolve(model, blocks)
    module = copy.deepcopy(_module_of(model))
    return _with_module(model, module), _randomize_in_place(module, resolved, seed)


def _randomize_in_place(module: nn.Module, blocks: Sequence[Block], seed: int) -> list[str]:
    fallback = []
    for block in blocks:
        for name in block.modules:
            try:
                sub = module.get_submodule(name)
            except AttributeError:
                raise MethodError(f"block {block.name!r}: the model has no module {name!r}") from None
            fallback += [f"{name}.{p}" for p in reinitialize_(sub, block_seed(seed, block.name))]
    return fallback


def cascading_randomization(model, blocks: Sequence[Block | str] | None = None,
                            seed: int = 0) -> Iterator[RandomizedModel]:
    """Yield one copy per block: step ``k`` has blocks ``0..k`` (top first) re-initialised.

    ``blocks`` defaults to :func:`block_list`; pass names to restrict or reorder. Each yielded
    model is a fresh copy (keeping one is safe); the input model is never modified.
    """
    resolved = _resolve(model, blocks)
    current = _module_of(model)
    done: list[str] = []
    fallback: list[str] = []
    for k, block in enumerate(resolved):
        current = copy.deepcopy(current)
        fallback += _randomize_in_place(current, [block], seed)
        done.append(block.name)
        yield RandomizedModel(k, block.name, tuple(done), _with_module(model, current), tuple(fallback))


def independent_randomization(model, blocks: Sequence[Block | str] | None = None,
                              seed: int = 0) -> Iterator[RandomizedModel]:
    """Yield one copy per block: step ``k`` has block ``k`` alone re-initialised."""
    for k, block in enumerate(_resolve(model, blocks)):
        copy_, fallback = randomize_blocks(model, [block], seed)
        yield RandomizedModel(k, block.name, (block.name,), copy_, tuple(fallback))
