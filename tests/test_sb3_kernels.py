"""The ``kernel`` setting: compressed layers compute what the masked dense layers compute, and either kernel's
files load with the other. The mask invariants over both kernels run in test_sb3_policies.py and
test_sb3_on_policy.py (marker ``both_kernels``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import QRDQN, TQC, CrossQ, MaskablePPO, RecurrentPPO
from sb3_support import assert_masks_hold, make_any_model
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3

import sb3_tar
from sb3_tar.engine.compressed import CompressedLinear
from sb3_tar.export import export_actor
from sb3_tar.runtime import load_actor
from sb3_tar.sb3.kernels import AUTO_RULE, choose_kernel, layer_kernels

CONTINUOUS = [SAC, TD3, DDPG, TQC, CrossQ]


def compressed_layers(model) -> int:
    return sum(isinstance(module, CompressedLinear) for module in model.policy.modules())


def build(algo, kernel: str, **kwargs):
    if algo in (MaskablePPO, RecurrentPPO):  # sb3_support's small settings are PPO's: n_steps, batch_size
        policy = "TarMlpLstmPolicy" if algo is RecurrentPPO else "TarMlpPolicy"
        return algo(policy, "CartPole-v1", seed=0, n_steps=64, batch_size=16, device="cpu",
                    policy_kwargs={"net_arch": [32, 32], "sparsity": 0.9, "kernel": kernel, **kwargs})
    env = "Pendulum-v1" if algo in CONTINUOUS else "CartPole-v1"
    return make_any_model(algo, env=env, sparsity=0.9, kernel=kernel, **kwargs)


@pytest.mark.parametrize("algo", [*CONTINUOUS, PPO, A2C, DQN, QRDQN, MaskablePPO, RecurrentPPO])
def test_an_untrained_model_predicts_the_same_with_either_kernel(algo):
    dense, sparse = build(algo, "dense"), build(algo, "sparse")
    assert compressed_layers(dense) == 0 and compressed_layers(sparse) > 0
    observations = np.stack([sparse.observation_space.sample() for _ in range(32)])
    expected, _ = dense.predict(observations, deterministic=True)
    actual, _ = sparse.predict(observations, deterministic=True)
    np.testing.assert_allclose(actual, expected, atol=1e-4)
    assert_masks_hold(sb3_tar.sparse_agent(sparse))
    for name, mask in sb3_tar.sparse_agent(sparse).masks.items():  # the same masks, drawn before compression
        assert torch.equal(mask, sb3_tar.sparse_agent(dense).masks[name])


@pytest.mark.parametrize("algo", [SAC, TD3, PPO, DQN])
def test_a_model_saved_with_one_kernel_loads_and_trains_with_the_other(algo, tmp_path):
    env = "Pendulum-v1" if algo in CONTINUOUS else "CartPole-v1"
    steps = 128 if algo is PPO else 120
    for saved_kernel, loaded_kernel in (("sparse", "dense"), ("dense", "sparse")):
        model = build(algo, saved_kernel)
        model.learn(steps)
        model.save(tmp_path / f"{saved_kernel}.zip")
        loaded = algo.load(tmp_path / f"{saved_kernel}.zip", env=gym.make(env), device="cpu",
                           custom_objects={"policy_kwargs": {**model.policy_kwargs, "kernel": loaded_kernel}})
        assert loaded.policy.kernel == loaded_kernel
        assert (compressed_layers(loaded) > 0) == (loaded_kernel == "sparse")
        observations = np.stack([model.observation_space.sample() for _ in range(16)])
        np.testing.assert_allclose(loaded.predict(observations, deterministic=True)[0],
                                   model.predict(observations, deterministic=True)[0], atol=1e-5)
        agent = sb3_tar.sparse_agent(loaded)
        for network in agent.networks:  # Adam's moments came across in the loading model's layout
            for parameter in network.module.parameters():
                for value in network.optimizer.state.get(parameter, {}).values():
                    assert not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape == parameter.shape
        loaded.learn(steps, reset_num_timesteps=False)
        assert_masks_hold(sb3_tar.sparse_agent(loaded))


def test_moments_follow_the_kept_weights_across_kernels(tmp_path):
    model = build(SAC, "sparse")
    model.learn(150)
    model.save(tmp_path / "sparse.zip")
    dense = SAC.load(tmp_path / "sparse.zip", device="cpu",
                     custom_objects={"policy_kwargs": {**model.policy_kwargs, "kernel": "dense"}})
    layer = model.policy.critic.qf0[0]
    moments = model.policy.critic.optimizer.state[layer.values]
    dense_moments = dense.policy.critic.optimizer.state[dense.policy.critic.qf0[0].weight]
    mask = layer.mask()
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(dense_moments[key][mask], moments[key])
        assert torch.all(dense_moments[key][~mask] == 0)


@pytest.mark.parametrize("algo", [SAC, TD3])
def test_a_sparse_kernel_file_is_at_most_a_third_of_the_dense_one_at_sparsity_0_9(algo, tmp_path):
    sizes = {}
    for name, policy, kwargs in (("dense", "MlpPolicy", {}), ("sparse", "TarMlpPolicy", {"sparsity": 0.9,
                                                                                        "kernel": "sparse"})):
        model = algo(policy, "Pendulum-v1", seed=0, device="cpu", learning_starts=10,
                     policy_kwargs={"net_arch": [256, 256], **kwargs})
        model.learn(20)  # optimizer state included
        model.save(tmp_path / f"{name}.zip")
        sizes[name] = (tmp_path / f"{name}.zip").stat().st_size
    assert sizes["sparse"] <= 0.35 * sizes["dense"], sizes


def test_parameters_set_back_and_a_state_dict_round_trip_keep_the_compressed_layers():
    model = build(SAC, "sparse")
    model.learn(120)
    observations = np.stack([model.observation_space.sample() for _ in range(8)])
    before = model.predict(observations, deterministic=True)[0]
    model.set_parameters(model.get_parameters())
    model.policy.load_state_dict(model.policy.state_dict())
    assert compressed_layers(model) > 0
    np.testing.assert_array_equal(model.predict(observations, deterministic=True)[0], before)
    model.learn(60, reset_num_timesteps=False)
    assert_masks_hold(sb3_tar.sparse_agent(model))


def test_values_that_do_not_fit_the_mask_are_refused_naming_them():
    model = build(SAC, "sparse")
    state = model.policy.state_dict()
    state["actor.latent_pi.0.values"] = torch.zeros(3)
    with pytest.raises(sb3_tar.MaskMismatchError, match=r"actor.latent_pi.0.values is \(3,\), but the mask of "
                                                        r"actor.latent_pi.0.weight keeps \d+ values"):
        model.policy.load_state_dict(state)
    state["actor.latent_pi.0.values"] = [0.0, 1.0]
    with pytest.raises(sb3_tar.MaskMismatchError, match=r"actor.latent_pi.0.values is list, but the mask"):
        model.policy.load_state_dict(state)


def test_export_and_reports_read_compressed_layers_as_dense_ones(tmp_path):
    dense, sparse = build(SAC, "dense"), build(SAC, "sparse")
    actors = {name: load_actor(export_actor(model, tmp_path / f"{name}.sb3tar"))
              for name, model in (("dense", dense), ("sparse", sparse))}
    observations = torch.as_tensor(np.stack([sparse.observation_space.sample() for _ in range(8)]))
    torch.testing.assert_close(actors["sparse"](observations), actors["dense"](observations), atol=1e-5, rtol=0)
    assert actors["sparse"].kept == actors["dense"].kept
    plans = {name: sb3_tar.sparse_agent(model).plans() for name, model in (("dense", dense), ("sparse", sparse))}
    assert {name: plan.kept for name, plan in plans["sparse"].items()} == {
        name: plan.kept for name, plan in plans["dense"].items()}


def test_sac_with_gsde_trains_with_compressed_layers():
    model = build(SAC, "sparse", use_sde=True)
    model.learn(150)
    assert compressed_layers(model) > 0
    assert_masks_hold(sb3_tar.sparse_agent(model))


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_set_and_rigl_refuse_compressed_layers_naming_the_dense_kernel(method):
    model = build(SAC, "sparse")
    with pytest.raises(ValueError, match=rf"{method.upper()} moves masks, but this TarMlpPolicy trains compressed "
                                         r"layers whose masks are frozen \(kernel='sparse'\); use policy_kwargs "
                                         r"kernel='dense'"):
        model.learn(60, callback=sb3_tar.DSTCallback(method=method))


def test_auto_is_the_default_and_keeps_small_networks_dense():
    small = SAC("TarMlpPolicy", "Pendulum-v1", seed=0, device="cpu", policy_kwargs={"sparsity": 0.9,
                                                                                    "net_arch": [64, 64]})
    assert small.policy.kernel == "auto" and compressed_layers(small) == 0
    wide = SAC("TarMlpPolicy", "Pendulum-v1", seed=0, device="cpu", buffer_size=1000,
               policy_kwargs={"sparsity": 0.95, "net_arch": [512, 512]})
    assert wide.policy.kernel == "auto" and compressed_layers(wide) > 0


def test_a_bad_kernel_is_refused_naming_the_setting_and_the_kernels():
    with pytest.raises(ValueError, match=r"TarMlpPolicy: kernel='csr' is not a kernel; allowed: \['auto', "
                                         r"'dense', 'sparse'\]"):
        build(SAC, "csr")


def kept(rows: int, columns: int, density: float) -> torch.Tensor:
    """A mask keeping exactly ``int(density * rows * columns)`` weights."""
    mask = torch.zeros(rows * columns, dtype=torch.bool)
    mask[torch.randperm(rows * columns)[:int(density * rows * columns)]] = True
    return mask.view(rows, columns)


def test_auto_compresses_only_large_layers_of_low_density_on_the_cpu():
    assert AUTO_RULE == ((1024 * 256, 0.15), (256 * 256, 0.10))  # benchmarks/results/train_kernel_layers.md
    cpu = torch.device("cpu")
    assert choose_kernel("auto", kept(256, 256, 0.1), cpu) == "sparse"
    assert choose_kernel("auto", kept(256, 256, 0.12), cpu) == "dense"  # a small layer gains only below 0.1
    assert choose_kernel("auto", kept(1024, 393, 0.15), cpu) == "sparse"  # a large one up to 0.15
    assert choose_kernel("auto", kept(1024, 393, 0.2), cpu) == "dense"  # 0.2 was not always faster
    assert choose_kernel("auto", kept(64, 1024, 0.05), cpu) == "dense"  # a narrow head: slower at every density
    assert choose_kernel("auto", kept(1024, 17, 0.05), cpu) == "dense"
    for kernel in ("dense", "sparse"):
        assert choose_kernel(kernel, kept(17, 17, 0.5), cpu) == kernel
    # torch's CSR reduce kernels are CPU-only
    assert choose_kernel("auto", kept(256, 256, 0.1), torch.device("cuda")) == "dense"
    model = make_any_model(SAC, net_arch=[512, 512], sparsity=0.95, kernel="auto")
    chosen = layer_kernels(sb3_tar.sparse_agent(model).networks, sb3_tar.sparse_agent(model).masks, "auto",
                           torch.device("cpu"))
    assert chosen["actor.latent_pi.2.weight"] == "sparse" and chosen["actor.mu.weight"] == "dense"
    assert isinstance(model.policy.actor.latent_pi[2], CompressedLinear)
    assert isinstance(model.policy.actor.mu, torch.nn.Linear)
    model.learn(120)
    assert_masks_hold(sb3_tar.sparse_agent(model))


def test_the_sparse_kernel_off_the_cpu_is_refused_naming_auto_and_dense():
    model = build(SAC, "dense")
    agent = sb3_tar.sparse_agent(model)
    with pytest.raises(ValueError, match=r"kernel='sparse' runs on the CPU only .* use kernel='dense' or 'auto'"):
        layer_kernels(agent.networks, agent.masks, "sparse", torch.device("cuda"))


def test_a_target_layer_shares_its_online_layers_indices_and_polyak_moves_its_values():
    model = build(TD3, "sparse")
    online, target = model.policy.critic.qf0[0], model.policy.critic_target.qf0[0]
    assert all(getattr(target, name) is getattr(online, name) for name in ("crow", "col"))
    assert online.perm is None and target.perm is None  # W^T's index waits for the first backward
    assert torch.equal(target.values, online.values) and target.values is not online.values
    model.learn(200)
    assert not torch.equal(target.values, online.values)  # Polyak averaging, on the kept values
    assert online.perm is not None and target.perm is None  # a target network never runs a backward
    assert_masks_hold(sb3_tar.sparse_agent(model))


def test_the_log_callback_measures_compressed_networks(tmp_path):
    model = build(SAC, "sparse")
    model.learn(120, callback=sb3_tar.SparsityLogCallback())
    from sb3_tar.sb3.logging import check_masks

    measured = check_masks(sb3_tar.sparse_agent(model))
    plans = sb3_tar.sparse_agent(model).plans()
    for name, sparsity in measured.items():  # a kept weight may be 0.0: measured sparsity is at least the mask's
        assert sparsity >= plans[name].sparsity - 1e-12


def test_sb3_tar_train_trains_publishes_and_exports_a_compressed_run(tmp_path):
    from run_support import tiny

    from sb3_tar.experiments.pipeline import run_training

    config = tiny(hyperparams={**tiny().hyperparams, "policy_kwargs": "dict(kernel='sparse')"})
    run = run_training(config, tmp_path / "run")
    model = SAC.load(tmp_path / "run" / "model.zip", device="cpu")
    assert model.policy.kernel == "sparse" and compressed_layers(model) > 0
    assert run.result["kept_weights"]["actor"] > 0
    actor = load_actor(export_actor(model, tmp_path / "actor.sb3tar"))
    observations = torch.as_tensor(np.stack([model.observation_space.sample() for _ in range(4)]))
    np.testing.assert_allclose(actor(observations).numpy(), model.predict(observations.numpy(), deterministic=True)[0],
                               atol=1e-5)
