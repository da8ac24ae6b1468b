"""core/forked.py: work dealt to forked processes, each with its share of the threads; answers and
failures come back to the parent."""
import os

import pytest


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)

from core.forked import balance, fork_map, resolve_workers


def test_balance_deals_largest_first_to_the_lightest():
    sizes = {"a": 5, "b": 4, "c": 3, "d": 3, "e": 1}
    chunks = balance(list(sizes), 2, sizes.get)
    assert chunks == [["a", "d"], ["b", "c", "e"]]  # loads 8 and 8
    assert balance(["a"], 3, sizes.get) == [["a"]]  # no empty chunks
    assert balance(list(sizes), 1, sizes.get) == [["a", "b", "c", "d", "e"]]


def test_workers_zero_is_one_per_thread():
    import torch

    model = torch.nn.Linear(2, 2)
    assert resolve_workers(0, 3, model) == 3 and resolve_workers(0, 1, model) == 1 and resolve_workers(2, 8, model) == 2
    assert resolve_workers(0, 0, model) == (os.cpu_count() or 1)


def _where(x):
    import torch

    return x * 10, os.getpid(), torch.get_num_threads()


def test_each_chunk_runs_in_its_own_process_with_one_thread():
    import torch

    torch.set_num_threads(2)
    torch.ones(512, 512) @ torch.ones(512, 512)  # the parent has used its OpenMP threads: children must not hang
    got = dict(fork_map(_where, [[1, 2], [3]]))
    assert {x: v[0] for x, v in got.items()} == {1: 10, 2: 20, 3: 30}
    pids = {v[1] for v in got.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    assert {v[2] for v in got.values()} == {1}


def test_one_chunk_runs_here():
    got = dict(fork_map(_where, [[1, 2]]))
    assert {v[1] for v in got.values()} == {os.getpid()}


def _fails_on_three(x):
    if x == 3:
        raise ValueError(f"row {x}: no answer")
    return x


def test_a_childs_exception_is_raised_in_the_parent():
    with pytest.raises(ValueError, match="row 3: no answer"):
        list(fork_map(_fails_on_three, [[1, 2], [3]]))
