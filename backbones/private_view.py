"""Private views of a shared model: a structural copy that shares its parameters and buffers but nothing else.

Cached models are shared by every dashboard session and thread. Work that needs hooks, eval mode or
in-place flags off (explanations in :mod:`viz`, the effective receptive field in
:mod:`backbones.summary.erf`) runs on a view instead, so the shared model never sees any of it.
:func:`viz.layers.private_view` is this function.
"""

from __future__ import annotations

from torch import nn

# Hook and state dictionaries of nn.Module that must not be shared with a view.
_PRIVATE_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


def private_view(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """A structural copy of ``model`` that shares its parameters and buffers.

    Every module is copied shallowly (microseconds each, no tensor copied) with
    empty hook dictionaries, so hooks, ``train``/``eval`` and ``inplace`` flags
    set on the view never reach the shared model and another thread's forward
    pass on the shared model never runs a hook of ours. The view is in eval mode
    and, unless ``inplace`` is true, every ``inplace`` flag (ReLU, ReLU6, SiLU, ...)
    is off, as captum's backward hooks need. Parameters keep their
    ``requires_grad``; gradients are taken with ``torch.autograd.grad``, so no
    ``.grad`` is ever written.
    """
    memo: dict[int, nn.Module] = {}

    def copy_module(module: nn.Module) -> nn.Module:
        done = memo.get(id(module))
        if done is not None:  # a module used twice stays one module in the view
            return done
        clone = module.__class__.__new__(module.__class__)
        state = dict(module.__dict__)
        for key in _PRIVATE_DICTS:
            if key in state:
                state[key] = type(state[key])()
        state["_parameters"] = dict(module._parameters)
        state["_buffers"] = dict(module._buffers)
        state["training"] = False
        if not inplace and isinstance(state.get("inplace"), bool):
            state["inplace"] = False
        clone.__dict__ = state
        memo[id(module)] = clone
        state["_modules"] = {k: None if v is None else copy_module(v) for k, v in module._modules.items()}
        return clone

    return copy_module(model)
