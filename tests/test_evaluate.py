"""``sb3-tar evaluate``: a published run's model replayed in the environment it trained in."""

from __future__ import annotations

import pytest
from run_support import TINY_FLAGS

from sb3_tar.cli import main
from sb3_tar.experiments.evaluation import evaluate_run


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("evaluate") / "run"
    main(["train", "--output", str(output), *TINY_FLAGS])
    return output


def test_evaluate_replays_the_saved_model_and_the_same_seed_gives_the_same_returns(sac_run, capsys):
    first = evaluate_run(sac_run, episodes=2, seed=3)
    assert len(first.returns) == 2 and first.lengths == [200, 200]  # Pendulum's episodes
    assert first.deterministic and not first.normalized and first.video is None
    assert evaluate_run(sac_run, episodes=2, seed=3).returns == first.returns
    assert evaluate_run(sac_run, episodes=2, seed=4).returns != first.returns
    main(["evaluate", str(sac_run), "--episodes", "2", "--seed", "3"])
    printed = capsys.readouterr().out
    assert f"mean return {first.mean:.1f} +- {first.std:.1f} over 2 episodes (deterministic actions, seed 3" in printed


def test_evaluate_records_a_video_and_never_replaces_one(sac_run, tmp_path, capsys):
    evaluation = evaluate_run(sac_run, episodes=1, video=tmp_path)
    assert evaluation.video == tmp_path / "sac-Pendulum-v1-tar-magnitude-s0.8-rr0.01-w16-seed0.mp4"
    assert evaluation.video.stat().st_size > 1000
    assert sorted(path.name for path in tmp_path.iterdir()) == [evaluation.video.name]  # nothing else left
    with pytest.raises(SystemExit, match=r"\.mp4 exists; choose another --video folder or move it away"):
        main(["evaluate", str(sac_run), "--video", str(tmp_path)])


def test_a_normalising_run_is_replayed_on_its_saved_statistics(tmp_path, capsys):
    output = tmp_path / "a2c"
    main(["train", "--algo", "a2c", "--env", "Pendulum-v1", "--timesteps", "256", "--eval-freq", "128",
          "--eval-episodes", "1", "--net-arch", "16", "16", "--device", "cpu", "--no-progress-bar",
          "--output", str(output)])
    assert (output / "vecnormalize.pkl").is_file()
    assert evaluate_run(output, episodes=1).normalized
    main(["evaluate", str(output), "--episodes", "1"])
    assert "observations normalised with the run's vecnormalize.pkl" in capsys.readouterr().out


@pytest.mark.parametrize(("arguments", "message"), [
    (["--episodes", "0"], "episodes=0 must be an integer >= 1"),
    (["--seed", "-1"], "seed=-1 must be an integer >= 0"),
])
def test_bad_evaluate_settings_are_refused(sac_run, arguments, message):
    with pytest.raises(SystemExit, match=message):
        main(["evaluate", str(sac_run), *arguments])


def test_a_folder_without_a_finished_run_is_refused(tmp_path):
    with pytest.raises(SystemExit, match=rf"sb3-tar evaluate: {tmp_path} holds no finished sb3-tar run: "):
        main(["evaluate", str(tmp_path)])
