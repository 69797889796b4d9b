"""The one entry point: `quantize(model, config)` dispatches on the config's type.

Handlers register themselves with `register_quantize_handler` next to their config
(the design of torchao's ``quantize_``): automatic preparation, the eager-compatible
preparation behind `prepare` / `prepare_qat`, and `convert` all come through here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from torchquant.errors import ConfigError

__all__ = ["quantize", "register_quantize_handler"]

_Handler = Callable[..., nn.Module]
_HANDLERS: dict[type, _Handler] = {}
_H = TypeVar("_H", bound=_Handler)


def register_quantize_handler(config_type: type) -> Callable[[_H], _H]:
    """Decorator: ``handler(model, config, example_inputs) -> model`` for ``config_type``."""

    def decorate(handler: _H) -> _H:
        if config_type in _HANDLERS:
            raise ConfigError(
                f"a quantize handler for {config_type.__name__} is already registered"
            )
        _HANDLERS[config_type] = handler
        return handler

    return decorate


def quantize(
    model: nn.Module, config: Any, example_inputs: Any = None, *, inplace: bool = False
) -> nn.Module:
    """Apply ``config`` to ``model`` and return the result.

    Args:
        model: the float (or prepared) model.
        config: a registered config (e.g. `PrepareConfig`, `EagerPrepareConfig`,
            `ConvertConfig`); its type selects the handler.
        example_inputs: a tuple of example positional inputs, for paths that run the model.
        inplace: modify ``model`` itself instead of a deep copy.
    """
    handler = _HANDLERS.get(type(config))
    if handler is None:
        known = sorted(t.__name__ for t in _HANDLERS)
        raise ConfigError(
            f"no quantize handler for config type {type(config).__name__}; known: {known}"
        )
    target = model if inplace else copy.deepcopy(model)
    return handler(target, config, example_inputs)
