"""The bridge between grader and kernel, without a kernel: what crosses it, and what it refuses."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from autograder import bridge


def pair(namespace: dict):
    """A grader peer and a kernel peer wired back to back (the kernel side serves `namespace`)."""
    kernel = bridge.Peer(None, serves=bridge.KERNEL_SERVES, namespace=namespace)
    grader = bridge.Peer(kernel.handle)
    kernel.send = grader.handle
    return grader, kernel


@pytest.mark.parametrize("value", [
    None, True, 3, -2**70, 2.5, float("nan"), float("inf"), "text", 1 + 2j, (1, [2, {"a": 3}]),
    torch.float32, torch.device("cpu"), np.float32(1.5), np.arange(6).reshape(2, 3),
])
def test_plain_values_cross_unchanged(value):
    """Does every kind of plain value come back equal, with its type?"""
    grader, _ = pair({"echo": lambda x: x})
    back = grader.request({"op": "lookup", "name": "echo"})(value)
    assert type(back) is type(value)
    if isinstance(value, float) and value != value:
        assert back != back
    elif isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and np.array_equal(back, value)
    else:
        assert back == value


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.int64, torch.bool,
                                   torch.complex64])
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3, 4)])
def test_tensors_cross_bit_for_bit(dtype, shape):
    """Do tensors of every dtype and shape (scalars and empty ones too) come back bit for bit?"""
    grader, _ = pair({"echo": lambda x: x})
    t = (torch.randn(shape, dtype=torch.float64) * 3).to(dtype)
    back = grader.request({"op": "lookup", "name": "echo"})(t)
    assert type(back) is torch.Tensor and back.dtype == dtype and back.shape == t.shape and torch.equal(back, t)


def test_a_lying_tensor_subclass_arrives_as_a_plain_tensor():
    """Does a tensor subclass whose comparisons always agree arrive as a plain torch.Tensor with its true values?"""

    class Agreeable(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if func in (torch.allclose, torch.equal):
                return True
            return super().__torch_function__(func, types, args, kwargs or {})

    grader, _ = pair({"liar": lambda: torch.zeros(3).as_subclass(Agreeable)})
    got = grader.request({"op": "lookup", "name": "liar"})()
    assert type(got) is torch.Tensor
    assert not torch.allclose(got, torch.ones(3))


def test_gradients_cross_both_ways():
    """Do gradients flow through a student function that calls back a grader function (as a composite calls
    a score function), and match the ones computed locally?"""
    W = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    score = lambda h: torch.tanh(h @ W)
    grader, _ = pair({"f": lambda h, fn: (fn(h) * h).sum(-1)})
    f = grader.request({"op": "lookup", "name": "f"})
    h = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    f(h, score).sum().backward()
    remote = h.grad.clone(), W.grad.clone()
    h.grad = W.grad = None
    (score(h) * h).sum(-1).sum().backward()
    assert torch.allclose(remote[0], h.grad) and torch.allclose(remote[1], W.grad)


def test_in_place_edits_of_the_inputs_are_reported():
    """Is a function that edits its argument in place reported, although the grader's tensor is untouched?"""
    grader, _ = pair({"f": lambda x: x.mul_(2)})
    x = torch.ones(3)
    with pytest.raises(bridge.InputModified) as e:
        grader.request({"op": "lookup", "name": "f"})(x)
    assert e.value.index == 0 and torch.equal(x, torch.ones(3))


def test_the_students_errors_come_back_as_errors_with_their_names():
    """Does a NotImplementedError stay one (with the function that raised it), and any other error keep its name?"""
    def stub(x):
        raise NotImplementedError()

    class Oops(Exception):
        pass

    def oops(x):
        raise Oops("no")

    grader, _ = pair({"stub": stub, "oops": oops})
    with pytest.raises(NotImplementedError) as e:
        grader.request({"op": "lookup", "name": "stub"})(1)
    assert bridge.raiser_name(e.value) == "stub"
    with pytest.raises(bridge.RemoteError) as e:
        grader.request({"op": "lookup", "name": "oops"})(1)
    assert e.value.type_name == "Oops" and str(e.value) == "no"
    with pytest.raises(NameError):
        grader.request({"op": "lookup", "name": "missing"})


@pytest.mark.parametrize("reply", [
    '{"value": {"pickle": "gASVAAAAAAAAAAA="}}',                                    # an unknown tag
    '{"value": {"tensor": {"dtype": "float64", "shape": [3], "data": "AAAA"}}}',   # bytes short of the shape
    '{"value": {"tensor": {"dtype": "object", "shape": [1], "data": ""}}}',        # not a tensor dtype
    '{"value": {"tensor": {"dtype": "float32", "shape": [1], "data": "AAAAAA==", "device": "meta"}}}',
    '{"value": {"yours": 12345}}',                                                  # an object never handed over
    '{"value": [1, 2]}',                                                            # an untagged list
    '{"value": ' + '{"list": [' * 40 + ']}' * 40 + '}',                             # nested too deep
])
def test_garbage_from_the_kernel_is_refused(reply):
    """Is a malformed or hostile reply refused (never unpickled, never turned into an object)?"""
    grader = bridge.Peer(lambda text: reply)
    with pytest.raises((bridge.BadMessage, bridge.PeerGone)):
        grader.request({"op": "lookup", "name": "x"})


def test_not_json_is_the_kernel_gone():
    grader = bridge.Peer(lambda text: "<html>")
    with pytest.raises(bridge.PeerGone):
        grader.request({"op": "lookup", "name": "x"})


def test_the_grader_serves_only_calls_to_what_it_handed_over():
    """Can the kernel neither look up the grader's names, nor read attributes, nor call an object after the
    check that handed it over has ended?"""
    grader, kernel = pair({"keep": lambda fn: fn})
    secret = lambda: "reference answer"
    handed = grader.request({"op": "lookup", "name": "keep"})(secret)
    assert handed is secret                                        # it came back as the grader's own object
    ref = next(iter(grader.exported))
    for op in ({"op": "lookup", "name": "reference"}, {"op": "getattr", "id": ref, "name": "__code__"}):
        assert "error" in json.loads(grader.handle(json.dumps(op)))
    call = {"op": "call", "id": ref, "args": {"list": []}, "kwargs": {"dict": []}}
    assert json.loads(grader.handle(json.dumps(call)))["value"] == "reference answer"
    grader.release()
    assert "error" in json.loads(grader.handle(json.dumps(call)))
