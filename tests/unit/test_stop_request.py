"""Stop requests in one process (no process group): the signals, stop file and time limit each give
a reason; resume picks save_dir's latest complete checkpoint only under auto_resume."""

import os
import signal
import time

import pytest

from plmscale.config import load_config
from plmscale.training.checkpoint import latest_checkpoint
from plmscale.training.preemption import StopRequest, parse_signals, resume_directory


def _train(*overrides):
    return load_config(None, list(overrides)).train


def test_parse_signals():
    assert parse_signals("SIGTERM, usr1,") == [signal.SIGTERM, signal.SIGUSR1]
    for bad in ("SIGKILL", "SIGNOPE"):
        with pytest.raises(ValueError, match="train.stop_signals"):
            parse_signals(bad)


@pytest.mark.parametrize("name", ["SIGTERM", "SIGUSR1"])
def test_signal_is_caught_while_watching_and_default_after(name):
    stop = StopRequest(_train())
    sig = getattr(signal, name)
    before = signal.getsignal(sig)
    with stop.watching():
        assert stop.check() is None
        os.kill(os.getpid(), sig)  # would end this process without the handler
        assert stop.check() == f"received {name}"
    assert signal.getsignal(sig) is before


def test_stop_file_and_time_limit(tmp_path):
    stop_file = tmp_path / "STOP"
    stop = StopRequest(_train(f"train.stop_file={stop_file}"))
    assert stop.check() is None
    stop_file.touch()
    assert stop.check() == f"{stop_file} exists"
    late = StopRequest(_train("train.exit_duration_minutes=0.5"), started=time.monotonic() - 31)
    assert late.check() == "train.exit_duration_minutes reached"
    assert StopRequest(_train("train.exit_duration_minutes=0.5")).check() is None
    with pytest.raises(ValueError, match="exit_duration_minutes"):
        StopRequest(_train("train.exit_duration_minutes=-1"))


def test_resume_directory(tmp_path):
    save, load = tmp_path / "save", tmp_path / "load"
    save.mkdir()
    assert latest_checkpoint(str(save)) is None
    assert resume_directory(_train(f"train.save_dir={save}", "train.auto_resume=true",
                                   f"train.load_dir={load}")) == str(load)
    (save / "latest").write_text("step7")
    assert latest_checkpoint(str(save)) is None  # 'latest' naming a missing directory: incomplete
    (save / "step7").mkdir()
    assert latest_checkpoint(str(save)) is None  # no manifest: its save was never committed
    (save / "step7" / "manifest.json").write_text("{}")
    assert latest_checkpoint(str(save)) == "step7"
    assert resume_directory(_train(f"train.save_dir={save}", "train.auto_resume=true",
                                   f"train.load_dir={load}")) == str(save)
    assert resume_directory(_train(f"train.save_dir={save}")) is None
