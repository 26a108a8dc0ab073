"""The call-stack check (``sb3_tar.sb3.call_stack``) against the SB3 version it reads: a new SB3 release may move
the functions it recognises, and this test says so first."""

from __future__ import annotations

import sb3_contrib
import stable_baselines3
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO, SAC

from sb3_tar.sb3 import call_stack

CHECKED_AGAINST = "2.9.2"


def test_the_sb3_version_is_the_one_the_call_stack_check_was_written_against():
    assert stable_baselines3.__version__ == CHECKED_AGAINST, (
        f"sb3_tar.sb3.call_stack recognises SB3 {CHECKED_AGAINST}'s _setup_model and load functions; check them "
        f"against SB3 {stable_baselines3.__version__} and update CHECKED_AGAINST")
    assert sb3_contrib.__version__ == CHECKED_AGAINST


def test_building_and_loading_are_recognised(monkeypatch, tmp_path):
    seen = []
    real = call_stack.who_builds

    def spy():
        seen.append(real())
        return seen[-1]

    import sb3_tar.sb3.tar_policy as tar_policy

    monkeypatch.setattr(tar_policy, "who_builds", spy)
    for algo, policy, env in ((SAC, "TarMlpPolicy", "Pendulum-v1"), (PPO, "TarMlpPolicy", "CartPole-v1"),
                              (RecurrentPPO, "TarMlpLstmPolicy", "CartPole-v1")):
        model = algo(policy, env, seed=0, device="cpu", policy_kwargs={"sparsity": 0.5, "net_arch": [8]})
        assert seen[-1] == (model, False)  # the algorithm building it, not a load
        model.save(tmp_path / "model.zip")
        algo.load(tmp_path / "model.zip", device="cpu")
        assert seen[-1][1] is True  # SB3's load: the masks come from the file
    assert real() == (None, False)  # by hand, outside an algorithm
