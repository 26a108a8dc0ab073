"""DSTCallback: SET and RigL keep every guarantee of a fixed mask, update for update."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.optim.optimizer as torch_optimizer
from sb3_contrib import TQC, CrossQ
from stable_baselines3 import DDPG, SAC, TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from sb3_support import assert_masks_hold

import sb3_tar
from sb3_tar import DSTCallback, cosine_drop_fraction
from sb3_tar.sb3.logging import check_masks

ALL_ALGOS = [SAC, TD3, DDPG, TQC, CrossQ]
STEPS, LEARNING_STARTS, INTERVAL = 300, 100, 25  # 200 gradient steps, end at 160: updates at 25 .. 150


def make_model(algo, policy="MlpPolicy", seed=0, **policy_kwargs):
    return algo(policy, "Pendulum-v1", learning_starts=LEARNING_STARTS, seed=seed, batch_size=64,
                policy_kwargs={"net_arch": [32, 32], **policy_kwargs})


def layer_sparsities(agent):
    return {name: 1.0 - float(mask.float().mean()) for name, mask in agent.masks.items()}


class CheckedDST(DSTCallback):
    """Checks, right after every update and before the optimizer step, what must hold at that moment."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.checked = 0

    def _apply_update(self, network, update, optimizer, step):
        weights = self.agent.weights(network)
        gradients = {name: weight.grad.detach().clone() for name, weight in weights.items()}
        if network.name != "actor":  # (TD3 and CrossQ step the actor less often)
            # The update comes after `step` applied critic steps, on the dense gradient of the next one.
            assert all(int(optimizer.state[weight]["step"]) == step for weight in weights.values())
        super()._apply_update(network, update, optimizer, step)
        targets = self.agent.target_weights(network)
        for name, weight in weights.items():
            new, kept = update.masks[name], update.surviving(name)
            regrown = new & ~kept
            assert int(new.sum()) == int(update.previous_masks[name].sum()), "per-layer sparsity changed"
            assert torch.equal(self.agent.masks[name], new), "the mask buffer did not take the new mask"
            assert torch.all(weight.detach()[~kept] == 0.0), "a regrown or dropped weight is not 0.0"
            state = optimizer.state[weight]
            for moment in ("exp_avg", "exp_avg_sq"):
                assert torch.all(state[moment][~kept] == 0.0), f"stale Adam {moment} at a regrown/dropped weight"
            if name in targets:
                assert torch.all(targets[name].detach()[~new] == 0.0), "the target kept a dropped weight"
                assert torch.all(targets[name].detach()[regrown] == 0.0), "the target's regrown weight is not 0.0"
            if self.method == "rigl" and int(regrown.sum()):
                candidates = gradients[name].abs()[~kept]
                chosen = gradients[name].abs()[regrown]
                # The regrown are the largest |dense gradient| among the positions the drop left open.
                assert chosen.min() >= candidates.sort(descending=True).values[int(regrown.sum()) - 1]
        self.checked += 1


@pytest.mark.parametrize("algo", ALL_ALGOS)
@pytest.mark.parametrize("method", ["set", "rigl"])
def test_every_update_keeps_sparsity_zeros_fresh_moments_and_target_masks(algo, method):
    model = make_model(algo)
    callback = CheckedDST(method, sparsity=0.9, update_interval=INTERVAL)
    model.learn(STEPS, callback=callback)
    agent = sb3_tar.sparse_agent(model)
    updates = len(range(INTERVAL, callback.end_step, INTERVAL))
    assert callback.checked == updates * len(agent.networks)
    assert all(record["dropped"] == record["regrown"] for record in callback.history)
    assert callback.history[0]["dropped"] > 0
    check_masks(agent)  # every masked weight of every network and target is 0.0 after the last step
    for network in agent.networks:
        total = sum(agent.masks[name].numel() for name in agent.weights(network))
        kept = sum(int(agent.masks[name].sum()) for name in agent.weights(network))
        assert kept == round(0.1 * total)


@pytest.mark.parametrize("algo", [SAC, TD3])
def test_the_mask_really_moves_and_stops_at_end_fraction(algo):
    model = make_model(algo)
    callback = DSTCallback("set", sparsity=0.9, update_interval=INTERVAL, end_fraction=0.5)
    model.learn(STEPS, callback=callback)
    assert callback.end_step == (STEPS - LEARNING_STARTS) // 2
    assert max(record["gradient_step"] for record in callback.history) < callback.end_step
    fractions = [record["drop_fraction"] for record in callback.history if record["network"] == "qf0"]
    assert fractions == sorted(fractions, reverse=True) and fractions[0] < 0.1
    agent = sb3_tar.sparse_agent(model)
    initial = agent.masks_before_revival  # the ERK masks drawn at training start (no revival)
    for network in agent.networks:  # (a layer ERK made dense has nowhere to move)
        assert any(not torch.equal(initial[name].cpu(), agent.masks[name].cpu()) for name in agent.weights(network))
    # A plain MlpPolicy keeps its current masks on the model, which saves them.
    assert all(torch.equal(model.sb3_tar_state["masks"][name], mask.cpu()) for name, mask in agent.masks.items())


@pytest.mark.parametrize("algo", [SAC, TD3])
def test_tar_policy_masks_are_the_initial_masks_and_the_callback_takes_no_sparsity(algo):
    model = make_model(algo, "TarMlpPolicy", sparsity=0.8, criterion="erk")
    before = layer_sparsities(sb3_tar.sparse_agent(model))
    callback = DSTCallback("rigl", update_interval=INTERVAL)
    model.learn(STEPS, callback=callback)
    assert callback.history
    assert layer_sparsities(sb3_tar.sparse_agent(model)) == before
    with pytest.raises(ValueError, match="TarMlpPolicy already sets the sparsity"):
        make_model(algo, "TarMlpPolicy", sparsity=0.8).learn(10, callback=DSTCallback("set", sparsity=0.5))
    with pytest.raises(ValueError, match="DSTCallback needs sparsity"):
        make_model(algo).learn(10, callback=DSTCallback("set"))


@pytest.mark.parametrize("policy", ["MlpPolicy", "TarMlpPolicy"])
def test_save_load_resume_keeps_the_current_masks_and_the_schedule(policy, tmp_path):
    kwargs = {"sparsity": 0.9, "criterion": "erk"} if policy == "TarMlpPolicy" else {}  # DST starts from ERK
    model = make_model(SAC, policy, **kwargs)
    dst = {} if policy == "TarMlpPolicy" else {"sparsity": 0.9}
    first = DSTCallback("set", update_interval=INTERVAL, total_gradient_steps=800, **dst)
    model.learn(STEPS, callback=first)
    masks = {name: mask.clone() for name, mask in sb3_tar.sparse_agent(model).masks.items()}
    model.save(tmp_path / "model.zip")
    loaded = SAC.load(tmp_path / "model.zip")
    if policy == "TarMlpPolicy":
        assert all(torch.equal(loaded.policy.masks[n], m) for n, m in masks.items())
    else:
        assert all(torch.equal(loaded.sb3_tar_state["masks"][n], m.cpu()) for n, m in masks.items())
    loaded.set_env(model.get_env())
    second = DSTCallback("set", update_interval=INTERVAL, total_gradient_steps=800, **dst)
    loaded.learn(200, callback=second, reset_num_timesteps=False)
    assert second.gradient_steps == first.gradient_steps + 200
    # No update is lost or repeated across the resume: one every INTERVAL steps, counted on.
    steps = sorted({record["gradient_step"] for record in first.history + second.history})
    assert steps == list(range(INTERVAL, second.gradient_steps, INTERVAL))
    check_masks(sb3_tar.sparse_agent(loaded))


def test_updates_follow_jaxpruners_schedule_after_every_interval_of_applied_steps():
    """Not at step 0; then after 25, 50, ... applied gradient steps, each with the cosine fraction at that count."""
    model = make_model(SAC)
    callback = CheckedDST("set", sparsity=0.9, update_interval=INTERVAL)
    model.learn(STEPS, callback=callback)
    for network in ("actor", "qf0", "qf1"):
        records = [record for record in callback.history if record["network"] == network]
        assert [record["gradient_step"] for record in records] == list(range(INTERVAL, callback.end_step, INTERVAL))
        for record in records:
            assert record["drop_fraction"] == cosine_drop_fraction(record["gradient_step"], end_step=callback.end_step)


class ChurnProbe(DSTCallback):
    """Keeps, for every layer an update regrew entirely at the positions it dropped (churn 1.0), the
    weight, its Adam moments and its target weight before and after the update."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fully_churned: list[tuple[str, dict, dict]] = []

    def _apply_update(self, network, update, optimizer, step):
        def snapshot(name):
            weight = self.agent.weights(network)[name]
            state = optimizer.state[weight]
            target = self.agent.target_weights(network).get(name)
            return {"weight": weight.detach().clone(), "exp_avg": state["exp_avg"].clone(),
                    "exp_avg_sq": state["exp_avg_sq"].clone(),
                    "target": None if target is None else target.detach().clone()}

        churned = [layer.name for layer in update.layers if layer.regrown and layer.churn == 1.0]
        before = {name: snapshot(name) for name in churned}
        super()._apply_update(network, update, optimizer, step)
        self.fully_churned += [(name, before[name], snapshot(name)) for name in churned]


def test_a_rigl_update_with_churn_one_leaves_the_layer_its_weights_and_adam_moments():
    """ERK keeps SAC's 32x1 output layers dense at sparsity 0.5: whatever RigL drops there is the only
    place to regrow, so it regrows exactly what it dropped, and nothing may change (RigL's
    reinit_when_same=False; zeroing them would throw trained weights and moments away)."""
    model = make_model(SAC)
    callback = ChurnProbe("rigl", sparsity=0.5, update_interval=INTERVAL)
    model.learn(STEPS, callback=callback)
    assert callback.fully_churned, "no update had a layer with churn 1.0"
    churned_layers = {name for name, _, _ in callback.fully_churned}
    assert {"actor.mu.weight", "critic.qf0.4.weight", "critic.qf1.4.weight"} <= churned_layers
    for name, before, after in callback.fully_churned:
        assert int((before["weight"] != 0).sum()) > 0, name
        for key in ("weight", "exp_avg", "exp_avg_sq", "target"):
            if before[key] is not None:
                assert torch.equal(after[key], before[key]), f"{name}: {key} changed"


def test_same_seed_gives_the_same_updates():
    histories = []
    for _ in range(2):
        callback = DSTCallback("set", sparsity=0.9, update_interval=INTERVAL)
        make_model(SAC, seed=3).learn(300, callback=callback)
        histories.append([(r["network"], r["dropped"], r["churn"]) for r in callback.history])
    assert histories[0] == histories[1]


def test_each_update_is_logged(tmp_path):
    model = make_model(SAC)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(STEPS, callback=DSTCallback("rigl", sparsity=0.9, update_interval=INTERVAL), log_interval=1)
    with open(tmp_path / "progress.csv") as file:
        columns = next(csv.reader(file))
    for key in ("dst/actor/dropped", "dst/qf0/regrown", "dst/qf1/churn", "dst/actor/sparsity/latent_pi.0"):
        assert key in columns


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "prune"}, r"method='prune' is not a dynamic sparse training method; allowed: \['set', 'rigl'\]"),
        ({"method": "set", "sparsity": 1.2}, r"sparsity=1.2 must be in \[0, 1\)"),
        ({"method": "set", "sparsity": 0.9, "update_interval": 0}, "update_interval=0 must be an integer >= 1"),
        ({"method": "set", "sparsity": 0.9, "drop_fraction": 1.5}, r"drop_fraction=1.5 must be a number in \[0, 1\]"),
        ({"method": "set", "sparsity": 0.9, "end_fraction": 0}, r"end_fraction=0 must be a number in \(0, 1\]"),
        ({"method": "rigl", "sparsity": 0.9, "initial": "lottery"}, r"criterion='lottery' is not a registered"),
    ],
)
def test_bad_settings_are_rejected_when_the_callback_is_created(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DSTCallback(**kwargs)


def test_numpy_integer_settings_are_kept_as_python_ints_and_train():
    callback = DSTCallback("rigl", sparsity=0.9, update_interval=np.int64(5), total_gradient_steps=np.int32(40))
    assert type(callback.update_interval) is int and type(callback.total_gradient_steps) is int
    model = SAC("MlpPolicy", "Pendulum-v1", seed=0, learning_starts=10, batch_size=8, device="cpu",
                policy_kwargs={"net_arch": [16, 16]})
    model.learn(30, callback=callback)
    assert callback.history  # updates ran: a NumPy interval used to be refused at the first one


@pytest.mark.parametrize("policy", ["MlpPolicy", "TarMlpPolicy"])
def test_the_callback_runs_its_masks_callback_and_hooks_only_this_models_optimizers(policy):
    """Composed, not inherited: the masks come from a child TARCallback (plain policy) or the policy
    (a child SparsityLogCallback checks them); the mask updates hang on this model's optimizers only."""
    kwargs = {"sparsity": 0.8} if policy == "MlpPolicy" else {}
    model = make_model(SAC, policy, **({} if policy == "MlpPolicy" else {"sparsity": 0.8}))
    callback = DSTCallback("set", update_interval=INTERVAL, **kwargs)
    expected = sb3_tar.TARCallback if policy == "MlpPolicy" else sb3_tar.SparsityLogCallback
    assert type(callback.masks_callback) is expected and not isinstance(callback, sb3_tar.SparsityLogCallback)
    bystander = torch.optim.Adam(torch.nn.Linear(2, 2).parameters())
    process_wide = dict(torch_optimizer._global_optimizer_pre_hooks)
    seen_during_training = []

    class Probe(BaseCallback):
        def _on_step(self):
            optimizers = (model.actor.optimizer, model.critic.optimizer)
            seen_during_training.append([len(optimizer._optimizer_step_pre_hooks) for optimizer in optimizers])
            steps = callback.gradient_steps
            bystander.step()  # another optimizer in the process: not this model's, not counted
            assert callback.gradient_steps == steps
            return True

    model.learn(STEPS, callback=[callback, Probe()])
    assert callback.agent is callback.masks_callback.agent and callback.history
    assert dict(torch_optimizer._global_optimizer_pre_hooks) == process_wide
    assert seen_during_training[-1] == [1, 1]
    assert all(len(optimizer._optimizer_step_pre_hooks) == 0
               for optimizer in (model.actor.optimizer, model.critic.optimizer)), "hooks left after training"
    assert_masks_hold(callback.agent)


def test_a_learn_that_raised_leaves_no_second_hook_for_the_next_learn():
    """Training end never comes after an exception: the next training start must not stack hooks."""
    model = make_model(SAC)
    callback = DSTCallback("rigl", sparsity=0.8, update_interval=INTERVAL)

    class Failing(BaseCallback):
        def _on_step(self):
            if self.num_timesteps == LEARNING_STARTS + 10:
                raise RuntimeError("a crash mid-training")
            return True

    with pytest.raises(RuntimeError, match="a crash mid-training"):
        model.learn(STEPS, callback=[callback, Failing()])
    model.learn(STEPS, callback=callback, reset_num_timesteps=False)
    optimizers = (model.actor.optimizer, model.critic.optimizer)
    assert all(not optimizer._optimizer_step_pre_hooks for optimizer in optimizers)
    steps = [record["gradient_step"] for record in callback.history if record["network"] == "qf0"]
    assert len(steps) == len(set(steps)), "an update was applied twice at the same gradient step"
