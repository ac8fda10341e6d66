"""The engine against reference implementations, batch against single, and free of side effects."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from components.explanation.cam import METHODS, ExplainError, explain
from models import Classifier
from tests.support import seeded_model

LAYERS = ["features.8", "features.6"]  # the default, and a block whose gradients vary in space


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def reference(cls, clf: Classifier, images, layer: str, target: int, *, lowres: bool = False) -> np.ndarray:
    model = clf.model
    x = clf.preprocess(images)
    if lowres:
        shapes: list[torch.Size] = []
        handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: shapes.append(o.shape))
        with torch.no_grad():
            model(x[:1])  # the layer's own spatial size, so the reference skips resizing
        handle.remove()
        fh, fw = shapes[0][-2:]

        class NoResize(cls):
            def get_target_width_height(self, _x):
                return fw, fh

        cls = NoResize
    cam = cls(model=model, target_layers=[model.get_submodule(layer)])
    try:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)] * len(images))
    finally:
        cam.activations_and_grads.release()


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("target", [0, 1])
def test_gradcam_matches_pytorch_grad_cam(classifier, images, layer, target):
    ref = reference(GradCAM, classifier, images[:4], layer, target)
    ours = explain(classifier, images[:4], layer=layer, target=target)
    for r, ex in zip(ref, ours, strict=True):
        assert ex.cam.shape == r.shape == (224, 224)
        assert pearson(r, ex.cam) >= 0.999
        # Same peak: each map is (near) maximal where the other one peaks.
        assert ex.cam.flat[r.argmax()] >= 0.99
        assert r.flat[ex.cam.argmax()] >= 0.99 * r.max()


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize(("method", "ref_cls"), [("layercam", LayerCAM), ("hirescam", HiResCAM)])
def test_layercam_and_hirescam_match_pytorch_grad_cam_at_layer_resolution(classifier, images, layer, method,
                                                                           ref_cls):
    for target in (0, 1):
        ref = reference(ref_cls, classifier, images[:3], layer, target, lowres=True)
        ours = explain(classifier, images[:3], layer=layer, target=target, method=method)
        for r, ex in zip(ref, ours, strict=True):
            assert ex.cam_lowres.shape == r.shape
            assert pearson(r, ex.cam_lowres) >= 0.999


def test_gradcam_plus_plus_matches_pytorch_grad_cam(images):
    # pytorch-grad-cam follows the paper's eq. 19 (activation sum outside the g^3 term) but adds
    # eps=1e-6 to the denominator, which dominates when squared gradients are below ~1e-6, as at
    # features.8 of a model with small head weights (g = w / 49). With logits scaled up, the eps
    # is negligible and the two must agree. (torchcam 0.5 divides a boolean-indexed copy, so its
    # alpha stays g^2: it does not follow the paper and is not used as the reference.)
    model = seeded_model(0)
    with torch.no_grad():
        model.classifier[-1].weight.mul_(100)
    clf = Classifier(model=model, class_names=("Cataract", "Normal"))
    for target in (0, 1):
        ref = reference(GradCAMPlusPlus, clf, images[:3], "features.8", target, lowres=True)
        ours = explain(clf, images[:3], layer="features.8", target=target, method="gradcam++")
        for r, ex in zip(ref, ours, strict=True):
            assert pearson(r, ex.cam_lowres) >= 0.999


def _manual_split(clf: Classifier, images, stage: int, block: int):
    """Activations inside features[stage][block] (before its residual add) and the logits, by hand."""
    model = clf.model
    x = clf.preprocess(images)
    with torch.no_grad():
        h = model.features[:stage](x)
        h = model.features[stage][:block](h)
    mb = model.features[stage][block]
    acts = mb.block(h).detach().requires_grad_(True)
    out = acts + h  # the MBConv residual (stochastic depth is the identity in eval)
    out = model.features[stage][block + 1:](out)
    out = model.features[stage + 1:](out)
    logits = model.classifier(torch.flatten(model.avgpool(out), 1))
    return acts, logits


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "layercam"])
def test_layer_inside_a_residual_block_matches_a_hand_built_split(classifier, images, method):
    # features.6.2.block.3 is followed by an in-place residual add: the engine must capture the
    # block's own output, not the sum (pytorch-grad-cam's hook keeps a view the add overwrites).
    acts, logits = _manual_split(classifier, images[:2], 6, 2)
    (grads,) = torch.autograd.grad(logits[:, 0].sum(), acts)
    a, g = acts.detach().double().numpy(), grads.double().numpy()
    if method == "gradcam":
        raw = (g.mean(axis=(2, 3), keepdims=True) * a).sum(1)
    elif method == "hirescam":
        raw = (g * a).sum(1)
    elif method == "layercam":
        raw = (np.maximum(g, 0) * a).sum(1)
    else:  # eq. 19 of Chattopadhay et al., written out
        alpha = g**2 / (2 * g**2 + a.sum(axis=(2, 3), keepdims=True) * g**3)
        raw = ((alpha * np.maximum(g, 0)).sum(axis=(2, 3), keepdims=True) * a).sum(1)
    ours = explain(classifier, images[:2], layer="features.6.2.block.3", target=0, method=method)
    for r, ex in zip(raw, ours, strict=True):
        r = np.maximum(r, 0)
        r = (r - r.min()) / (r.max() - r.min())
        np.testing.assert_allclose(ex.cam_lowres, r, atol=1e-5)


def test_layercam_matches_torchcam(classifier, images):
    from torchcam.methods import LayerCAM as TorchcamLayerCAM

    model = classifier.model
    x = classifier.preprocess(images[:2])
    for target in (0, 1):
        extractor = TorchcamLayerCAM(model, target_layer="features.6")
        try:
            with torch.enable_grad():
                scores = model(x)
                maps = extractor([target, target], scores)[0].detach().numpy()
        finally:
            extractor.remove_hooks()
        model.zero_grad(set_to_none=True)
        ours = explain(classifier, images[:2], layer="features.6", target=target, method="layercam")
        for m, ex in zip(maps, ours, strict=True):
            assert pearson(m, ex.cam_lowres) >= 0.999


def test_maps_are_normalised_whatever_their_magnitude(images):
    tiny = seeded_model(1)
    with torch.no_grad():
        tiny.classifier[-1].weight.mul_(1e-12)  # logits and gradients of order 1e-12
    clf = Classifier(model=tiny, class_names=("Cataract", "Normal"))
    for ex in explain(clf, images[:2]):
        assert ex.raw_max < 1e-9
        assert ex.cam.min() == 0.0
        assert ex.cam.max() == 1.0
        assert not ex.is_zero
        assert np.isfinite(ex.cam).all()


def test_exactly_zero_map_stays_zero_and_is_flagged(images):
    dead = seeded_model(1)
    with torch.no_grad():
        dead.classifier[-1].weight.zero_()  # no gradient reaches the features
    clf = Classifier(model=dead, class_names=("Cataract", "Normal"))
    ex = explain(clf, images[:1])[0]
    assert ex.is_zero
    assert ex.raw_max == 0.0
    assert not np.isnan(ex.cam).any()
    assert (ex.cam == 0).all()
    # With no weights the logits are the bias alone.
    expected = torch.softmax(dead.classifier[-1].bias.detach().double(), 0).tolist()
    assert [ex.probabilities["Cataract"], ex.probabilities["Normal"]] == pytest.approx(expected, abs=1e-6)


def test_batch_with_mixed_targets_equals_single_calls(classifier, images):
    targets = ["Cataract", "Normal", None, 1]
    batch = explain(classifier, images[:4], target=targets, method="gradcam++")
    for img, t, got in zip(images[:4], targets, batch, strict=True):
        single = explain(classifier, [img], target=t, method="gradcam++")[0]
        np.testing.assert_allclose(got.cam, single.cam, atol=1e-4)
        assert got.target == single.target
        assert got.prediction == single.prediction
        assert got.probabilities == pytest.approx(single.probabilities, abs=1e-5)
    assert batch[0].target == "Cataract"
    assert batch[1].target == "Normal"
    assert batch[2].target == batch[2].prediction


def test_targets_are_checked(classifier, images):
    with pytest.raises(ExplainError, match="Expected 3 targets for a batch of 3 images, got 2"):
        explain(classifier, images[:3], target=["Cataract", "Normal"])
    with pytest.raises(ExplainError, match="Unknown target class 'Glaucoma'"):
        explain(classifier, images[:1], target="Glaucoma")
    with pytest.raises(ExplainError, match=r"no layer named 'features\.42'"):
        explain(classifier, images[:1], layer="features.42")
    with pytest.raises(ExplainError, match="Unknown method"):
        explain(classifier, images[:1], method="scorecam")


def _state(model: torch.nn.Module):
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())
    grads = [n for n, p in model.named_parameters() if p.grad is not None]
    flags = [(n, m.training) for n, m in model.named_modules()]
    req = [(n, p.requires_grad) for n, p in model.named_parameters()]
    return hooks, grads, flags, req


@pytest.mark.parametrize("layer", ["features.8", "features.7.0.block.2"])
def test_no_side_effects_on_success_or_error(images, layer):
    model = seeded_model(2)
    for p in model.features[0].parameters():
        p.requires_grad_(False)  # a partly frozen model must stay as it was
    clf = Classifier(model=model, class_names=("Cataract", "Normal"))
    before = _state(model)
    assert before[0] == 0
    assert before[1] == []
    explain(clf, images[:2], layer=layer, method="layercam")
    assert _state(model) == before
    # An error in the middle of the forward pass leaves nothing behind either.
    with pytest.raises(ExplainError, match="does not give a \\(N, C, H, W\\) feature map"):
        explain(clf, images[:2], layer="classifier.1")
    assert _state(model) == before


def test_model_in_training_mode_is_left_so_and_explained_as_in_eval(images):
    model = seeded_model(4)
    clf = Classifier(model=model, class_names=("Cataract", "Normal"))
    expected = explain(clf, images[:2])
    model.train()
    before = _state(model)
    got = explain(clf, images[:2])
    assert _state(model) == before
    assert model.training
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_allclose(a.cam, b.cam, atol=1e-5)


@pytest.mark.parametrize("layer", ["features.8", "features.6.2.block.3"])
def test_threads_get_their_own_maps(classifier, images, layer):
    serial = [explain(classifier, [img], layer=layer)[0] for img in images]
    results: dict[int, object] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(images))

    def work(i: int) -> None:
        try:
            barrier.wait()
            results[i] = explain(classifier, [images[i]], layer=layer)[0]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, ref in enumerate(serial):
        np.testing.assert_allclose(results[i].cam, ref.cam, atol=1e-5)
        assert results[i].prediction == ref.prediction
    # The images differ, so the maps do: a mix-up between threads would show.
    assert np.abs(serial[0].cam - serial[1].cam).max() > 0.1
    assert _state(classifier.model)[0] == 0


def test_every_method_is_registered():
    assert set(METHODS) == {"gradcam", "gradcam++", "hirescam", "layercam"}


POOLED = ("features.1", "features.2", "features.3")


def _pooled_by_hand(clf: Classifier, images) -> dict[str, np.ndarray]:
    """features.1-3 averaged over space, by running the chain by hand."""
    x = clf.preprocess(images)
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for index, block in enumerate(clf.model.features[:4]):
            x = block(x)
            if index >= 1:
                out[f"features.{index}"] = x.mean((2, 3)).double().numpy()
    return out


def _channel_means(x: torch.Tensor) -> np.ndarray:
    return x.mean((1, 2)).double().numpy()


# features.8: the chain split runs the layers; features.6.2.block.3 and training mode: the hooked copy.
@pytest.mark.parametrize(("layer", "training"), [("features.8", False), ("features.2", False),
                                                  ("features.6.2.block.3", False), ("features.8", True)])
def test_pooled_layers_and_input_summary_come_from_the_same_forward_pass(images, layer, training):
    model = seeded_model(5)
    clf = Classifier(model=model, class_names=("Cataract", "Normal"))
    expected = _pooled_by_hand(clf, images[:3])
    plain = explain(clf, images[:3], layer=layer, target=0)
    model.train(training)
    before = _state(model)
    try:
        got = explain(clf, images[:3], layer=layer, target=0, pooled=POOLED, input_summary=_channel_means)
    finally:
        model.eval()
    assert _state(model)[0] == before[0] == 0  # no hook left on the shared model
    inputs = clf.preprocess(images[:3])
    for i, (p, g) in enumerate(zip(plain, got, strict=True)):
        assert p.pooled is None
        assert p.input_summary is None
        # What is kept changes nothing of the map or the prediction.
        if not training:
            assert np.array_equal(p.cam, g.cam)
            assert p.logits == g.logits
        assert g.pooled is not None
        assert set(g.pooled) == set(POOLED)
        for name in POOLED:
            assert g.pooled[name].dtype == np.float64
            np.testing.assert_allclose(g.pooled[name], expected[name][i], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(g.input_summary, _channel_means(inputs[i]))


@pytest.mark.parametrize("layer", ["features.8", "features.6.2.block.3"])
def test_pooled_for_a_batch_equals_pooled_one_at_a_time(classifier, images, layer):
    batch = explain(classifier, images[:4], layer=layer, pooled=POOLED, input_summary=_channel_means)
    for img, got in zip(images[:4], batch, strict=True):
        single = explain(classifier, [img], layer=layer, pooled=POOLED, input_summary=_channel_means)[0]
        assert got.pooled is not None
        assert single.pooled is not None
        for name in POOLED:
            np.testing.assert_allclose(got.pooled[name], single.pooled[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got.input_summary, single.input_summary)
    assert not np.allclose(batch[0].pooled["features.3"], batch[1].pooled["features.3"])


def test_pooled_layers_are_checked(classifier, images):
    with pytest.raises(ExplainError, match=r"no layer named 'features\.42'"):
        explain(classifier, images[:1], pooled=["features.42"])
    assert _state(classifier.model)[0] == 0


@pytest.mark.parametrize("method", sorted(METHODS))
def test_linear_head_needs_no_backward_pass_and_gives_the_same_maps(classifier, images, method):
    """Pooling then one Linear after features.8: the gradient is read from the Linear's weights.

    The same model with a do-nothing hook on its head takes the autograd path; the two agree.
    """
    from components.explanation.cam import _linear_head

    model = classifier.model
    assert _linear_head(model, "features.8") is model.classifier[1]
    assert _linear_head(model, "features.6") is None  # blocks between the layer and the head
    targets = [0, 1, None, "Normal"]
    quick = explain(classifier, images[:4], method=method, target=targets)
    handle = model.classifier.register_forward_hook(lambda _m, _i, out: out)
    try:
        assert _linear_head(model, "features.8") is None
        full = explain(classifier, images[:4], method=method, target=targets)
    finally:
        handle.remove()
    for a, b in zip(quick, full, strict=True):
        # Grad-CAM reads the logits off its class maps in float64; the head runs in float32 (7 digits).
        assert a.logits == pytest.approx(b.logits, rel=1e-6, abs=1e-6)
        assert (a.prediction, a.target) == (b.prediction, b.target)
        np.testing.assert_allclose(a.cam_lowres, b.cam_lowres, atol=1e-5)
        np.testing.assert_allclose(a.cam, b.cam, atol=1e-5)
        assert a.is_zero == b.is_zero
        assert a.raw_max == pytest.approx(b.raw_max, rel=1e-5, abs=1e-12)  # the scale of the gradient too
