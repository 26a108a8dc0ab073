"""The deployable actor: ``export_actor`` writes it small, ``load_actor`` runs it with torch alone, and
its actions are ``model.predict(obs, deterministic=True)``'s, for every algorithm and every way a
model becomes sparse."""

from __future__ import annotations

import base64
import io
import json
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from import_blocking import BLOCK_SB3
from sb3_contrib import QRDQN, TQC, TRPO, CrossQ, RecurrentPPO
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3

import sb3_tar
from sb3_tar.cli import main
from sb3_tar.export import actor_spec, export_actor
from sb3_tar.runtime import MEASURED_RULE, DeployedActor, KernelRule, Linear, load_actor, read_actor
from sb3_tar.runtime.spec import ActorSpec
from sb3_tar.runtime.actor import LinearLayer
from sb3_tar.runtime.encoding import decode, encode, encoded_sizes, pack_bits, unpack_bits
from sb3_tar.runtime.fileformat import read_header

ALL_ALGOS = [SAC, TD3, DDPG, TQC, CrossQ]
LEARN_STEPS = 150
OBSERVATIONS = 1000
TOLERANCE = 1e-5
REPOSITORY = Path(__file__).resolve().parents[1]


class AsymmetricBoxes(gym.Env):
    """Float64 observations and a 3-d action space with bounds nowhere symmetric: catches rescaling bugs."""

    observation_space = gym.spaces.Box(-3.0, 3.0, (5,), np.float64)
    action_space = gym.spaces.Box(np.array([-1.0, 0.0, -5.0], np.float32), np.array([2.0, 10.0, -1.0], np.float32))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), -float(np.square(action).sum()), False, False, {}


def rescaled_pendulum() -> gym.Env:
    """Pendulum-v1 whose actions live in [-0.5, 3.0] instead of [-2, 2]."""
    return gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), min_action=np.float32(-0.5), max_action=np.float32(3.0))


def train(algo, policy: str = "TarMlpPolicy", env=None, steps: int = LEARN_STEPS, callback=None,
          algo_kwargs: dict | None = None, **policy_kwargs):
    """A small model ([32, 32], sparsity 0.9) after ``steps`` environment steps (learning from step 50)."""
    policy_kwargs.setdefault("net_arch", [32, 32])
    if policy == "TarMlpPolicy":  # TAR's revival keeps the 32-wide critics' output layers connected
        policy_kwargs.setdefault("sparsity", 0.9)
        policy_kwargs.setdefault("recovery_ratio", 0.02)
    model = algo(policy, env if env is not None else "Pendulum-v1", seed=0, learning_starts=50, batch_size=32,
                 buffer_size=1000, policy_kwargs=policy_kwargs, device="cpu", **(algo_kwargs or {}))
    if steps:
        model.learn(steps, callback=callback)
    return model


def train_on_policy(algo, env=None, **kwargs):
    """A small PPO/A2C model ([32, 32], sparsity 0.9) after two rollouts of 64 steps."""
    policy_kwargs = {"net_arch": [32, 32], "sparsity": 0.9, "recovery_ratio": 0.02, **kwargs.pop("policy_kwargs", {})}
    model = algo("TarMlpPolicy", env if env is not None else rescaled_pendulum(), n_steps=64, seed=0,
                 policy_kwargs=policy_kwargs, device="cpu", **kwargs)
    return model.learn(128)


def observations(model, count: int = OBSERVATIONS) -> np.ndarray:
    space = model.observation_space
    space.seed(1)
    return np.stack([space.sample() for _ in range(count)])


def assert_actions_equal_predict(model, path: Path, kernels: tuple[str, ...] = ("auto", "dense", "csr")) -> None:
    obs = observations(model)
    expected, _ = model.predict(obs, deterministic=True)
    for kernel in kernels:
        actor = load_actor(path, kernels=kernel)
        with torch.no_grad():
            actions = actor(torch.as_tensor(obs)).numpy()
            one_by_one = np.stack([actor(torch.as_tensor(o))[0].numpy() for o in obs[:25]])
        assert actions.shape == expected.shape
        np.testing.assert_allclose(actions, expected, rtol=0, atol=TOLERANCE, err_msg=f"kernels={kernel}")
        np.testing.assert_allclose(one_by_one, expected[:25], rtol=0, atol=TOLERANCE,
                                   err_msg=f"kernels={kernel}, batch 1")


@pytest.mark.parametrize("model_class", ALL_ALGOS)
def test_the_exported_actor_acts_as_predict_deterministic_with_rescaled_bounds(model_class, tmp_path):
    model = train(model_class, env=rescaled_pendulum())
    path = export_actor(model, tmp_path / "actor.sb3tar")
    assert_actions_equal_predict(model, path)
    spec = read_actor(path)
    assert spec.action_bounds == "rescale"
    np.testing.assert_array_equal(spec.action_low.numpy(), [-0.5])
    np.testing.assert_array_equal(spec.action_high.numpy(), [3.0])
    squash = "tanh(mu)" if model_class in (SAC, TQC, CrossQ) else "mu"
    assert spec.metadata["deterministic_action"] == squash
    assert spec.layers[-1].name == "tanh"


@pytest.mark.parametrize("model_class", [SAC, TD3])
def test_multi_dimensional_asymmetric_bounds_and_float64_observations(model_class, tmp_path):
    model = train(model_class, env=AsymmetricBoxes(), steps=200)
    assert_actions_equal_predict(model, export_actor(model, tmp_path / "actor.sb3tar"))


@pytest.mark.parametrize("model_class", ALL_ALGOS)
def test_a_dense_mlp_policy_exports_dense(model_class, tmp_path):
    model = train(model_class, "MlpPolicy")
    path = export_actor(model, tmp_path / "actor.sb3tar")
    spec = read_actor(path)
    assert spec.kept == spec.total
    assert all(layer["encoding"] == "dense" for layer in json_layers(path) if layer["type"] == "linear")
    assert_actions_equal_predict(model, path, kernels=("auto",))


@pytest.mark.parametrize("model_class", [SAC, TD3])
def test_a_tanh_activation_is_recorded_and_reproduced(model_class, tmp_path):
    model = train(model_class, "TarMlpPolicy", activation_fn=torch.nn.Tanh)
    path = export_actor(model, tmp_path / "actor.sb3tar")
    hidden = [layer["name"] for layer in json_layers(path) if layer["type"] == "activation"][:-1]
    assert hidden == ["tanh", "tanh"]
    assert_actions_equal_predict(model, path)


def test_gsde_actor_exports_with_its_mean_clip(tmp_path):
    model = train(SAC, "TarMlpPolicy", algo_kwargs={"use_sde": True})
    spec = actor_spec(model)
    assert [layer.name for layer in spec.layers[-2:]] == ["hardtanh", "tanh"]
    assert_actions_equal_predict(model, export_actor(model, tmp_path / "actor.sb3tar"))


def test_tar_callback_masks_are_the_exported_ones(tmp_path):
    model = train(SAC, "MlpPolicy", callback=sb3_tar.TARCallback(sparsity=0.9, recovery_ratio=0.01))
    assert_exports_its_masks(model, tmp_path)


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_dst_callback_masks_are_the_exported_ones(method, tmp_path):
    model = train(TD3, "MlpPolicy", callback=sb3_tar.DSTCallback(method, sparsity=0.9, update_interval=50))
    assert_exports_its_masks(model, tmp_path)


def assert_exports_its_masks(model, tmp_path: Path) -> None:
    path = export_actor(model, tmp_path / "actor.sb3tar")
    masks = sb3_tar.sparse_agent(model).masks
    for layer in read_actor(path).linear_layers():
        name = f"{layer.name}.weight"
        if name in masks:
            assert torch.equal(layer.mask, masks[name].cpu()), name
    assert_actions_equal_predict(model, path, kernels=("auto", "csr"))


def test_a_loaded_model_exports_the_same_actor(tmp_path):
    model = train(CrossQ)
    model.save(tmp_path / "model.zip")
    loaded = CrossQ.load(tmp_path / "model.zip", device="cpu")
    first = export_actor(model, tmp_path / "a.sb3tar").read_bytes()
    second = export_actor(loaded, tmp_path / "b.sb3tar").read_bytes()
    assert first == second


def test_a_masked_weight_that_is_not_zero_is_refused(tmp_path):
    model = train(SAC, steps=0)
    weight = model.policy.actor.latent_pi[2].weight
    mask = sb3_tar.sparse_agent(model).masks["actor.latent_pi.2.weight"]
    with torch.no_grad():
        weight[~mask.to(weight.device)] = 0.5
    with pytest.raises(ValueError, match=r"actor\.latent_pi\.2\.weight are non-zero where its mask prunes them"):
        export_actor(model, tmp_path / "actor.sb3tar")


def test_unsupported_spaces_are_refused_by_name(tmp_path):
    model = DDPG("MultiInputPolicy", gym.wrappers.TransformObservation(
        gym.make("Pendulum-v1"), lambda obs: {"state": obs},
        gym.spaces.Dict({"state": gym.make("Pendulum-v1").observation_space})), buffer_size=10, device="cpu")
    with pytest.raises(ValueError, match="observation space Dict"):
        export_actor(model, tmp_path / "actor.sb3tar")


class MultiDiscreteActions(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.MultiDiscrete([3, 2])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


class TinyImages(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (3, 6, 6), np.uint8)
    action_space = gym.spaces.Box(-2.0, 1.0, (2,), np.float32)


def test_image_observations_are_divided_by_255_as_sb3_does(tmp_path):
    model = SAC("MlpPolicy", TinyImages(), buffer_size=10, policy_kwargs={"net_arch": [16]}, device="cpu", seed=0)
    path = export_actor(model, tmp_path / "actor.sb3tar")
    assert read_actor(path).observation_divisor == 255.0
    assert_actions_equal_predict(model, path, kernels=("auto",))


# ---------------------------------------------------------------- without SB3

RUN_WITHOUT_SB3 = BLOCK_SB3 + """
import torch
from sb3_tar.runtime import load_actor
data = torch.load(sys.argv[2])
actor = load_actor(sys.argv[1])
with torch.no_grad():
    error = (actor(data['observations']) - data['actions']).abs().max().item()
loaded = [name for name in ('stable_baselines3', 'sb3_contrib', 'gymnasium') if name in sys.modules]
print(error, loaded, type(actor).__mro__[-2].__name__)
"""


def test_loading_and_running_an_actor_imports_neither_sb3_nor_gymnasium(tmp_path):
    model = train(SAC)
    path = export_actor(model, tmp_path / "actor.sb3tar")
    obs = observations(model)
    actions, _ = model.predict(obs, deterministic=True)
    torch.save({"observations": torch.as_tensor(obs), "actions": torch.as_tensor(actions)}, tmp_path / "data.pt")
    result = subprocess.run([sys.executable, "-c", RUN_WITHOUT_SB3, str(path), str(tmp_path / "data.pt")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    error, loaded, base = result.stdout.split(maxsplit=2)
    assert float(error) <= TOLERANCE
    assert loaded == "[]"
    assert base.strip() == "Module"  # an nn.Module


# ---------------------------------------------------------------- size and encodings


def json_layers(path: Path) -> list[dict]:
    from sb3_tar.runtime.fileformat import read_header

    return read_header(path)[0]["layers"]


def state_dict_bytes(module: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def test_at_sparsity_0_9_the_file_is_at_most_a_fifth_of_the_dense_actor(tmp_path):
    sparse = train(SAC, net_arch=[256, 256], steps=0)
    dense = train(SAC, "MlpPolicy", net_arch=[256, 256], steps=0)
    size = export_actor(sparse, tmp_path / "actor.sb3tar").stat().st_size
    assert size <= 0.2 * state_dict_bytes(dense.actor)


@pytest.mark.parametrize("shape", [(7, 5), (64, 300), (40, 70_000)])  # uint8, uint16 and int32 indices
@pytest.mark.parametrize("density", [1.0, 0.99, 0.5, 0.1, 0.01, 0.0])  # 0.99: was stored dense, losing its mask
def test_every_encoding_round_trips_weights_and_masks(shape, density):
    generator = torch.Generator().manual_seed(0)
    mask = torch.rand(shape, generator=generator) < density
    weight = torch.randn(shape, generator=generator) * mask
    chosen, arrays = encode(weight, mask)
    sizes = encoded_sizes(*shape, int(mask.sum()), int(mask.sum(dim=1).max()))
    if not mask.all():  # dense only for a layer that keeps every weight: the mask must travel
        del sizes["dense"]
    assert sizes[chosen] == min(sizes.values())
    assert sum(tensor.numel() * tensor.element_size() for _, tensor in arrays.values()) == sizes[chosen]
    decoded_weight, decoded_mask = decode(chosen, arrays, *shape)
    assert torch.equal(decoded_weight, weight)
    assert torch.equal(decoded_mask, mask)


def test_bits_pack_as_numpy_packbits_little_endian():
    bits = torch.rand(1001, generator=torch.Generator().manual_seed(0)) < 0.3
    packed = pack_bits(bits)
    assert packed.numpy().tobytes() == np.packbits(bits.numpy(), bitorder="little").tobytes()
    assert torch.equal(unpack_bits(packed, bits.numel()), bits)


def test_a_kept_weight_equal_to_zero_stays_kept(tmp_path):
    mask = torch.tensor([[True, False], [True, True]])
    weight = torch.tensor([[0.0, 0.0], [1.5, -2.0]])  # a kept weight may be 0.0 (DST regrows at 0.0)
    chosen, arrays = encode(weight, mask)
    assert chosen == "dense" or torch.equal(decode(chosen, arrays, 2, 2)[1], mask)


def test_a_truncated_or_foreign_file_is_refused(tmp_path):
    path = export_actor(train(TD3, steps=0), tmp_path / "actor.sb3tar")
    data = path.read_bytes()
    (tmp_path / "cut.sb3tar").write_bytes(data[:-3])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_actor(tmp_path / "cut.sb3tar")
    (tmp_path / "model.zip").write_bytes(b"PK\x03\x04" + data)
    with pytest.raises(ValueError, match="not an sb3-tar actor file"):
        load_actor(tmp_path / "model.zip")


def test_a_file_records_the_oldest_version_that_reads_it_and_a_newer_one_is_refused(tmp_path):
    continuous = export_actor(train(TD3, steps=0), tmp_path / "td3.sb3tar")
    discrete = export_actor(DQN("MlpPolicy", "CartPole-v1", seed=0), tmp_path / "dqn.sb3tar")
    assert read_header(continuous)[0]["version"] == 1 and read_header(discrete)[0]["version"] == 2
    data = continuous.read_bytes()
    (length,) = struct.unpack_from("<I", data, 8)
    header = json.loads(data[12: 12 + length])
    header["version"] = 3
    encoded = json.dumps(header).encode()
    payload = data[12 + length:-4]

    def with_checksum(content: bytes) -> bytes:
        return content + struct.pack("<I", zlib.crc32(content))

    (tmp_path / "newer.sb3tar").write_bytes(with_checksum(data[:8] + struct.pack("<I", len(encoded)) + encoded + payload))
    with pytest.raises(ValueError, match=r"version 3; this sb3-tar reads 'sb3-tar-actor' versions 1 to 2"):
        load_actor(tmp_path / "newer.sb3tar")
    for bad, message in ((True, "version True; this sb3-tar reads"), ([1], "the header is not a JSON object")):
        header = bad if isinstance(bad, list) else {**header, "version": bad}
        encoded = json.dumps(header).encode()
        (tmp_path / "bad.sb3tar").write_bytes(with_checksum(data[:8] + struct.pack("<I", len(encoded)) + encoded + payload))
        with pytest.raises(ValueError, match=message):
            load_actor(tmp_path / "bad.sb3tar")


# ---------------------------------------------------------------- kernels


def test_the_shipped_kernel_rule_is_the_one_measured_in_the_benchmark():
    measured = json.loads((REPOSITORY / "benchmarks/results/export.json").read_text())["result"]["kernel_rule"]
    table = {int(batch): {int(size): density for size, density in sizes.items()}
             for batch, sizes in measured["csr_max_density"].items()}
    assert table == {batch: dict(sizes) for batch, sizes in MEASURED_RULE.csr_max_density.items()}


def test_the_rule_runs_small_layers_dense_and_picks_csr_only_below_the_measured_density():
    rule = KernelRule({1: {256 * 256: 0.05}, 256: {256 * 256: 0.1, 1024 * 1024: 0.2}})
    assert rule.kernel(256, 17, 10, batch=256) == "dense"  # smaller than any measured layer
    assert rule.kernel(256, 256, int(0.1 * 256 * 256), batch=256) == "csr"
    assert rule.kernel(256, 256, int(0.15 * 256 * 256), batch=256) == "dense"
    assert rule.kernel(2048, 2048, int(0.15 * 2048 * 2048), batch=256) == "csr"  # the 1024x1024 entry applies
    assert rule.kernel(256, 256, int(0.1 * 256 * 256), batch=1) == "dense"
    assert rule.kernel(256, 256, int(0.1 * 256 * 256), batch=16) == "dense"  # between rows: both must agree
    assert rule.kernel(256, 256, int(0.03 * 256 * 256), batch=16) == "csr"
    assert rule.possible_kernels(256, 256, int(0.1 * 256 * 256)) == {"dense", "csr"}


def test_an_actor_loaded_for_one_batch_size_keeps_one_copy_of_each_layer(tmp_path):
    model = train(SAC, net_arch=[256, 256], steps=0, sparsity=0.98, recovery_ratio=0.01)
    path = export_actor(model, tmp_path / "actor.sb3tar")
    rule = KernelRule({1: {256 * 256: 0.0}, 256: {256 * 256: 0.5}})
    spec = read_actor(path)
    for batch, kept in ((1, "dense_weight"), (256, "csr_weight")):
        actor = DeployedActor(spec, batch_size=batch, rule=rule)
        hidden = [layer for layer in actor.layers if isinstance(layer, LinearLayer)
                  and layer.in_features == layer.out_features == 256]
        assert all(getattr(layer, kept) is not None for layer in hidden)
        assert all(getattr(layer, other) is None for layer in hidden
                   for other in {"dense_weight", "csr_weight"} - {kept})
        obs = torch.as_tensor(observations(model, 300))
        expected, _ = model.predict(obs.numpy(), deterministic=True)
        np.testing.assert_allclose(actor(obs).numpy(), expected, atol=TOLERANCE, rtol=0)  # other sizes still run


def test_bad_kernel_settings_are_refused_by_name(tmp_path):
    spec = read_actor(export_actor(train(TD3, steps=0), tmp_path / "actor.sb3tar"))
    with pytest.raises(ValueError, match=r"kernels='sparse' must be one of \['auto', 'dense', 'csr'\]"):
        DeployedActor(spec, kernels="sparse")
    with pytest.raises(ValueError, match="batch_size=0 must be a positive integer"):
        DeployedActor(spec, batch_size=0)


def test_a_linear_layer_with_weights_outside_its_mask_is_refused():
    with pytest.raises(ValueError, match="1 weights are non-zero where the mask prunes them"):
        Linear(torch.tensor([[1.0, 2.0]]), torch.tensor([[True, False]]), None, "l")


# ---------------------------------------------------------------- ONNX and the command line


@pytest.mark.parametrize("model_class", [SAC, PPO, DQN, QRDQN, A2C])
def test_onnx_export_runs_in_onnxruntime_and_acts_as_predict(model_class, tmp_path):  # discrete: int64 indices
    pytest.importorskip("onnx", reason="ONNX export needs the export extra: pip install 'sb3-tar[export]'")
    pytest.importorskip("onnxscript", reason="ONNX export needs the export extra: pip install 'sb3-tar[export]'")
    ort = pytest.importorskip("onnxruntime", reason="running the ONNX file needs onnxruntime (export extra)")
    from sb3_tar.export.onnx_export import export_onnx

    if model_class is SAC:
        model = train(SAC, env=rescaled_pendulum(), net_arch=[64, 64])
    elif model_class is PPO:
        model = train_on_policy(PPO, policy_kwargs={"net_arch": [64, 64]})
    else:  # a discrete action (A2C's categorical probabilities): the ONNX output is the int64 index
        model = train_discrete(model_class)
    path = export_onnx(export_actor(model, tmp_path / "actor.sb3tar"), tmp_path / "actor.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["actor.onnx", "actor.sb3tar"]  # no dense side file
    session = ort.InferenceSession(str(path))
    obs = observations(model)
    expected, _ = model.predict(obs, deterministic=True)
    actions = session.run(None, {"observation": obs.astype(np.float32)})[0]
    np.testing.assert_allclose(actions, expected, atol=TOLERANCE, rtol=0)
    assert actions.dtype == (np.int64 if model_class in (DQN, QRDQN, A2C) else np.float32)
    import onnx

    assert len(onnx.load(str(path)).graph.sparse_initializer) >= 1  # the sparse hidden layer is stored sparse


def test_sb3_tar_export_writes_the_actor_of_a_saved_model(tmp_path, capsys):
    model = train(DDPG, env=rescaled_pendulum())
    model.save(tmp_path / "model.zip")
    main(["export", str(tmp_path / "model.zip"), str(tmp_path / "out" / "actor.sb3tar")])
    printed = capsys.readouterr().out
    assert "weights kept" in printed and "actor.mu.2" in printed
    assert_actions_equal_predict(model, tmp_path / "out" / "actor.sb3tar", kernels=("auto",))


@pytest.mark.parametrize("model_class", [PPO, A2C])
def test_an_on_policy_actor_exports_its_gaussian_mean_clipped_to_the_bounds(model_class, tmp_path):
    model = train_on_policy(model_class)
    path = export_actor(model, tmp_path / "actor.sb3tar")
    assert_actions_equal_predict(model, path)
    spec = read_actor(path)
    assert spec.metadata["deterministic_action"] == "mean" and spec.action_bounds == "clip"
    assert [layer.name for layer in spec.linear_layers()] == [
        "mlp_extractor.policy_net.0", "mlp_extractor.policy_net.2", "action_net"]  # not the value network
    assert spec.kept == sum(int(sb3_tar.sparse_agent(model).masks[f"{name}.weight"].sum())
                            for name in ("mlp_extractor.policy_net.0", "mlp_extractor.policy_net.2", "action_net"))


def test_a_ppo_actor_with_squashed_gsde_exports_tanh_and_rescales(tmp_path):
    model = train_on_policy(PPO, use_sde=True, policy_kwargs={"squash_output": True})
    path = export_actor(model, tmp_path / "actor.sb3tar")
    spec = read_actor(path)
    assert spec.metadata["deterministic_action"] == "tanh(mean)" and spec.action_bounds == "rescale"
    assert_actions_equal_predict(model, path)


class Spaces(gym.Env):
    """An environment that only carries its spaces: enough to build a model, train it a little and call
    predict. Its observations are drawn from the space, seeded by the model's seed."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.observation_space.seed(seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def train_discrete(algo):
    """A small PPO, A2C, DQN or QR-DQN model ([32, 32], sparsity 0.8) after 200 steps, with 3 actions and bounded
    observations: its greedy action changes across the observations (a trained CartPole agent's did not,
    so a wrong export could have matched it)."""
    kwargs = {"n_steps": 64} if algo is PPO else {} if algo is A2C else {"learning_starts": 50, "buffer_size": 1000}
    env = Spaces(gym.spaces.Box(-10.0, 10.0, (4,), np.float32), gym.spaces.Discrete(3))
    if algo is QRDQN:
        kwargs["policy_kwargs"] = {"n_quantiles": 5}
    policy_kwargs = {"net_arch": [32, 32], "sparsity": 0.8, "recovery_ratio": 0.02, **kwargs.pop("policy_kwargs", {})}
    model = algo("TarMlpPolicy", env, seed=0, device="cpu", policy_kwargs=policy_kwargs, **kwargs)
    model.learn(200)
    assert len(np.unique(model.predict(observations(model), deterministic=True)[0])) > 1
    return model


@pytest.mark.parametrize(("model_class", "action"), [(PPO, "argmax(softmax(logits))"), (A2C, "argmax(softmax(logits))"),
                                                     (DQN, "argmax(q_values)"), (QRDQN, "argmax(mean of quantiles)")])
def test_a_discrete_actor_exports_the_index_of_its_largest_probability_or_q_value(model_class, action, tmp_path):
    model = train_discrete(model_class)
    path = export_actor(model, tmp_path / "actor.sb3tar")
    assert_actions_equal_predict(model, path)
    spec = read_actor(path)
    bounds = "categorical" if model_class in (PPO, A2C) else "argmax"
    assert spec.action_bounds == bounds and spec.action_shape == () and spec.metadata["deterministic_action"] == action
    groups = 5 if model_class is QRDQN else 1  # QR-DQN: 5 quantiles of each action's value, averaged
    assert int(spec.action_high) == 2 and spec.action_groups == groups
    assert spec.linear_layers()[-1].out_features == 3 * groups
    actor = load_actor(path)
    assert actor(torch.zeros(7, 4)).dtype == torch.int64 and actor(torch.zeros(4)).shape == (1,)
    if model_class is DQN:  # the Q-network, not its target
        assert [layer.name for layer in spec.linear_layers()] == ["q_net.q_net.0", "q_net.q_net.2", "q_net.q_net.4"]


@st.composite
def odd_shapes(draw, algo: type, discrete: bool):
    """How to build a fresh sparse model of ``algo`` on odd shapes: 1-5 inputs, 1-3 hidden layers of 1-24
    units, 1-3 continuous action dimensions with random bounds or 2-5 discrete actions, any sparsity up to
    0.94 with empty layers allowed, ReLU or Tanh. (Built in the test: SB3 seeds ``random``.)"""
    observations = gym.spaces.Box(-2.0, 2.0, (draw(st.integers(1, 5)),), np.float32)
    if discrete:
        actions = gym.spaces.Discrete(draw(st.integers(2, 5)))
    else:
        low = np.array(draw(st.lists(st.floats(-5, 0), min_size=1, max_size=3)), np.float32)
        actions = gym.spaces.Box(low, low + np.float32(draw(st.floats(0.5, 4))), dtype=np.float32)
    policy_kwargs = {"net_arch": draw(st.lists(st.integers(1, 24), min_size=1, max_size=3)),
                     "sparsity": draw(st.floats(0.0, 0.94)), "recovery_ratio": draw(st.sampled_from([0.0, 0.05])),
                     "allow_empty_layers": True,
                     "activation_fn": draw(st.sampled_from([torch.nn.ReLU, torch.nn.Tanh]))}
    if algo is QRDQN:
        policy_kwargs["n_quantiles"] = draw(st.integers(1, 7))
    extra = {"n_steps": 8, "batch_size": 8} if algo is PPO else {"n_steps": 8} if algo is A2C else {"buffer_size": 10}
    return Spaces(observations, actions), draw(st.integers(0, 3)), policy_kwargs, extra


@pytest.mark.parametrize(("algo", "discrete"), [*((algo, False) for algo in (SAC, TD3, DDPG, TQC, CrossQ, PPO, A2C)),
                                                *((algo, True) for algo in (PPO, A2C, DQN, QRDQN))])
def test_every_exported_actor_acts_as_predict_on_odd_shapes_and_sparsities(algo, discrete, tmp_path_factory):
    @settings(max_examples=4, deadline=None)
    @given(build=odd_shapes(algo, discrete))
    def exports_as_predict(build):
        env, seed, policy_kwargs, extra = build
        model = algo("TarMlpPolicy", env, seed=seed, device="cpu", policy_kwargs=policy_kwargs, **extra)
        assert_exported_actor_is_the_models(model, export_actor(model, tmp_path_factory.mktemp("a") / "a.sb3tar"))

    exports_as_predict()


def assert_exported_actor_is_the_models(model, path: Path) -> None:
    """Its actions are ``predict``'s with either kernel, and every layer keeps exactly its mask's weights."""
    obs = observations(model, count=64)
    expected, _ = model.predict(obs, deterministic=True)
    for kernel in ("dense", "csr"):
        with torch.no_grad():
            actions = load_actor(path, kernels=kernel)(torch.as_tensor(obs)).numpy()
        np.testing.assert_allclose(actions, expected, rtol=0, atol=TOLERANCE, err_msg=f"kernels={kernel}")
    masks = sb3_tar.sparse_agent(model).masks
    for layer in read_actor(path).linear_layers():
        assert torch.equal(layer.mask, masks[f"{layer.name}.weight"].cpu()), layer.name


@pytest.mark.parametrize("action_space", [gym.spaces.Box(-1.0, 2.0, (), np.float32), gym.spaces.Discrete(3, start=1)],
                         ids=["scalar-box", "discrete-from-1"])
def test_a_scalar_box_and_a_discrete_space_not_from_0_export_as_predict_returns_them(action_space, tmp_path):
    model = PPO("TarMlpPolicy", Spaces(gym.spaces.Box(-2.0, 2.0, (3,), np.float32), action_space), n_steps=8,
                batch_size=8, seed=0, device="cpu", policy_kwargs={"sparsity": 0.5, "recovery_ratio": 0.02})
    path = export_actor(model, tmp_path / "actor.sb3tar")
    assert_exported_actor_is_the_models(model, path)  # SB3 returns (batch,) and 0-based indices, as the export
    obs = observations(model, count=16)
    with torch.no_grad():
        sequential = load_actor(path).as_sequential()(torch.as_tensor(obs)).numpy()
    np.testing.assert_allclose(sequential, model.predict(obs, deterministic=True)[0], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("model_class", [PPO, A2C])
def test_logits_tied_within_float32_rounding_pick_the_action_sb3_picks(model_class, tmp_path):
    """SB3 takes the argmax of the softmax probabilities: logits 1e-9 apart round to one probability, and
    the first action wins; an argmax of the logits would pick the larger. The tiny head makes such ties."""
    model = model_class("MlpPolicy", "CartPole-v1", seed=0, device="cpu", n_steps=8)
    with torch.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.weight[1, :] = 1e-9  # action 1's logit exceeds action 0's by a rounding error
        model.policy.action_net.bias.zero_()
    obs = np.abs(observations(model, count=32)) + 0.1
    expected, _ = model.predict(obs, deterministic=True)
    assert (expected == 0).all()  # the tie SB3 breaks towards the first action
    actor = load_actor(export_actor(model, tmp_path / "actor.sb3tar"))
    with torch.no_grad():
        logits = model.policy.action_net(model.policy.mlp_extractor.policy_net(torch.as_tensor(obs)))
        assert (logits.argmax(dim=-1) == 1).any()  # what ranking the logits alone would say
        assert np.array_equal(actor(torch.as_tensor(obs)).numpy(), expected)
        assert np.array_equal(actor.as_sequential()(torch.as_tensor(obs)).numpy(), expected)


def test_an_argmax_actor_spec_takes_one_discrete_action_only():
    layer = Linear(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool), None, "head")
    with pytest.raises(ValueError, match=r"action_bounds='argmax' picks one discrete action: action_shape must be "
                                         r"\(\), not \(2,\)"):
        ActorSpec((3,), None, (layer,), (2,), torch.zeros(2), torch.ones(2), "argmax")
    with pytest.raises(ValueError, match=r"action_bounds='round' must be one of \['rescale', 'clip', 'argmax', "
                                         r"'categorical'\]"):
        ActorSpec((3,), None, (layer,), (), torch.tensor(0.0), torch.tensor(1.0), "round")
    with pytest.raises(ValueError, match="action_bounds='argmax' over 3 actions, but the last layer 'head' has 2"):
        ActorSpec((3,), None, (layer,), (), torch.tensor(0.0), torch.tensor(2.0), "argmax")
    with pytest.raises(ValueError, match="action_bounds='argmax' over 1 actions in 3 groups, but the last layer"):
        ActorSpec((3,), None, (layer,), (), torch.tensor(0.0), torch.tensor(0.0), "argmax", action_groups=3)
    with pytest.raises(ValueError, match="action_groups=2 averages discrete action values: it needs"):
        ActorSpec((3,), None, (layer,), (2,), torch.zeros(2), torch.ones(2), "clip", action_groups=2)


def test_a_discrete_actor_file_written_before_action_groups_reads_as_one_group(tmp_path):
    import struct

    from sb3_tar.runtime.fileformat import MAGIC, MAGIC_WITHOUT_TRAILER

    path = export_actor(train_discrete(DQN), tmp_path / "actor.sb3tar")
    data = path.read_bytes()[:-4]  # files of that time had neither action groups nor the whole-file CRC-32
    (length,) = struct.unpack_from("<I", data, len(MAGIC))
    header = json.loads(data[len(MAGIC) + 4: len(MAGIC) + 4 + length])
    del header["action"]["groups"]
    encoded = json.dumps(header).encode()
    path.write_bytes(MAGIC_WITHOUT_TRAILER + struct.pack("<I", len(encoded)) + encoded + data[len(MAGIC) + 4 + length:])
    assert read_actor(path).action_groups == 1 and load_actor(path)(torch.zeros(4)).shape == (1,)


def test_every_single_bit_flip_of_an_exported_actor_is_refused_naming_the_file(tmp_path):
    import struct

    model = SAC("TarMlpPolicy", "Pendulum-v1", seed=0, device="cpu", policy_kwargs={"net_arch": [4], "sparsity": 0.5})
    data = bytearray(export_actor(model, tmp_path / "actor.sb3tar").read_bytes())
    flipped = tmp_path / "flipped.sb3tar"
    (length,) = struct.unpack_from("<I", data, 8)
    # Every bit of the magic, the length and the checksum; every 5th of the header, every 7th of the arrays
    # (a CRC-32 catches every single-bit error: the sample shows the file's every part is covered).
    framing = [*range(8 * 12), *range(8 * (len(data) - 4), 8 * len(data)), *range(8 * 12, 8 * (12 + length), 5)]
    arrays = range(8 * (12 + length), 8 * (len(data) - 4), 7)
    refused = 0
    for bit in [*framing, *arrays]:
        data[bit // 8] ^= 1 << (bit % 8)
        flipped.write_bytes(data)
        data[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ValueError, match=str(flipped).replace("\\", "\\\\")):
            load_actor(flipped)
        refused += 1
    assert refused == len(framing) + len(arrays) > 2000
    for size in (0, 8, 11, 12, 20, len(data) - 1):  # truncated files, down to empty
        flipped.write_bytes(data[:size])
        with pytest.raises(ValueError, match="not an sb3-tar actor file|truncated or corrupt"):
            load_actor(flipped)


def test_multi_discrete_and_recurrent_actors_are_refused_by_name(tmp_path):
    several = PPO("TarMlpPolicy", MultiDiscreteActions(), n_steps=16, device="cpu",
                  policy_kwargs={"sparsity": 0.5, "recovery_ratio": 0.02})
    with pytest.raises(ValueError, match=r"action space MultiDiscrete\(\[3 2\]\) is neither a Box nor a Discrete"):
        export_actor(several, tmp_path / "actor.sb3tar")
    recurrent = RecurrentPPO("TarMlpLstmPolicy", "Pendulum-v1", n_steps=16, device="cpu",
                             policy_kwargs={"sparsity": 0.5, "recovery_ratio": 0.02, "lstm_hidden_size": 8})
    with pytest.raises(ValueError, match="acts through an LSTM whose state carries over"):
        export_actor(recurrent, tmp_path / "actor.sb3tar")
    recurrent.save(tmp_path / "recurrent.zip")
    with pytest.raises(SystemExit, match="a RecurrentPPO model acts through an LSTM"):
        main(["export", str(tmp_path / "recurrent.zip"), str(tmp_path / "actor.sb3tar")])
    assert not (tmp_path / "actor.sb3tar").exists()


@pytest.mark.parametrize("model_class", [PPO, A2C])
def test_sb3_tar_export_tells_a_saved_ppo_model_from_an_a2c_one(model_class, tmp_path, capsys):
    model = train_on_policy(model_class)
    model.save(tmp_path / "model.zip")
    main(["export", str(tmp_path / "model.zip"), str(tmp_path / "actor.sb3tar")])
    assert f"({model_class.__name__}, TarActorCriticPolicy: mean, clipped" in capsys.readouterr().out
    assert_actions_equal_predict(model, tmp_path / "actor.sb3tar", kernels=("auto",))


def test_a_ppo_model_whose_clip_range_cannot_be_unpickled_here_is_still_told_from_a2c(tmp_path, capsys):
    # SB3 drops, with a warning, a saved attribute it cannot unpickle (another Python or cloudpickle version)
    train_on_policy(PPO).save(tmp_path / "saved.zip")
    with zipfile.ZipFile(tmp_path / "saved.zip") as saved, zipfile.ZipFile(tmp_path / "model.zip", "w") as model:
        for item in saved.infolist():
            content = saved.read(item)
            if item.filename == "data":
                data = json.loads(content)
                # a pickle of a function this Python does not have: AttributeError on loading
                data["clip_range"][":serialized:"] = base64.b64encode(b"cbuiltins\nno_such_function\n.").decode()
                content = json.dumps(data).encode()
            model.writestr(item, content)
    with pytest.warns(UserWarning, match="clip_range"):
        main(["export", str(tmp_path / "model.zip"), str(tmp_path / "actor.sb3tar")])
    assert "(PPO, TarActorCriticPolicy" in capsys.readouterr().out


SAVED_MODELS = {  # how to make one, and what sb3-tar export says of its actor
    "trpo-dense": (lambda: TRPO("MlpPolicy", rescaled_pendulum(), n_steps=64, seed=0, device="cpu"),
                   "(TRPO, ActorCriticPolicy: mean, clipped to the action bounds)"),
    "dqn": (lambda: train_discrete(DQN), "(DQN, TarDQNPolicy: argmax(q_values): one of 3 discrete actions)"),
    "qrdqn": (lambda: train_discrete(QRDQN),
              "(QRDQN, TarQRDQNPolicy: argmax(mean of quantiles): one of 3 discrete actions)"),
}


@pytest.mark.parametrize("case", list(SAVED_MODELS))
def test_sb3_tar_export_finds_a_saved_models_algorithm_and_writes_its_actor(case, tmp_path, capsys):
    make, says = SAVED_MODELS[case]
    model = make()
    model.save(tmp_path / "model.zip")
    main(["export", str(tmp_path / "model.zip"), str(tmp_path / "actor.sb3tar")])
    assert says in capsys.readouterr().out
    assert_actions_equal_predict(model, tmp_path / "actor.sb3tar", kernels=("auto",))


def test_sb3_tar_export_names_a_missing_model(tmp_path):
    with pytest.raises(SystemExit, match="sb3-tar export: model .*missing.zip'?: no such file"):
        main(["export", str(tmp_path / "missing.zip"), str(tmp_path / "actor.sb3tar")])


def normalized_model(algo):
    """A model trained behind VecNormalize, whose statistics moved away from 0 and 1."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env(rescaled_pendulum, n_envs=1, seed=0), clip_obs=1.5)
    if algo is A2C:
        return train_on_policy(A2C, env=env)
    return train(algo, env=env)


@pytest.mark.parametrize("algo", [A2C, SAC])
def test_a_normalizing_models_actor_acts_on_raw_observations(algo, tmp_path):
    model = normalized_model(algo)
    normalizer = model.get_vec_normalize_env()
    normalizer.training = False
    raw = observations(model) * 3.0  # beyond the clip: the actor clips as VecNormalize does
    expected, _ = model.predict(normalizer.normalize_obs(raw), deterministic=True)
    path = export_actor(model, tmp_path / "actor.sb3tar")  # the model's own VecNormalize, found by itself
    actor = load_actor(path)
    with torch.no_grad():
        np.testing.assert_allclose(actor(torch.as_tensor(raw)).numpy(), expected, rtol=0, atol=TOLERANCE)
    names = [getattr(layer, "name", "") for layer in actor.layers]
    assert names[0] == "observation normalization (VecNormalize)"
    # saved and exported from the command line: vecnormalize.pkl beside the model is applied, 'none' leaves it out
    model.save(tmp_path / "run" / "model.zip")
    normalizer.save(str(tmp_path / "run" / "vecnormalize.pkl"))
    main(["export", str(tmp_path / "run" / "model.zip"), str(tmp_path / "cli.sb3tar")])
    with torch.no_grad():
        np.testing.assert_allclose(load_actor(tmp_path / "cli.sb3tar")(torch.as_tensor(raw)).numpy(), expected,
                                   rtol=0, atol=TOLERANCE)
    main(["export", str(tmp_path / "run" / "model.zip"), str(tmp_path / "plain.sb3tar"), "--normalization", "none"])
    plain = load_actor(tmp_path / "plain.sb3tar")
    normalized = normalizer.normalize_obs(raw)
    with torch.no_grad():
        np.testing.assert_allclose(plain(torch.as_tensor(normalized)).numpy(), expected, rtol=0, atol=TOLERANCE)


def test_the_onnx_actor_of_a_normalizing_model_acts_on_raw_observations(tmp_path):
    pytest.importorskip("onnxscript", reason="ONNX export needs the export extra: pip install 'sb3-tar[export]'")
    ort = pytest.importorskip("onnxruntime", reason="running the ONNX file needs onnxruntime (export extra)")
    from sb3_tar.export.onnx_export import export_onnx

    model = normalized_model(A2C)
    normalizer = model.get_vec_normalize_env()
    normalizer.training = False
    raw = observations(model) * 3.0
    expected, _ = model.predict(normalizer.normalize_obs(raw), deterministic=True)
    path = export_onnx(export_actor(model, tmp_path / "actor.sb3tar"), tmp_path / "actor.onnx")
    actions = ort.InferenceSession(str(path)).run(None, {"observation": raw.astype(np.float32)})[0]
    np.testing.assert_allclose(actions, expected, rtol=0, atol=TOLERANCE)


def test_normalization_statistics_of_another_environment_are_refused(tmp_path):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    other = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=0))  # 4 features; the model's observations: 3
    with pytest.raises(ValueError, match=r"the VecNormalize statistics hold 4 features, but the model's observations "
                                         r"have shape \(3,\): they belong to another environment"):
        export_actor(train(SAC), tmp_path / "actor.sb3tar", other)
    with pytest.raises(SystemExit, match=r"--normalization 'missing.pkl': no such file"):
        model = train(SAC)
        model.save(tmp_path / "model.zip")
        main(["export", str(tmp_path / "model.zip"), str(tmp_path / "a.sb3tar"), "--normalization", "missing.pkl"])
