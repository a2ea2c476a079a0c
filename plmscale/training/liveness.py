"""Dead-rank detection: no rank waits forever for one that is gone.

Every rank runs a heartbeat thread that bumps a counter in the job's rendezvous store
(MASTER_ADDR:MASTER_PORT, its own client connection) and watches everybody else's. A rank whose
counter has not moved for ``train.dead_rank_timeout_s`` (SIGKILL, OOM killer, a lost node) is
named on stderr and this process exits non-zero at once, from the thread, whatever the main thread
is blocked in. When the store itself is unreachable for that long, its host (rank 0's process, or
the launcher's agent) is the one that vanished. A collective that fails first in the main thread
(gloo notices a closed connection quickly) is turned into the same message by ``verdict``.
"""

from __future__ import annotations

import datetime
import os
import sys
import threading
import time
import traceback

import torch.distributed as dist

EXIT_RANK_LOST = 4
_KEY = "plmscale/heartbeat/{}"
_state: dict = {}


def _report(message: str) -> None:
    print(f"plmscale: rank {dist.get_rank()}: {message}", file=sys.stderr, flush=True)


def start(timeout_s: float) -> None:
    """Start this rank's heartbeat thread (once per process; a world of one needs none)."""
    if _state or dist.get_world_size() == 1:
        return
    interval = max(min(timeout_s / 6, 5.0), 0.2)
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                          is_master=False, timeout=datetime.timedelta(seconds=max(timeout_s, 1)))
    _state.update(rank=dist.get_rank(), world=dist.get_world_size(), store=store,
                  timeout=timeout_s, interval=interval, lost=None, stop=threading.Event())
    threading.Thread(target=_beat, name="plmscale-heartbeat", daemon=True).start()


def _beat() -> None:
    s = _state
    rank, world, store, stop = s["rank"], s["world"], s["store"], s["stop"]
    seen = {r: (None, time.monotonic()) for r in range(world) if r != rank}
    count, store_ok = 0, time.monotonic()
    while not stop.wait(s["interval"]):
        now = time.monotonic()
        try:
            count += 1
            store.set(_KEY.format(rank), str(count))
            keys = [_KEY.format(r) for r in seen]
            present = [k for k in keys if store.check([k])]
            values = dict(zip(present, store.multi_get(present))) if present else {}
            store_ok = now
        except Exception:  # the store's host is gone (or the network to it)
            if now - store_ok > s["timeout"]:
                _lost("rank 0 (its process hosts the job's rendezvous store "
                      f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')})",
                      now - store_ok)
            continue
        for r, (value, since) in list(seen.items()):
            current = values.get(_KEY.format(r))
            if current == b"done":
                del seen[r]
            elif current != value:
                seen[r] = (current, now)
            elif now - since > s["timeout"]:
                _lost(f"rank {r}", now - since)


def _lost(who: str, silent_s: float) -> None:
    _state["lost"] = who
    _report(f"{who} stopped responding ({silent_s:.0f} s without a heartbeat, limit "
            f"train.dead_rank_timeout_s={_state['timeout']:g}): it died (killed, out of memory) or "
            f"its node is gone; stopping this rank too. Resume from the last checkpoint.")
    os._exit(EXIT_RANK_LOST)


def verdict(error: BaseException) -> int:
    """After an error in the main thread (a failed collective, or any other): wait up to the
    timeout for the heartbeat thread to name a vanished rank, which exits the process; else print
    ``error`` with its traceback (it is then a bug, not a lost rank)."""
    if _state:
        deadline = time.monotonic() + _state["timeout"] + 2 * _state["interval"]
        while time.monotonic() < deadline:
            time.sleep(0.1)
    traceback.print_exception(error)
    _report(f"the run failed and no rank was found gone: {error}")
    return EXIT_RANK_LOST


def stop() -> None:
    """End the heartbeat at a normal finish, telling the others this rank is done, not lost."""
    if not _state:
        return
    _state["stop"].set()
    try:
        _state["store"].set(_KEY.format(_state["rank"]), "done")
    except Exception:
        pass
