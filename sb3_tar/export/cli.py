"""``sb3-tar export MODEL.zip OUT``: write a saved model's deterministic actor for deployment."""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path
from typing import Any

from sb3_tar.engine.errors import UserError

ALGORITHMS = ("sac", "td3", "ddpg", "tqc", "crossq", "ppo", "a2c", "trpo", "dqn", "qrdqn")


def algorithm_class(name: str) -> type:
    """The SB3 / sb3-contrib class of an algorithm name, from rl-zoo3's table as everywhere in sb3-tar."""
    from rl_zoo3.utils import ALGOS

    return ALGOS[name]


def _saved_keys(path: Path) -> set[str]:
    """The attribute names a saved model's ``data`` holds, read as JSON: nothing is unpickled, so none is lost."""
    with zipfile.ZipFile(path) as archive:
        return set(json.loads(archive.read("data")))


def saved_algorithm(path: Path) -> str:
    """The algorithm a saved model's policy belongs to (TD3 for TD3 and DDPG models: they share it). PPO,
    A2C and TRPO share theirs too: PPO saves a ``clip_range``, TRPO a ``cg_max_steps``, A2C neither (TRPO's
    actor exports as theirs, dense: sb3-tar does not train TRPO sparse)."""
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
    from sb3_contrib.crossq.policies import CrossQPolicy
    from sb3_contrib.qrdqn.policies import QRDQNPolicy
    from sb3_contrib.tqc.policies import TQCPolicy
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.save_util import load_from_zip_file
    from stable_baselines3.dqn.policies import DQNPolicy
    from stable_baselines3.sac.policies import SACPolicy
    from stable_baselines3.td3.policies import TD3Policy

    data, _, _ = load_from_zip_file(path, device="cpu", load_data=True)
    data = data or {}
    policy_class = data.get("policy_class")
    if isinstance(policy_class, type) and issubclass(policy_class, RecurrentActorCriticPolicy):
        raise UserError(f"{path}: a RecurrentPPO model acts through an LSTM whose state carries over from step to "
                        "step; sb3-tar exports feed-forward actors only")
    if isinstance(policy_class, type) and issubclass(policy_class, ActorCriticPolicy):
        keys = _saved_keys(path)
        return "ppo" if "clip_range" in keys else "trpo" if "cg_max_steps" in keys else "a2c"
    for base, name in ((SACPolicy, "sac"), (TD3Policy, "td3"), (TQCPolicy, "tqc"), (CrossQPolicy, "crossq"),
                       (DQNPolicy, "dqn"), (QRDQNPolicy, "qrdqn")):
        if isinstance(policy_class, type) and issubclass(policy_class, base):
            return name
    from sb3_tar.export.extract import EXPORTED

    raise UserError(f"{path}: its policy ({getattr(policy_class, '__name__', policy_class)}) is of none of the "
                    f"algorithms sb3-tar exports the actors of ({EXPORTED}; or pass --algo)")


def load_model(path: str | Path, algo: str | None = None) -> Any:
    """A saved SB3 model, on the CPU, of ``algo`` or of the algorithm its policy belongs to."""
    import sb3_tar  # noqa: F401  (registers "TarMlpPolicy" when SB3 loads)

    path = Path(path)
    if not path.is_file():
        raise UserError(f"model {str(path)!r}: no such file")
    return algorithm_class(algo or saved_algorithm(path)).load(path, device="cpu")


def _normalization_file(model: Path, given: str | None) -> Path | None:
    """The ``vecnormalize.pkl`` whose statistics the actor applies: ``given``, else the one beside the model."""
    if given == "none":
        return None
    path = Path(given) if given else model.parent / "vecnormalize.pkl"
    if given and not path.is_file():
        raise UserError(f"--normalization {given!r}: no such file (a VecNormalize.save file, or 'none')")
    return path if path.is_file() else None


def export_command(args: argparse.Namespace) -> None:
    from sb3_tar.experiments.output_paths import check_output_file, describe_os_error
    from sb3_tar.export.extract import export_actor
    from sb3_tar.runtime.actor import load_actor
    from sb3_tar.runtime.encoding import encoded_sizes
    from sb3_tar.runtime.spec import DISCRETE_BOUNDS

    check_output_file(Path(args.output))
    if args.onnx:
        check_output_file(Path(args.onnx), "--onnx")
    model = load_model(args.model, args.algo)
    statistics = _normalization_file(Path(args.model), args.normalization)
    normalizer = None
    if statistics is not None:
        import pickle

        with statistics.open("rb") as file:
            normalizer = pickle.load(file)  # SB3's own VecNormalize.save file, read as VecNormalize.load reads it
    try:
        path = export_actor(model, args.output, normalizer)
    except OSError as error:
        raise UserError(f"{describe_os_error(error)}; nothing was exported") from None
    actor = load_actor(path)
    dense_bytes = sum(encoded_sizes(layer.out_features, layer.in_features, layer.kept)["dense"]
                      + 4 * layer.out_features * layer.has_bias for layer in actor.linear_layers())
    size = path.stat().st_size
    if actor.action_bounds in DISCRETE_BOUNDS:
        bounds = f": one of {int(actor.action_high) + 1} discrete actions"
    else:
        bounds = {"rescale": ", rescaled to the action bounds", "clip": ", clipped to the action bounds"}[
            actor.action_bounds]
    print(f"exported the deterministic actor of {args.model} ({type(model).__name__}, {type(model.policy).__name__}: "
          f"{actor.metadata['deterministic_action']}{bounds}) to {path}")
    if statistics is not None:
        print(f"the actor normalizes raw observations itself, with {statistics} (the run's VecNormalize statistics)")
    print(f"{actor.kept:,} of {actor.total:,} weights kept; {size:,} bytes "
          f"({size / dense_bytes:.3f}x its layers' dense float32 weights and biases, {dense_bytes:,} bytes)")
    print(actor.describe())
    if args.onnx:
        from sb3_tar.export.onnx_export import export_onnx

        onnx_path = export_onnx(actor, args.onnx)
        print(f"ONNX: {onnx_path} ({onnx_path.stat().st_size:,} bytes)")
    print(f"run it with torch alone: from sb3_tar.runtime import load_actor; actor = load_actor({str(path)!r})")


def add_export_command(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="write a saved model's deterministic actor for deployment (kept weights only; runs without SB3)",
        description="Write the deterministic actor of a saved SAC, TD3, DDPG, TQC, CrossQ, PPO, A2C, TRPO, DQN or "
                    "QR-DQN model (sparse or dense): "
                    "kept weights only, in a compact encoding, with its activation, squash and action bounds. "
                    "Load it with sb3_tar.runtime.load_actor (torch only).")
    export.add_argument("model", help="a model saved by SB3 (model.save): MODEL.zip")
    export.add_argument("output", help="the actor file to write")
    export.add_argument("--algo", choices=ALGORITHMS,
                        help="the model's algorithm (default: from the saved model; DDPG models load as TD3: the "
                             "same actor)")
    export.add_argument("--onnx", help="also write the actor as ONNX to this file (needs the export extra)")
    export.add_argument("--normalization", metavar="PATH",
                        help="a VecNormalize.save file whose observation statistics the actor applies, so it acts on "
                             "raw observations (default: vecnormalize.pkl beside the model, as sb3-tar train writes "
                             "it; 'none': the actor takes normalized observations)")
    export.set_defaults(run=export_command)
