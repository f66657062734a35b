"""Agreement with Captum (an independent implementation) on the offline EfficientNet-Lite0 and
a randomly initialised torchvision ResNet-18: max relative difference below 1e-4.

Conventions matched: Captum's attribution per channel is compared with ours before the
channel reduction (and the maps after the same reduction); Grad-CAM is Captum's
``LayerGradCam`` (ReLU) upsampled with ``LayerAttribution.interpolate(..., "bilinear")``;
occlusion windows cover all channels; SmoothGrad gets Captum's own noise (same seed).
Captum's guided backprop / deconvnet hook ``nn.ReLU`` modules only, so they are compared on
the ResNet-18 (Lite0's units are ReLU6).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from wsloc.models import load_classifier
from wsloc.saliency import attribute, reduce_channels

captum_attr = pytest.importorskip("captum.attr")

TOL = 1e-4
K = 2


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module", params=["efficientnet_lite0", "resnet18"])
def setup(request):
    torch.manual_seed(0)
    if request.param == "efficientnet_lite0":
        clf = load_classifier("efficientnet_lite0")
        size = 64
    else:
        clf = load_classifier("resnet18", weights=None)
        size = 64
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    warnings.filterwarnings("ignore", message=".*backward hook.*")
    return request.param, clf, x


def per_class(fn, r):
    return torch.stack([fn(r.targets[:, k]) for k in range(K)], 1)


@pytest.mark.parametrize("engine", ["tape", "autograd"])
def test_gradient(setup, engine):
    name, clf, x = setup
    r = attribute(clf, x, method="gradient", top_k=K, return_attributions=True, engine=engine)
    sal = captum_attr.Saliency(clf.model)
    ref = per_class(lambda t: sal.attribute(x, target=t, abs=False), r)
    assert rel(r.attributions, ref) < TOL
    assert rel(r.maps, ref.abs().amax(2)) < TOL  # Captum's abs=True map reduced the same way


def test_gradient_x_input(setup):
    name, clf, x = setup
    r = attribute(clf, x, method="gradient_x_input", top_k=K, return_attributions=True)
    ref = per_class(lambda t: captum_attr.InputXGradient(clf.model).attribute(x, target=t), r)
    assert rel(r.attributions, ref) < TOL
    assert rel(r.maps, reduce_channels(ref, "max_abs")) < TOL


@pytest.mark.parametrize("rule,captum_rule", [("middle", "riemann_middle"), ("gausslegendre", "gausslegendre"),
                                              ("trapezoid", "riemann_trapezoid")])
def test_integrated_gradients(setup, rule, captum_rule):
    name, clf, x = setup
    steps = 8
    baseline = torch.full_like(x, -0.5)
    r = attribute(clf, x, method="integrated_gradients", top_k=K, steps=steps, rule=rule, baseline=-0.5,
                  return_attributions=True)
    ig = captum_attr.IntegratedGradients(clf.model)
    ref = per_class(lambda t: ig.attribute(x, baselines=baseline, target=t, n_steps=steps,
                                           method=captum_rule), r)
    if rule == "trapezoid":
        # Captum's trapezoid weights are 1/n (ends halved), summing to (n-1)/n; ours 1/(n-1).
        ref = ref * steps / (steps - 1)
    assert rel(r.attributions, ref) < TOL


def test_grad_cam(setup):
    name, clf, x = setup
    r = attribute(clf, x, method="grad_cam", top_k=K)
    layer = clf.model.get_submodule(clf.last_conv)
    lgc = captum_attr.LayerGradCam(clf.model, layer)
    ref = per_class(lambda t: captum_attr.LayerAttribution.interpolate(
        lgc.attribute(x, target=t, relu_attributions=True), tuple(x.shape[-2:]), "bilinear")[:, 0], r)
    assert ref.abs().max() > 0
    assert rel(r.maps, ref) < TOL


def test_occlusion(setup):
    name, clf, x = setup
    patch, stride = 32, 16  # (size - patch) divisible by stride: the same windows as Captum's
    r = attribute(clf, x, method="occlusion", top_k=K, patch=patch, stride=stride, fill=0.0,
                  return_attributions=True, max_batch=16)
    occ = captum_attr.Occlusion(clf.model)
    ref = per_class(lambda t: occ.attribute(x, target=t, sliding_window_shapes=(3, patch, patch),
                                            strides=(3, stride, stride), baselines=0.0,
                                            perturbations_per_eval=16), r)
    assert rel(r.attributions, ref) < TOL
    assert rel(r.maps, ref.mean(2)) < TOL


def test_smoothgrad_with_fixed_noise(setup):
    name, clf, x = setup
    samples, stdev = 3, 0.3
    # Captum's NoiseTunnel draws torch.normal(0, stdev) for the batch repeated image-major
    # (row n * samples + s); recreate the same draw and hand it to wsloc as [samples, N, ...].
    torch.manual_seed(11)
    noise = torch.normal(0, torch.tensor(stdev).repeat((x.shape[0] * samples,) + tuple(x.shape[1:])))
    noise = noise.view(x.shape[0], samples, *x.shape[1:]).transpose(0, 1)
    r = attribute(clf, x, method="smoothgrad", top_k=K, noise=noise, return_attributions=True)
    nt = captum_attr.NoiseTunnel(captum_attr.Saliency(clf.model))

    def one(t):
        torch.manual_seed(11)
        return nt.attribute(x, nt_type="smoothgrad", nt_samples=samples, stdevs=stdev, target=t, abs=False)

    ref = per_class(one, r)
    assert rel(r.attributions, ref) < TOL


@pytest.mark.parametrize("method,captum_cls", [("guided_backprop", "GuidedBackprop"),
                                               ("deconvnet", "Deconvolution")])
@pytest.mark.parametrize("engine", ["tape", "autograd"])
def test_relu_rules_on_resnet18(setup, method, captum_cls, engine):
    name, clf, x = setup
    if name != "resnet18":
        pytest.skip("Captum's rules hook nn.ReLU only; Lite0 uses ReLU6")
    r = attribute(clf, x, method=method, top_k=K, return_attributions=True, engine=engine)
    explainer = getattr(captum_attr, captum_cls)(clf.model)
    ref = per_class(lambda t: explainer.attribute(x, target=t), r)
    assert rel(r.attributions, ref) < TOL
    plain = attribute(clf, x, targets=r.targets, method="gradient", return_attributions=True)
    assert rel(r.attributions, plain.attributions) > 0.01  # the rules change the result


def test_guided_grad_cam_on_resnet18(setup):
    name, clf, x = setup
    if name != "resnet18":
        pytest.skip("Captum's guided backprop hooks nn.ReLU only")
    r = attribute(clf, x, method="guided_grad_cam", top_k=K, return_attributions=True)
    ggc = captum_attr.GuidedGradCam(clf.model, clf.model.get_submodule(clf.last_conv))
    ref = per_class(lambda t: ggc.attribute(x, target=t, interpolate_mode="bilinear"), r)
    assert rel(r.attributions, ref) < TOL
