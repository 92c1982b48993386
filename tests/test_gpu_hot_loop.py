"""The GPU and many-process items of the pretraining hot loop (issue 23: 2, 7, 8, 9, 10, 12, 13), each emulated
on this CPU machine: two gloo processes, host reads counted by source line, collectives counted,
torch calls counted, autocast in bf16 on the CPU, a DataLoader worker dying for /dev/shm."""
from collections import Counter

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmarks.perf.hot_loop import HostReads, TorchCalls
from pretrain.config.config import load_config
from pretrain.data import loader as pretrain_loader
from pretrain.distributed.syncbn import convert_sync_batchnorm
from pretrain.engine import trainer as engine
from pretrain.engine.build import build_model
from pretrain.models.viewbn import make_per_view

from .conftest import ROOT
from .test_distributed import _free_port, _join_gloo
from .test_method import SMALL, inputs, make
from .test_pretrain_run import TINY, _small_folder

HIER = ROOT / "configs/pretrain/simsiam-hier_resnet18_1xb64-coslr-4e_demo.yaml"


def _trainer(tmp_path, data, config=HIER, *extra):
    return engine.Pretrainer(load_config(config, [*TINY, "optim.batch_size=8", "data.workers=0", f"data.train={data}",
                                                  f"train.output={tmp_path}", *extra]))


@pytest.mark.parametrize("config", ["simsiam-hier", "mocov2-hier", pytest.param("byol-hier", marks=pytest.mark.slow),
                                    pytest.param("barlowtwins-hier", marks=pytest.mark.slow)])
def test_7_the_training_step_never_reads_a_device_value_back(demo_world, tmp_path, config):
    """augment.device=train, shared batching: no `float(loss)`, no stage-loss reads, no `nonzero` on device
    tensors inside a step; the photometric index lists come from `index_plan` on the host copy of the
    parameters. The losses are read back once per flush (logging/checkpoint steps)."""
    data = _small_folder(demo_world, tmp_path / "data", 12)
    t = _trainer(tmp_path / "run", data, ROOT / f"configs/pretrain/{config}_resnet18_1xb64-coslr-4e_demo.yaml",
                 "augment.device=train", "method.batching=shared", "train.log_every=3", "train.max_steps=3",
                 "method.queue_size=64")
    reads = HostReads()
    step = t.step

    def counted(views, params):
        with reads:
            return step(views, params)

    t.step = counted
    t.run()
    assert len(t.history) == 3
    assert set(reads.sites) <= {"photometric.py:index_plan"}, reads.sites  # host-side by construction (asserts CPU input)
    flush_reads = HostReads()
    t.step_log.add({"step": 9, "epoch": 0, "lr": 0.1}, {"loss": torch.tensor(1.0), "loss/stage4": torch.tensor(2.0)})
    with flush_reads:
        (rec,), _ = t.step_log.flush()
    assert sum(flush_reads.sites.values()) == 1 and rec == {"step": 9, "epoch": 0, "lr": 0.1, "loss": 1.0, "loss/stage4": 2.0}


def test_7_index_plan_refuses_device_parameters():
    from pretrain.transforms.photometric import index_plan

    with pytest.raises(ValueError, match="on the host"):
        index_plan(torch.zeros(2, 22, device="meta"))


def _nan_worker(rank, world, port, data, out, queue):
    """Rank 1's loss turns NaN at its second step; both processes must stop with the same message."""

    from pretrain.distributed.launch import DistInfo
    from pretrain.methods.base import HierSiamese

    _join_gloo(rank, world, port, 30)
    if rank == 1:
        forward, calls = HierSiamese.forward, [0]

        def poisoned(self, views, params):
            loss, logs = forward(self, views, params)
            calls[0] += 1
            return (loss * float("nan"), logs) if calls[0] == 2 else (loss, logs)

        HierSiamese.forward = poisoned
    cfg = load_config(ROOT / "configs/pretrain/simsiam_resnet18_1xb64-coslr-4e_demo.yaml",
                      [*TINY, "optim.batch_size=8", "data.workers=0", f"data.train={data}", f"train.output={out}",
                       "train.log_every=2", "train.max_steps=6"])
    try:
        engine.Pretrainer(cfg, DistInfo(rank, world, rank)).run()
        queue.put((rank, "finished"))
    except engine.NonFiniteLossError as e:
        queue.put((rank, str(e)))
    except Exception as e:  # a hang ends in gloo's timeout: reported as such
        queue.put((rank, f"{type(e).__name__}: {e}"))


@pytest.mark.slow
def test_2_a_nan_on_one_process_stops_every_process_with_the_same_message(demo_world, tmp_path):
    data = _small_folder(demo_world, tmp_path / "data", 12)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(_nan_worker, args=(2, _free_port(), str(data), str(tmp_path / "run"), queue), nprocs=2,
                       join=True, start_method="spawn")
    got = dict(queue.get(timeout=5) for _ in range(2))
    assert got[0] == got[1], got
    assert "loss is nan at step 2" in got[0] and "last good checkpoint" in got[0]


def _collective_worker(rank, world, port, mode, out):
    _join_gloo(rank, world, port)
    counts = _count_collectives(rank, mode)
    if rank == 0:
        torch.save(counts, out)
    dist.destroy_process_group()


def _count_collectives(rank, mode):
    """SimSiam + method in `mode` on this process group: BatchNorm calls, collectives in forward and in all."""
    torch.manual_seed(0)
    cfg = load_config(None, ["method.name=simsiam", *SMALL, f"method.batching={mode}"])
    model = make_per_view(convert_sync_batchnorm(build_model(cfg), torch.device("cpu")))
    bn_calls = [0]
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.register_forward_hook(lambda *a: bn_calls.__setitem__(0, bn_calls[0] + 1))
    counts = Counter()
    real = {name: getattr(dist, name) for name in ("all_reduce", "all_gather", "broadcast", "reduce_scatter")}
    for name, fn in real.items():
        setattr(dist, name, lambda *a, _f=fn, _n=name, **k: (counts.update([_n]), _f(*a, **k))[1])
    views, params = inputs(4, b=4, seed=rank)
    try:
        loss, _ = model(views, params)
        forward = sum(counts.values())
        loss.backward()
    finally:
        for name, fn in real.items():
            setattr(dist, name, fn)
    return {"bn_calls": bn_calls[0], "forward": forward, "total": sum(counts.values())}


@pytest.mark.slow  # shared mode also in the fast test_8_12 below
@pytest.mark.parametrize("mode", ["shared", "pair", "view"])
def test_8_per_view_syncbn_makes_one_collective_per_batchnorm_call(tmp_path, mode):
    """SimSiam + method (4 pairs), 2 gloo processes: before, one all-reduce per view chunk (384 per step for 70
    BatchNorm calls in shared mode); now one per call in forward and one in backward. (Equality with one
    process on the global batch: tests/test_distributed.py.)"""
    out = tmp_path / "counts.pt"
    mp.spawn(_collective_worker, args=(2, _free_port(), mode, str(out)), nprocs=2, join=True)
    c = torch.load(out, weights_only=True)
    assert c["bn_calls"] > 40
    assert c["forward"] == c["bn_calls"] and c["total"] == 2 * c["bn_calls"], c


def _reference_sync_chunks(x, ids, weight, bias, eps):
    """V separate synchronised BatchNorm calls (the pre-fix code path), written out by hand."""
    import torch.distributed.nn.functional as dnnf

    out = []
    for chunk in x.chunk(len(ids)):
        dims = [0, 2, 3]
        n = chunk.numel() // chunk.shape[1] * dist.get_world_size()
        s = dnnf.all_reduce(torch.cat([chunk.sum(dims), (chunk * chunk).sum(dims)]))
        mean, var = s[:chunk.shape[1]] / n, s[chunk.shape[1]:] / n - (s[:chunk.shape[1]] / n) ** 2
        y = (chunk - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + eps)
        out.append(y * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1))
    return torch.cat(out)


def _bt_worker(rank, world, port, out):
    """Per-view SyncBN and Barlow Twins' loss on 2 processes against the gradient-carrying formulations."""
    import torch.distributed.nn.functional as dnnf

    from pretrain.distributed.syncbn import CPUSyncBatchNorm
    from pretrain.methods.losses import barlow_twins_loss
    from pretrain.models.viewbn import PerViewCPUSyncBatchNorm, per_view_stats

    _join_gloo(rank, world, port)
    g = torch.Generator().manual_seed(rank)
    res = {}
    # per-view SyncBN: outputs, input gradients, running statistics (in view order 2, 0, 1)
    bn = CPUSyncBatchNorm(5).double()
    bn.__class__ = PerViewCPUSyncBatchNorm
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(9))
        bn.bias.uniform_(-1, 1, generator=torch.Generator().manual_seed(10))
    x = (torch.randn(12, 5, 3, 3, generator=g, dtype=torch.float64) * 3 + 1).requires_grad_()
    with per_view_stats((2, 0, 1)):
        y = bn(x)
    (y * torch.arange(y.numel(), dtype=y.dtype).view_as(y).sin()).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    want = _reference_sync_chunks(x2, (2, 0, 1), bn.weight.detach(), bn.bias.detach(), bn.eps)
    (want * torch.arange(want.numel(), dtype=want.dtype).view_as(want).sin()).sum().backward()
    res["bn"] = (y.detach(), want.detach(), x.grad, x2.grad, bn.running_mean.clone(), bn.running_var.clone())
    # running statistics by hand: each chunk's mean and unbiased variance over both processes, EMA (momentum 0.1
    # from 0 and 1) in view-id order: chunk 1 (id 0), chunk 2 (id 1), chunk 0 (id 2)
    xs = [torch.zeros_like(x) for _ in range(world)]
    dist.all_gather(xs, x.detach())
    rm, rv = torch.zeros(5, dtype=x.dtype), torch.ones(5, dtype=x.dtype)
    for j in (1, 2, 0):
        chunk = torch.cat([xr.chunk(3)[j] for xr in xs]).transpose(0, 1).reshape(5, -1)
        rm, rv = 0.9 * rm + 0.1 * chunk.mean(1), 0.9 * rv + 0.1 * chunk.var(1, unbiased=True)
    res["running_by_hand"] = (rm, rv)
    # the step log: the loss each process logs is the mean over processes
    from pretrain.engine.step_log import StepLog

    log = StepLog()
    log.add({"step": 1}, {"loss": torch.tensor(float(rank + 1)), "loss/stage4": torch.tensor(10.0 * rank)})
    res["logged"] = log.flush()[0]
    res["collectives"] = _count_collectives(rank, "shared")
    # Barlow Twins
    z1 = torch.randn(6, 4, generator=g, dtype=torch.float64).requires_grad_()
    z2 = torch.randn(6, 4, generator=g, dtype=torch.float64).requires_grad_()
    loss = barlow_twins_loss(z1, z2, 0.005, 0.5, distributed=True)
    loss.backward()
    a1, a2 = z1.detach().clone().requires_grad_(), z2.detach().clone().requires_grad_()
    c = dnnf.all_reduce(((a1 - a1.mean(0)) / torch.sqrt(a1.var(0, unbiased=False) + 1e-5)).T
                        @ ((a2 - a2.mean(0)) / torch.sqrt(a2.var(0, unbiased=False) + 1e-5))) / 12
    ref = 0.5 * ((torch.diagonal(c) - 1).pow(2).sum() + 0.005 * (c.pow(2).sum() - torch.diagonal(c).pow(2).sum()))
    ref.backward()
    res["bt"] = (loss.detach(), ref.detach(), z1.grad, a1.grad, z2.grad, a2.grad)
    torch.save(res, f"{out}.{rank}")
    dist.destroy_process_group()


def test_8_12_one_collective_formulations_equal_the_gradient_carrying_ones(tmp_path):
    """Two gloo processes, float64: per-view SyncBN (one all-reduce for all chunks) gives the outputs, input
    gradients of V separate synchronised calls and the running statistics computed by hand; Barlow Twins' one
    all-reduce of the detached C plus the local term scaled by W gives the loss and gradients of the
    gradient-carrying all-reduce; the step log averages over the processes."""
    mp.spawn(_bt_worker, args=(2, _free_port(), str(tmp_path / "r")), nprocs=2, join=True)
    for rank in (0, 1):
        r = torch.load(f"{tmp_path / 'r'}.{rank}", weights_only=True)
        y, want, gx, gwant, rm, rv = r["bn"]
        torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(gx, gwant, rtol=1e-9, atol=1e-10)
        loss, ref, g1, r1, g2, r2 = r["bt"]
        torch.testing.assert_close(loss, ref, rtol=1e-12, atol=0)
        torch.testing.assert_close(g1, r1, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(g2, r2, rtol=1e-10, atol=1e-12)
        # the running statistics follow the chunks in view order, with the unbiased variance
        torch.testing.assert_close(r["bn"][4], r["running_by_hand"][0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(r["bn"][5], r["running_by_hand"][1], rtol=1e-10, atol=1e-12)
        assert r["logged"] == [{"step": 1, "loss": 1.5, "loss/stage4": 5.0}]  # the mean over the two processes
        c = r["collectives"]  # SimSiam + method, shared batching: one all-reduce per BatchNorm call each way
        assert c["bn_calls"] > 40 and c["forward"] == c["bn_calls"] and c["total"] == 2 * c["bn_calls"], c


def test_8_running_statistics_are_updated_chunk_by_chunk_in_view_order():
    """One process, the shared per-chunk path: running mean after chunks (ids 2, 0, 1) = the EMA over the
    chunks taken in id order (hand-computed)."""
    from pretrain.models.viewbn import PerViewBatchNorm2d, per_view_stats

    bn = PerViewBatchNorm2d(2, momentum=0.5)
    x = torch.stack([torch.full((2, 2, 2), float(v)) for v in (10, 10, 20, 20, 40, 40)])  # chunk means 10, 20, 40
    with per_view_stats((2, 0, 1)):
        bn(x)
    # id 0 = chunk 1 (20), id 1 = chunk 2 (40), id 2 = chunk 0 (10): 0 -> 10 -> 25 -> 17.5
    torch.testing.assert_close(bn.running_mean, torch.tensor([17.5, 17.5]))


def _lars_reference(params, grads, bufs, lr, momentum, wd, eta, exclude):
    """LARS by hand, one parameter at a time (the pre-fix loop)."""
    for p, g, b in zip(params, grads, bufs):
        d = g.clone()
        if not exclude:
            d = d + wd * p
            pn, dn = p.norm(), d.norm()
            d = d * (eta * pn / dn if pn > 0 and dn > 0 else 1.0)
        b.mul_(momentum).add_(d)
        p.sub_(lr * b)


def test_9_lars_equals_the_per_parameter_loop_in_a_constant_number_of_kernels():
    from pretrain.engine.optim import LARS

    g = torch.Generator().manual_seed(0)
    shapes = [(4, 3), (7,), (2, 2, 3), (5,)] * 20
    params = [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_() for s in shapes]
    params[1].data.zero_()  # a zero weight: trust ratio 1
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, dtype=torch.float64)
    ref = [p.detach().clone() for p in params]
    bufs = [torch.zeros_like(p) for p in ref]
    opt = LARS([{"params": params[:40]}, {"params": params[40:], "lars_exclude": True, "weight_decay": 0.0}],
               lr=0.3, momentum=0.9, weight_decay=1e-3, eta=0.02)
    for step in range(2):
        grads = [p.grad.clone() for p in params]  # the step consumes them in place
        calls = TorchCalls()
        with calls:
            opt.step()
        _lars_reference(ref[:40], grads[:40], bufs[:40], 0.3, 0.9, 1e-3, 0.02, False)
        _lars_reference(ref[40:], grads[40:], bufs[40:], 0.3, 0.9, 0.0, 0.02, True)
        for p, grad in zip(params, grads):
            p.grad = grad
        for p, r in zip(params, ref):
            torch.testing.assert_close(p.detach(), r, rtol=1e-12, atol=1e-14)
        assert calls.n <= 20 + (80 if step == 0 else 0), calls.n  # the loop: ~8 per parameter (640); 1st: buffers


def test_9_the_ema_update_is_two_fused_kernels_plus_buffer_copies():
    model, _ = make("byol")
    target0 = {k: v.clone() for k, v in model.target.state_dict().items()}
    with torch.no_grad():
        for p in model.online.parameters():
            p.add_(1.0)
    calls = TorchCalls()
    with calls:
        model.update_target(0.9)
    online = dict(model.online.named_parameters())
    for k, p in model.target.named_parameters():
        torch.testing.assert_close(p, 0.9 * target0[k] + 0.1 * online[k].detach(), rtol=1e-6, atol=1e-7)
    n_params = len(list(model.online.parameters()))
    assert n_params > 100 and calls.n <= 3, calls.n  # the loop: 2 per parameter + 1 per buffer


def test_10_the_loader_is_built_once_per_run_keeps_its_workers_and_prefetches_two(demo_world, tmp_path, monkeypatch):
    data = _small_folder(demo_world, tmp_path / "data", 12)
    t = _trainer(tmp_path / "run", data, HIER, "optim.epochs=2", "data.workers=1")
    built = []
    real = pretrain_loader.DataLoader
    monkeypatch.setattr(pretrain_loader, "DataLoader", lambda *a, **k: built.append(k) or real(*a, **k))
    t.run()
    assert t.global_step == 6 and len(built) == 1
    assert built[0]["persistent_workers"] is True and built[0]["prefetch_factor"] == 2
    # and each epoch still ran its own pass: 2 x 3 records
    assert [r["epoch"] for r in t.history] == [0, 0, 0, 1, 1, 1]


def test_10_a_worker_killed_for_shared_memory_names_dev_shm(demo_world, tmp_path, monkeypatch, caplog):
    data = _small_folder(demo_world, tmp_path / "data", 12)
    t = _trainer(tmp_path / "run", data, HIER, "data.workers=8", "augment.size=224", "optim.batch_size=8")
    # 8 views of 3 x 224 x 224 uint8 (augment.device resolves to loader on a CPU: float32, 4 bytes)
    assert pretrain_loader.shm_need(32, [224] * 8, uint8=False, workers=8) == 8 * 2 * 32 * 8 * 3 * 224 * 224 * 4
    monkeypatch.setattr(pretrain_loader, "shm_free", lambda path="/dev/shm": 64 * 2**20)

    def dying():
        raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Bus error. It is possible that "
                           "dataloader's workers are out of shared memory. Please try to raise your shared memory limit.")
        yield

    with pytest.raises(RuntimeError, match=r"/dev/shm is too small .* 64 MB free.*--shm-size"):
        list(t.batches(dying()))
    with caplog.at_level("WARNING", logger="pretrain"):
        t.make_loader()
    assert "/dev/shm is too small" in caplog.text


@pytest.mark.parametrize("name,loss_fn", [("barlowtwins", "barlow_twins_loss"), ("mocov2", "info_nce"),
                                          ("byol", "byol_loss"), ("simsiam", "simsiam_loss")])
def test_12_losses_run_in_fp32_with_autocast_off(name, loss_fn, monkeypatch):
    """Under bf16 autocast (here on the CPU, as on a GPU), every method's loss sees fp32 inputs and autocast
    off, so Barlow Twins' cross-correlation and MoCo's logits keep fp32 precision."""
    import importlib

    module = importlib.import_module(f"pretrain.methods.{name}")
    real, seen = getattr(module, loss_fn), []

    def spy(*args, **kwargs):
        seen.append(({a.dtype for a in args if torch.is_tensor(a)}, torch.is_autocast_enabled("cpu")))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, loss_fn, spy)
    model, _ = make(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model(*inputs(4))
    assert seen and all(dtypes == {torch.float32} and not autocast for dtypes, autocast in seen), seen
    assert loss.dtype == torch.float32


def test_13_the_run_records_what_it_chose(demo_world, tmp_path):
    import json

    import yaml

    data = _small_folder(demo_world, tmp_path / "data", 12)
    t = _trainer(tmp_path / "run", data, HIER, "train.max_steps=1")
    t.run()
    saved = yaml.safe_load((tmp_path / "run/config.yaml").read_text())
    assert (saved["train"]["device"], saved["method"]["batching"], saved["augment"]["device"]) == ("cpu", "view", "loader")
    summary = json.loads((tmp_path / "run/pretrain_summary.json").read_text())
    assert summary["runtime"] == {"device": "cpu", "batching": "view", "augment_device": "loader", "amp_dtype": None,
                                  "backend": None, "world_size": 1, "tf32_matmul": False, "tf32_conv": False,
                                  "cudnn_benchmark": False}


def test_13_on_a_gpu_cudnn_autotunes_convs_may_use_tf32_matmuls_do_not(monkeypatch):
    from pretrain.distributed.launch import DistInfo
    from pretrain.engine import runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    r = runtime.resolve_runtime(load_config(HIER, ["train.amp=true"]), DistInfo(3, 8, 3))
    assert r.record() == {"device": "cuda", "batching": "shared", "augment_device": "train", "amp_dtype": "bfloat16",
                          "backend": "nccl", "world_size": 8, "tf32_matmul": False, "tf32_conv": True,
                          "cudnn_benchmark": True}
    assert r.device == torch.device("cuda", 3)
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        r.apply()
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark) \
            == (False, True, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = flags


def test_9_every_non_blocking_host_to_device_copy_reads_a_pinned_tensor(monkeypatch):
    """The loader pins its batches (pin_memory=True on a GPU); a tensor made on the host afterwards (torch.cat of
    the views) is pageable again, and its non_blocking copy waits. Emulated: CUDA reported available,
    `pin_memory` marks what it returns, every `.to(..., non_blocking=True)` is recorded (and stays on the CPU);
    each source must be a loader tensor or a pinned one."""
    from torch.overrides import TorchFunctionMode

    from pretrain.transforms.augment import PARAM_DIM
    from pretrain.transforms.photometric import DeviceAugment

    pinned: set[int] = set()

    def pin(t):
        out = t.clone()
        pinned.add(id(out))
        return out

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    sources: list[torch.Tensor] = []

    class Copies(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.Tensor.to and kwargs.get("non_blocking"):
                sources.append(args[0])
                return args[0]
            return func(*args, **kwargs)

    g = torch.Generator().manual_seed(0)
    views = [torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=g) for _ in range(4)]
    params = [torch.zeros(4, PARAM_DIM) for _ in range(4)]
    for p in params:
        p[:, 0] = 1.0
    loader_tensors = {id(t) for t in views + params}
    with Copies():
        DeviceAugment((0.5,) * 3, (0.25,) * 3)(views, params, torch.device("cuda", 0))
    assert sources and all(id(t) in loader_tensors or id(t) in pinned for t in sources), \
        [tuple(t.shape) for t in sources if id(t) not in loader_tensors | pinned]


def test_8_moments_combine_precisely_for_large_means():
    """Two processes' chunks with mean 1e4 and sd 1e-2 in float32: E[x²] - E[x]² loses every digit (x² ~ 1e8 has
    a float32 spacing of 8); combining each process's (count, mean, M2) keeps the variance (float64 reference)."""
    from pretrain.distributed.syncbn import combine_moments

    g = torch.Generator().manual_seed(0)
    parts = [1e4 + 1e-2 * torch.randn(1, 3, 500, generator=g, dtype=torch.float64) for _ in range(2)]
    want = torch.cat(parts, 2).var(2, unbiased=False)  # (1, 3)
    f = [p.float() for p in parts]
    counts = torch.tensor([[[500.0]], [[500.0]]])
    means = torch.stack([p.mean(2) for p in f])
    m2s = torch.stack([(p - p.mean(2, keepdim=True)).square().sum(2) for p in f])
    n, mean, var = combine_moments(counts, means, m2s)
    assert n.item() == 1000 and torch.allclose(var.double(), want, rtol=1e-2)
    naive = torch.cat(f, 2).square().mean(2) - torch.cat(f, 2).mean(2).square()
    assert not torch.allclose(naive.double(), want, rtol=0.5)  # what the sum/sum-of-squares all-reduce computed


def test_8_sync_batchnorm_keeps_one_input_s_bytes_on_its_own_group_and_matches_batchnorm(tmp_path):
    """One gloo process (the bytes do not depend on the count): a bf16 input of 4 views is kept once for backward
    (before: three fp32 copies, 6.0x its bytes), the statistics travel on `bn_group()`, not the default group, and
    outputs and input gradients equal plain BatchNorm on each chunk (float64)."""
    from torch import nn

    from pretrain.distributed.syncbn import bn_group, sync_batch_norm

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    groups = []
    real = dist.all_gather
    try:
        dist.all_gather = lambda *a, group=None, **k: (groups.append(group), real(*a, group=group, **k))[1]
        bn = nn.BatchNorm2d(8)
        x = torch.randn(4 * 6, 8, 5, 5).to(torch.bfloat16).requires_grad_()
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: (saved.append(t.numel() * t.element_size()), t)[1], lambda t: t):
            sync_batch_norm(bn, x, (0, 1, 2, 3))
        assert sum(saved) <= x.numel() * x.element_size() + 1024, saved  # the input, and (V, C) statistics
        assert groups and all(gr is bn_group() and gr is not dist.group.WORLD for gr in groups)

        torch.manual_seed(0)
        bn64 = nn.BatchNorm2d(8).double()
        nn.init.uniform_(bn64.weight), nn.init.uniform_(bn64.bias)
        ref = nn.BatchNorm2d(8).double()
        ref.load_state_dict(bn64.state_dict())
        x = (3.0 + torch.randn(4 * 6, 8, 5, 5, dtype=torch.float64)).requires_grad_()
        dy = torch.randn_like(x)
        y = sync_batch_norm(bn64, x, (0, 1, 2, 3))
        (gx,) = torch.autograd.grad(y, x, dy)
        xr = x.detach().requires_grad_()
        yr = torch.cat([ref(c) for c in xr.chunk(4)])
        (gr,) = torch.autograd.grad(yr, xr, dy)
        assert torch.allclose(y, yr, atol=1e-10) and torch.allclose(gx, gr, atol=1e-10)
        assert torch.allclose(bn64.running_var, ref.running_var) and torch.allclose(bn64.running_mean, ref.running_mean)
    finally:
        dist.all_gather = real
        dist.destroy_process_group()
