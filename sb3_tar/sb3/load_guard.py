"""Loading a state dict into one part of a sparse policy (``model.q_net``, ``model.actor``) checks the masks too.

``TarPolicy.load_state_dict`` checks weights and masks together before anything is copied. A load
that starts at a sub-module (``model.critic.load_state_dict(...)``) never calls it, so every
sub-module that holds a masked weight (or its copy in a target network) gets a load pre-hook: when
the load starts there (its prefix is empty), the incoming entries are named as the policy names
them and checked by the policy, with everything else the policy holds; after the load, the masks
are attached again. Loads that start at the policy itself are checked once, by the policy.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

CheckStateDict = Callable[[dict[str, Any]], None]


def _ancestors(names: Iterable[str]) -> set[str]:
    """Every module path above the named parameters, the root (``""``) excluded."""
    paths = set()
    for name in names:
        parts = name.split(".")[:-1]
        paths.update(".".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    return paths


def guard_sub_module_loads(policy: nn.Module, parameter_names: Iterable[str], check: CheckStateDict,
                           attach: Callable[[], None]) -> None:
    """Check every load into a sub-module of ``policy`` that holds one of ``parameter_names``.

    :param policy: the sparse policy.
    :param parameter_names: the masked weights and their target copies, as the policy names them.
    :param check: checks a state dict named as the policy's (what it lacks stays as it is); raises if refused.
    :param attach: attaches the masks again (zeroes masked weights and targets, re-hooks the optimizers).
    """
    owner = weakref.ref(policy)
    loading: dict[str, bool] = {}
    for path in sorted(_ancestors(parameter_names)):
        module = policy.get_submodule(path)

        def before(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any, path: str = path) -> None:
            if prefix or owner() is None:
                return  # part of a larger load: the module where it started checks it
            check({f"{path}.{key}": value for key, value in state_dict.items()})
            loading[path] = True

        def after(module: nn.Module, incompatible: Any, path: str = path) -> None:
            if loading.pop(path, False):
                attach()

        module.register_load_state_dict_pre_hook(before)
        module.register_load_state_dict_post_hook(after)
