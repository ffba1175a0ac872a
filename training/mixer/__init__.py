"""Data strategies behind one interface; importing this registers them all."""
from training.mixer import (  # noqa: F401 - imported so each strategy registers
    ado,
    aioli,
    doremi,
    grad_select,
    loss_reweight,
    loss_select,
    odm,
    static,
    uniform,
)
from training.mixer.base import (  # noqa: F401
    Batch,
    MixtureStrategy,
    Signals,
    Strategy,
    StrategyError,
    register_strategy,
    strategy_names,
)
from training.mixer.stack import MixerStack, build_mixer  # noqa: F401
